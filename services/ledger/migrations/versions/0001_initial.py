"""Journal entries and lines (append-only); outbox, inbox and keys.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from bo_common.db import create_plumbing_tables, drop_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "journal_entries",
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, index=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("trade_id", "kind"),
    )
    op.create_table(
        "journal_lines",
        sa.Column("entry_id", sa.Text, sa.ForeignKey("journal_entries.entry_id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("ledger_account", sa.Text, nullable=False, index=True),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("debit", sa.Numeric(28, 8), nullable=False),
        sa.Column("credit", sa.Numeric(28, 8), nullable=False),
        sa.CheckConstraint("debit >= 0 AND credit >= 0", name="line_amounts_not_negative"),
    )
    # Journal records are facts: the database itself refuses to change or remove them.
    op.execute(
        """CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'journal records are append-only (% on %)', TG_OP, TG_TABLE_NAME;
        END $$"""
    )
    for table in ("journal_entries", "journal_lines"):
        op.execute(
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION journal_is_append_only()"""
        )


def downgrade() -> None:
    op.drop_table("journal_lines")
    op.drop_table("journal_entries")
    op.execute("DROP FUNCTION journal_is_append_only()")
    drop_plumbing_tables()
