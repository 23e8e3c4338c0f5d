"""Trades, desks, the status timeline, and the outbox, inbox and key tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from bo_common.db import create_plumbing_tables, drop_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "desks",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_table(
        "desk_accounts",
        sa.Column("desk", sa.Text, sa.ForeignKey("desks.name"), primary_key=True),
        sa.Column("account", sa.Text, primary_key=True, unique=True),
    )
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("client_trade_id", sa.Text, nullable=False),
        sa.Column("account", sa.Text, nullable=False, index=True),
        sa.Column("desk", sa.Text),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("isin", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(28, 8), nullable=False),
        sa.Column("price", sa.Numeric(28, 10), nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("trade_date", sa.Date, nullable=False),
        sa.Column("trade_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("venue", sa.Text, nullable=False),
        sa.Column("counterparty_lei", sa.Text, nullable=False),
        sa.Column("settlement_type", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("state_rank", sa.Integer, nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("client", "client_trade_id"),
    )
    op.create_table(
        "trade_timeline",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, index=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("data", JSONB, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "trade_timeline",
        "trades",
        "desk_accounts",
        "desks",
    ):
        op.drop_table(table)
    drop_plumbing_tables()
