"""Trade versions (amendment and cancellation): evaluations and alerts per version, the
trades compliance has seen (latest version, cancellation) and holds.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from bo_common.db import drop_outbox_notify, restore_outbox_notify

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    drop_outbox_notify()
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("cancelled_at", TS),
        sa.Column("cancel_reason", sa.Text),
    )
    # Every evaluation so far was of a captured trade: version 1.
    op.add_column(
        "evaluations", sa.Column("version", sa.Integer, nullable=False, server_default="1")
    )
    op.alter_column("evaluations", "version", server_default=None)
    op.drop_constraint("evaluations_pkey", "evaluations", type_="primary")
    op.create_primary_key("evaluations_pkey", "evaluations", ["trade_id", "version"])
    op.add_column("alerts", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.alter_column("alerts", "version", server_default=None)
    op.execute(
        "INSERT INTO trades (trade_id, account, version) "
        "SELECT trade_id, account, max(version) FROM evaluations GROUP BY trade_id, account"
    )
    op.create_table(
        "holds",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("rules", JSONB, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_at", TS),
        sa.Column("close_reason", sa.Text),
    )
    # At most one open hold per trade.
    op.create_index(
        "holds_one_open",
        "holds",
        ["trade_id"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index("holds_state", "holds", ["state"])
    # The trades held so far are held now.
    op.execute(
        "INSERT INTO holds (trade_id, version, account, state, rules, opened_at) "
        "SELECT trade_id, version, account, 'open', "
        "COALESCE((SELECT jsonb_agg(r->>'rule') FROM jsonb_array_elements(results) r "
        "WHERE NOT (r->>'passed')::boolean), '[]'::jsonb), evaluated_at "
        "FROM evaluations WHERE outcome = 'held'"
    )


def downgrade() -> None:
    restore_outbox_notify()
    op.drop_table("holds")
    # Only the latest evaluation of each trade fits the table of one evaluation per trade.
    op.execute(
        "DELETE FROM evaluations e USING evaluations newer "
        "WHERE newer.trade_id = e.trade_id AND newer.version > e.version"
    )
    op.drop_constraint("evaluations_pkey", "evaluations", type_="primary")
    op.create_primary_key("evaluations_pkey", "evaluations", ["trade_id"])
    op.drop_column("evaluations", "version")
    op.drop_column("alerts", "version")
    op.drop_table("trades")
