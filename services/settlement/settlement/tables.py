"""Settlement tables: obligations, compliance decisions (per trade version), cancellations,
refused changes (the exception queue), SSIs, instructions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ObligationRow(Base):
    __tablename__ = "obligations"

    obligation_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, unique=True)
    account: Mapped[str] = mapped_column(sa.Text)
    side: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    currency: Mapped[str] = mapped_column(sa.Text)
    trade_date: Mapped[date] = mapped_column(sa.Date)
    settlement_date: Mapped[date] = mapped_column(sa.Date)
    cycle_days: Mapped[int] = mapped_column(sa.Integer)
    market: Mapped[str] = mapped_column(sa.Text)
    counterparty_lei: Mapped[str] = mapped_column(sa.Text)
    settlement_type: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    instruction_id: Mapped[str | None] = mapped_column(sa.Text)
    correlation_id: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The trade version the terms are from: 1 at capture, n after the amendment to n.
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    # Set when the trade itself was cancelled (state "cancelled" alone may also be a
    # compliance rejection): such an obligation is never instructed.
    cancelled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)


class ComplianceDecisionRow(Base):
    """Compliance's verdict on one version of a trade; may arrive before the trade itself.
    Every version's latest verdict is kept; only the obligation's version counts."""

    __tablename__ = "compliance_decisions"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, default=1)
    decision: Mapped[str] = mapped_column(sa.Text)
    decided_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class CancellationRow(Base):
    """Every trade.cancelled received, also one that arrives before its trade."""

    __tablename__ = "cancellations"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    correlation_id: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class RefusedChangeRow(Base):
    """An amendment or cancellation that arrived after the trade was instructed: the
    instruction stands and the change waits in the exception queue for operations."""

    __tablename__ = "refused_changes"
    __table_args__ = (sa.UniqueConstraint("trade_id", "change", "version"),)

    refusal_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text)
    obligation_id: Mapped[str] = mapped_column(sa.Text)
    account: Mapped[str] = mapped_column(sa.Text)
    instruction_id: Mapped[str] = mapped_column(sa.Text)
    change: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    requested_reason: Mapped[str] = mapped_column(sa.Text)
    refused_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(sa.Text)
    resolution: Mapped[str | None] = mapped_column(sa.Text)


class SsiRow(Base):
    __tablename__ = "ssis"
    __table_args__ = (
        sa.UniqueConstraint(
            "counterparty_lei", "market", "asset_class", "version", name="ssis_key_version"
        ),
    )

    ssi_id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    counterparty_lei: Mapped[str] = mapped_column(sa.Text)
    market: Mapped[str] = mapped_column(sa.Text)
    # "equity" or "bond" (settlement.domain.ssi_asset_class of the trade's ISIN).
    asset_class: Mapped[str] = mapped_column(sa.Text, default="equity")
    version: Mapped[int] = mapped_column(sa.Integer)
    depository: Mapped[str] = mapped_column(sa.Text)
    custodian_bic: Mapped[str] = mapped_column(sa.Text)
    safekeeping_account: Mapped[str] = mapped_column(sa.Text)
    cash_account: Mapped[str] = mapped_column(sa.Text)
    effective_from: Mapped[date] = mapped_column(sa.Date)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class InstructionRow(Base):
    __tablename__ = "instructions"

    instruction_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_ids: Mapped[list[str]] = mapped_column(ARRAY(sa.Text))
    account: Mapped[str] = mapped_column(sa.Text)
    direction: Mapped[str] = mapped_column(sa.Text)
    payment: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8))
    currency: Mapped[str] = mapped_column(sa.Text)
    settlement_date: Mapped[date] = mapped_column(sa.Date)
    depository: Mapped[str] = mapped_column(sa.Text)
    counterparty_lei: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    # What the depository has confirmed settled so far (sese.025), in total.
    settled_quantity: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8), default=Decimal(0))
    settled_amount: Mapped[Decimal] = mapped_column(sa.Numeric(28, 8), default=Decimal(0))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The netting run that made it (None: instructed gross at once, netting disabled).
    run_id: Mapped[str | None] = mapped_column(sa.Text)
    # securities or payment_only (sent as a sese.023; payment_only as a payment free of
    # delivery) or netted_out (nothing to send; settled by netting).
    kind: Mapped[str] = mapped_column(sa.Text, default="securities")
    # True when the instruction covers one trade on its own terms (gross).
    gross: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # The SSI version it was sent with (None: sent before revision 0006).
    ssi_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Against payment (APMT): DBIT the firm pays `amount`, CRDT it is paid; None free of
    # payment. Either way with either direction (receive/deliver with payment), and on a
    # payment free of delivery (kind payment_only, quantity 0).
    credit_debit: Mapped[str | None] = mapped_column(sa.Text)


class NettingRunRow(Base):
    """One netting run for a settlement date: manual (POST /v1/netting-runs) or the cycle."""

    __tablename__ = "netting_runs"

    run_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    settlement_date: Mapped[date] = mapped_column(sa.Date)
    trigger: Mapped[str] = mapped_column(sa.Text)  # manual or cycle
    cutoff_note: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    obligation_count: Mapped[int] = mapped_column(sa.Integer)
    instruction_count: Mapped[int] = mapped_column(sa.Integer)


class CounterpartyNettingRow(Base):
    """Netting switched on or off for a counterparty (no row: on)."""

    __tablename__ = "counterparty_netting"

    counterparty_lei: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    updated_by: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
