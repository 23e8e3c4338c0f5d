"""Journal tables: entries and their lines (append-only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EntryRow(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (sa.UniqueConstraint("trade_id", "kind"),)

    entry_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    account: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    event_id: Mapped[str] = mapped_column(sa.Text)
    posted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


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
