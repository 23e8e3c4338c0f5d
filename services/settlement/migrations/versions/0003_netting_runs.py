"""Netting runs: the runs, the run and kind of each instruction, netting per counterparty.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "netting_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("settlement_date", sa.Date, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("cutoff_note", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("obligation_count", sa.Integer, nullable=False),
        sa.Column("instruction_count", sa.Integer, nullable=False),
    )
    op.create_index("netting_runs_date", "netting_runs", ["settlement_date", "created_at"])
    op.create_table(
        "counterparty_netting",
        sa.Column("counterparty_lei", sa.Text, primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.add_column("instructions", sa.Column("run_id", sa.Text))
    op.add_column(
        "instructions",
        sa.Column("kind", sa.Text, nullable=False, server_default=sa.text("'securities'")),
    )
    op.add_column(
        "instructions",
        sa.Column("gross", sa.Boolean, nullable=False, server_default=sa.text("true")),
    )
    op.create_index("instructions_run", "instructions", ["run_id"])
    # What a netting run reads: the ready obligations of a date.
    op.create_index(
        "obligations_ready",
        "obligations",
        ["settlement_date"],
        postgresql_where=sa.text("state = 'ready' AND instruction_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("obligations_ready", "obligations")
    op.drop_index("instructions_run", "instructions")
    for column in ("gross", "kind", "run_id"):
        op.drop_column("instructions", column)
    op.drop_table("counterparty_netting")
    op.drop_index("netting_runs_date", "netting_runs")
    op.drop_table("netting_runs")
