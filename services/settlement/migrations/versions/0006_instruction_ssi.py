"""The SSI version each instruction was sent with, so that a settlement can tell the ledger
where it settled (the depository, the custodian and its safekeeping account).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for instructions sent before this revision: their settlements name the
    # depository alone.
    op.add_column("instructions", sa.Column("ssi_id", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("instructions", "ssi_id")
