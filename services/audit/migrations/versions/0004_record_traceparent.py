"""The log is the audit's inbox: each record keeps the trace context its event was
delivered with (`traceparent`, the Kafka header; for a record the service appended itself,
the context it was appended in), which the inbox row kept before. The service stops writing
inbox rows (bo_common.consumer, `applied_ids`): the unique `event_id` of the records tells
what was applied.

The downgrade fills the inbox from the records, so that the previous release, which reads
the inbox, skips every event the log holds. The column is not part of a record's leaf data:
it changes no hash.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_records", sa.Column("traceparent", sa.Text))


def downgrade() -> None:
    # With the trace context the inbox keeps where the plumbing branch gave it the column.
    traced = sa.inspect(op.get_bind()).get_columns("inbox")
    context = ", traceparent" if any(c["name"] == "traceparent" for c in traced) else ""
    op.execute(
        f"INSERT INTO inbox (event_id, event_type, topic{context}) "
        f"SELECT event_id, event_type, topic{context} FROM audit_records "
        "WHERE topic IS NOT NULL ON CONFLICT (event_id) DO NOTHING"
    )
    op.drop_column("audit_records", "traceparent")
