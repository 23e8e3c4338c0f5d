"""Journal tables: entries and their lines, recorded cancellations, the chart of accounts
(append-only); the balance projections the database keeps; limits and their exceptions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EntryRow(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('pending', 'settled', 'partially_settled', 'reversal')", name="entry_kind"
        ),
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
    # The event that caused the entry (its id and type); trade_id names the trade.
    event_id: Mapped[str] = mapped_column(sa.Text)
    event_type: Mapped[str | None] = mapped_column(sa.Text)
    # When it was recorded, and when it takes effect (what as-of balances use).
    posted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    effective_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
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
    ledger_account: Mapped[str] = mapped_column(sa.Text)
    unit: Mapped[str] = mapped_column(sa.Text)
    debit: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    credit: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    # The entry's effective time, on the line so that one index answers as-of queries.
    effective_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


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


class ChartRow(Base):
    """An account of the chart: a ledger account name and unit, its type and normal side."""

    __tablename__ = "ledger_accounts"

    ledger_account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    unit: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    account_type: Mapped[str] = mapped_column(sa.Text)
    normal_side: Mapped[str] = mapped_column(sa.Text)
    owner: Mapped[str] = mapped_column(sa.Text)
    asset_class: Mapped[str] = mapped_column(sa.Text)
    phase: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AccountBalanceRow(Base):
    """Current balance (debit - credit, every effective time) of an account and unit; kept
    by the journal_lines trigger."""

    __tablename__ = "account_balances"

    ledger_account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    unit: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(38, 8))
    lines: Mapped[int] = mapped_column(sa.BigInteger)


class BalanceDayRow(Base):
    """Net movement of an account and unit on one effective UTC day; kept by the trigger."""

    __tablename__ = "balance_days"

    ledger_account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    unit: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(38, 8))
    lines: Mapped[int] = mapped_column(sa.BigInteger)


class LimitRow(Base):
    __tablename__ = "account_limits"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    unit: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    min_position: Mapped[Decimal] = mapped_column(sa.Numeric(38, 8))
    set_by: Mapped[str] = mapped_column(sa.Text)
    set_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ExceptionRow(Base):
    """A posting refused by an account limit, for operations and compliance."""

    __tablename__ = "ledger_exceptions"

    exception_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    account: Mapped[str] = mapped_column(sa.Text, index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    event_id: Mapped[str] = mapped_column(sa.Text)
    event_type: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    breaches: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    raised_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=True), unique=True)
