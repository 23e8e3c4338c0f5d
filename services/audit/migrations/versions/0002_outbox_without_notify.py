"""The outbox no longer NOTIFYs on insert (see bo_common.db.drop_outbox_notify).

Revision ID: 0002
"""

from bo_common.db import drop_outbox_notify, restore_outbox_notify

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    drop_outbox_notify()


def downgrade() -> None:
    restore_outbox_notify()
