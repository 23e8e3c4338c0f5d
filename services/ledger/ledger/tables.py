"""Journal tables: entries and their lines, and recorded cancellations (append-only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EntryRow(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('pending', 'settled', 'reversal')", name="entry_kind"),
        sa.CheckConstraint("version >= 1", name="entry_version_positive"),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses IS NOT NULL) AND reverses IS DISTINCT FROM entry_id",
            name="reversal_names_its_entry",
        ),
        sa.UniqueConstraint("reverses", name="entry_reversed_once"),
        sa.Index(
            "one_pending_entry_per_trade_version",
            "trade_id",
            "version",
            unique=True,
            postgresql_where=sa.text("kind = 'pending'"),
        ),
        sa.Index(
            "one_settled_entry_per_trade",
            "trade_id",
            unique=True,
            postgresql_where=sa.text("kind = 'settled'"),
        ),
    )

    entry_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    account: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    event_id: Mapped[str] = mapped_column(sa.Text)
    posted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The trade version booked; a reversal carries the version of the entry it reverses.
    version: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("1"))
    reverses: Mapped[str | None] = mapped_column(
        sa.ForeignKey("journal_entries.entry_id"), nullable=True
    )
    # Insertion order (an identity the database assigns).
    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), unique=True)


class LineRow(Base):
    __tablename__ = "journal_lines"

    entry_id: Mapped[str] = mapped_column(
        sa.ForeignKey("journal_entries.entry_id"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    ledger_account: Mapped[str] = mapped_column(sa.Text, index=True)
    unit: Mapped[str] = mapped_column(sa.Text)
    debit: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    credit: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))


class CancellationRow(Base):
    """A trade the ledger has seen cancelled: nothing more is booked for it before
    settlement."""

    __tablename__ = "trade_cancellations"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    event_id: Mapped[str] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
