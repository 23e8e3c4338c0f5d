"""The relay's queue of unsent outbox rows (see bo_common.outbox.add_outbox_pending).

A plumbing revision every service has, after 0100 on the `plumbing` branch.

Revision ID: 0101
Revises: 0100
"""

from bo_common.outbox import add_outbox_pending, drop_outbox_pending

revision = "0101"
down_revision = "0100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_pending()


def downgrade() -> None:
    drop_outbox_pending()
