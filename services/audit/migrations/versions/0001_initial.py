"""Audit records (append-only, enforced by triggers) and the chain head; plumbing.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from bo_common.db import create_plumbing_tables, drop_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_hash", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.Text, nullable=False),
        sa.Column("record_hash", sa.Text, nullable=False),
    )
    op.create_index("audit_records_type", "audit_records", ["event_type", "occurred_at"])
    chain_head = op.create_table(
        "chain_head",
        sa.Column("chain", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.Text, nullable=False),
    )
    op.bulk_insert(chain_head, [{"chain": "events", "last_seq": 0, "last_hash": "0" * 64}])
    op.execute(
        """CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP; END $$"""
    )
    op.execute(
        """CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
        FOR EACH ROW EXECUTE FUNCTION audit_is_append_only()"""
    )
    op.execute(
        """CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
        FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only()"""
    )


def downgrade() -> None:
    op.drop_table("audit_records")
    op.execute("DROP FUNCTION audit_is_append_only()")
    for table in ("chain_head",):
        op.drop_table(table)
    drop_plumbing_tables()
