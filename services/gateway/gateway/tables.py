"""The gateway's tables: trades, desks and the status timeline."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TradeRow(Base):
    __tablename__ = "trades"
    __table_args__ = (sa.UniqueConstraint("client", "client_trade_id"),)

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    client: Mapped[str] = mapped_column(sa.Text)
    client_trade_id: Mapped[str] = mapped_column(sa.Text)
    account: Mapped[str] = mapped_column(sa.Text, index=True)
    desk: Mapped[str | None] = mapped_column(sa.Text)
    side: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(28, 10))
    currency: Mapped[str] = mapped_column(sa.Text)
    trade_date: Mapped[date] = mapped_column(sa.Date)
    trade_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    venue: Mapped[str] = mapped_column(sa.Text)
    counterparty_lei: Mapped[str] = mapped_column(sa.Text)
    settlement_type: Mapped[str] = mapped_column(sa.Text)
    request: Mapped[dict[str, object]] = mapped_column(JSONB)
    request_hash: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    state: Mapped[str] = mapped_column(sa.Text)
    state_rank: Mapped[int] = mapped_column(sa.Integer)
    state_changed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    cusip: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)


class TradeVersionRow(Base):
    """Each amendment or cancellation: the terms after it, who, when and why."""

    __tablename__ = "trade_versions"

    trade_id: Mapped[str] = mapped_column(sa.ForeignKey("trades.trade_id"), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    change: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    terms: Mapped[dict[str, object]] = mapped_column(JSONB)
    changed_fields: Mapped[list[str]] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ClientLimitRow(Base):
    """A client's own request rate, where it differs from the service default."""

    __tablename__ = "client_limits"

    client: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    requests_per_second: Mapped[Decimal] = mapped_column(sa.Numeric(12, 3))
    burst: Mapped[int] = mapped_column(sa.Integer)


class TimelineRow(Base):
    __tablename__ = "trade_timeline"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    event_type: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    data: Mapped[dict[str, object]] = mapped_column(JSONB)


class DeskRow(Base):
    __tablename__ = "desks"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class DeskAccountRow(Base):
    __tablename__ = "desk_accounts"

    desk: Mapped[str] = mapped_column(sa.ForeignKey("desks.name"), primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text, primary_key=True, unique=True)
