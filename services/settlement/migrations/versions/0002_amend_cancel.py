"""Amendments and cancellations: obligation versions, compliance decisions per trade
version, recorded cancellations and refused changes (the exception queue).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from bo_common.db import drop_outbox_notify, restore_outbox_notify

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    drop_outbox_notify()
    op.add_column(
        "obligations",
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    )
    op.add_column("obligations", sa.Column("cancelled_at", TS))
    op.add_column("obligations", sa.Column("cancel_reason", sa.Text))
    # A decision is about one version of the trade; every version's latest one is kept.
    op.add_column(
        "compliance_decisions",
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    )
    op.drop_constraint("compliance_decisions_pkey", "compliance_decisions", type_="primary")
    op.create_primary_key(
        "compliance_decisions_pkey", "compliance_decisions", ["trade_id", "version"]
    )
    op.create_table(
        "cancellations",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_table(
        "refused_changes",
        sa.Column("refusal_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False),
        sa.Column("obligation_id", sa.Text, nullable=False),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("instruction_id", sa.Text, nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_reason", sa.Text, nullable=False),
        sa.Column("refused_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("resolved_by", sa.Text),
        sa.Column("resolution", sa.Text),
        sa.UniqueConstraint("trade_id", "change", "version"),
    )
    op.create_index(
        "refused_changes_open",
        "refused_changes",
        ["refused_at"],
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    restore_outbox_notify()
    op.drop_table("refused_changes")
    op.drop_table("cancellations")
    # Keep the newest version's decision of each trade, as the one-row-per-trade table had.
    op.execute(
        "DELETE FROM compliance_decisions d USING compliance_decisions newer "
        "WHERE newer.trade_id = d.trade_id AND newer.version > d.version"
    )
    op.drop_constraint("compliance_decisions_pkey", "compliance_decisions", type_="primary")
    op.create_primary_key("compliance_decisions_pkey", "compliance_decisions", ["trade_id"])
    op.drop_column("compliance_decisions", "version")
    for column in ("cancel_reason", "cancelled_at", "version"):
        op.drop_column("obligations", column)
