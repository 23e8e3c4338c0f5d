"""Obligations, compliance decisions, SSIs, instructions; outbox, inbox and keys.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from bo_common.db import create_plumbing_tables, drop_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "obligations",
        sa.Column("obligation_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, unique=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("isin", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(28, 8), nullable=False),
        sa.Column("amount", sa.Numeric(28, 8), nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("trade_date", sa.Date, nullable=False),
        sa.Column("settlement_date", sa.Date, nullable=False),
        sa.Column("cycle_days", sa.Integer, nullable=False),
        sa.Column("market", sa.Text, nullable=False),
        sa.Column("counterparty_lei", sa.Text, nullable=False),
        sa.Column("settlement_type", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("instruction_id", sa.Text),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("obligations_state", "obligations", ["state"])
    op.create_index("obligations_counterparty", "obligations", ["counterparty_lei", "market"])
    op.create_table(
        "compliance_decisions",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.create_table(
        "ssis",
        sa.Column("ssi_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("counterparty_lei", sa.Text, nullable=False),
        sa.Column("market", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("depository", sa.Text, nullable=False),
        sa.Column("custodian_bic", sa.Text, nullable=False),
        sa.Column("safekeeping_account", sa.Text, nullable=False),
        sa.Column("cash_account", sa.Text, nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("counterparty_lei", "market", "version"),
    )
    op.create_table(
        "instructions",
        sa.Column("instruction_id", sa.Text, primary_key=True),
        sa.Column("trade_ids", ARRAY(sa.Text), nullable=False),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("payment", sa.Text, nullable=False),
        sa.Column("isin", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(28, 8), nullable=False),
        sa.Column("amount", sa.Numeric(28, 8), nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("settlement_date", sa.Date, nullable=False),
        sa.Column("depository", sa.Text, nullable=False),
        sa.Column("counterparty_lei", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("instructions", "ssis", "compliance_decisions", "obligations"):
        op.drop_table(table)
    drop_plumbing_tables()
