"""Trade versions (amendment and cancellation), CUSIP, list indexes, per-client rate limits.

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


def upgrade() -> None:
    drop_outbox_notify()
    op.add_column("trades", sa.Column("cusip", sa.Text))
    op.add_column("trades", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("trades", sa.Column("cancel_reason", sa.Text))
    # The list route pages newest first on (received_at, trade_id).
    op.create_index(
        "trades_page", "trades", [sa.text("received_at DESC"), sa.text("trade_id DESC")]
    )
    op.create_index("trades_trade_date", "trades", ["trade_date"])
    op.create_index("trades_state", "trades", ["state"])
    op.create_table(
        "trade_versions",
        sa.Column("trade_id", sa.Text, sa.ForeignKey("trades.trade_id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        # An amendment and the cancellation that follows it share the version number.
        sa.Column("change", sa.Text, primary_key=True),
        sa.Column("terms", JSONB, nullable=False),
        sa.Column("changed_fields", JSONB, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "client_limits",
        sa.Column("client", sa.Text, primary_key=True),
        sa.Column("requests_per_second", sa.Numeric(12, 3), nullable=False),
        sa.Column("burst", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    restore_outbox_notify()
    op.drop_table("client_limits")
    op.drop_table("trade_versions")
    op.drop_index("trades_state", "trades")
    op.drop_index("trades_trade_date", "trades")
    op.drop_index("trades_page", "trades")
    for column in ("cancel_reason", "version", "cusip"):
        op.drop_column("trades", column)
