"""Rules (with the default rules), restricted list, evaluations, alerts; plumbing.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from bo_common.db import create_plumbing_tables, drop_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_plumbing_tables()
    rules = op.create_table(
        "rules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
    )
    op.bulk_insert(
        rules,
        [
            {
                "name": "notional-limit",
                "kind": "notional_limit",
                "enabled": True,
                "parameters": {
                    "limits": {"USD": "10000000", "EUR": "10000000", "GBP": "8000000"},
                    "default_limit": "10000000",
                },
            },
            {
                "name": "restricted-list",
                "kind": "restricted_list",
                "enabled": True,
                "parameters": {},
            },
        ],
    )
    op.create_table(
        "restricted_list",
        sa.Column("isin", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("added_at", TS, nullable=False),
    )
    op.create_table(
        "evaluations",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("results", JSONB, nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, index=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("raised_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "alerts",
        "evaluations",
        "restricted_list",
        "rules",
    ):
        op.drop_table(table)
    drop_plumbing_tables()
