"""What the depository has settled of each instruction so far (quantity and cash), so that a
partially settled instruction's remainder can be followed as a fail.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("settled_quantity", "settled_amount"):
        op.add_column(
            "instructions",
            sa.Column(column, sa.Numeric(28, 8), nullable=False, server_default=sa.text("0")),
        )
    # Instructions settled before this revision settled in full.
    op.execute(
        "UPDATE instructions SET settled_quantity = quantity, settled_amount = amount "
        "WHERE state = 'settled'"
    )


def downgrade() -> None:
    for column in ("settled_quantity", "settled_amount"):
        op.drop_column("instructions", column)
