"""SSIs per asset class: (counterparty LEI, market, asset class) is the key; existing SSIs
are equity SSIs.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "ssis",
        sa.Column("asset_class", sa.Text, nullable=False, server_default=sa.text("'equity'")),
    )
    op.create_check_constraint("ssis_asset_class", "ssis", "asset_class IN ('equity', 'bond')")
    op.drop_constraint("ssis_counterparty_lei_market_version_key", "ssis", type_="unique")
    op.create_unique_constraint(
        "ssis_key_version", "ssis", ["counterparty_lei", "market", "asset_class", "version"]
    )


def downgrade() -> None:
    op.drop_constraint("ssis_key_version", "ssis", type_="unique")
    op.execute("DELETE FROM ssis WHERE asset_class <> 'equity'")
    op.create_unique_constraint(
        "ssis_counterparty_lei_market_version_key",
        "ssis",
        ["counterparty_lei", "market", "version"],
    )
    op.drop_constraint("ssis_asset_class", "ssis", type_="check")
    op.drop_column("ssis", "asset_class")
