"""Amendments and cancellations: entry versions, reversals, recorded cancellations.

A trade may now have a pending entry per version, each reversed at most once by an entry
of kind "reversal" that names it; the settled entry stays one per trade. Cancellations are
recorded (append-only) so that a capture or amendment arriving after one books nothing.

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


def upgrade() -> None:
    drop_outbox_notify()
    # Adding columns rewrites no row through UPDATE, so the append-only trigger is not hit.
    op.add_column(
        "journal_entries",
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    )
    op.add_column(
        "journal_entries",
        sa.Column(
            "reverses",
            sa.Text,
            sa.ForeignKey("journal_entries.entry_id", name="journal_entries_reverses_fkey"),
            nullable=True,
        ),
    )
    # Insertion order, to list a trade's entries in the order they were booked.
    op.add_column(
        "journal_entries",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
    )
    op.drop_constraint("journal_entries_trade_id_kind_key", "journal_entries", type_="unique")
    op.create_check_constraint(
        "entry_kind", "journal_entries", "kind IN ('pending', 'settled', 'reversal')"
    )
    op.create_check_constraint("entry_version_positive", "journal_entries", "version >= 1")
    op.create_check_constraint(
        "reversal_names_its_entry",
        "journal_entries",
        "(kind = 'reversal') = (reverses IS NOT NULL) AND reverses IS DISTINCT FROM entry_id",
    )
    # An entry is reversed at most once.
    op.create_unique_constraint("entry_reversed_once", "journal_entries", ["reverses"])
    op.create_index(
        "one_pending_entry_per_trade_version",
        "journal_entries",
        ["trade_id", "version"],
        unique=True,
        postgresql_where=sa.text("kind = 'pending'"),
    )
    op.create_index(
        "one_settled_entry_per_trade",
        "journal_entries",
        ["trade_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'settled'"),
    )
    op.create_index("journal_entries_seq", "journal_entries", ["seq"], unique=True)

    op.create_table(
        "trade_cancellations",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        """CREATE TRIGGER trade_cancellations_append_only BEFORE UPDATE OR DELETE
        ON trade_cancellations FOR EACH ROW EXECUTE FUNCTION journal_is_append_only()"""
    )


def downgrade() -> None:
    restore_outbox_notify()
    # Fails, as it should, once a trade has more than one entry of a kind.
    op.drop_table("trade_cancellations")
    op.drop_index("journal_entries_seq", "journal_entries")
    op.drop_index("one_settled_entry_per_trade", "journal_entries")
    op.drop_index("one_pending_entry_per_trade_version", "journal_entries")
    op.drop_constraint("entry_reversed_once", "journal_entries", type_="unique")
    op.drop_constraint("reversal_names_its_entry", "journal_entries", type_="check")
    op.drop_constraint("entry_version_positive", "journal_entries", type_="check")
    op.drop_constraint("entry_kind", "journal_entries", type_="check")
    op.create_unique_constraint(
        "journal_entries_trade_id_kind_key", "journal_entries", ["trade_id", "kind"]
    )
    op.drop_column("journal_entries", "seq")
    op.drop_column("journal_entries", "reverses")
    op.drop_column("journal_entries", "version")
