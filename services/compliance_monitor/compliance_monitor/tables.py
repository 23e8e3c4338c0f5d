"""Compliance tables: rule versions, the restricted and watch lists, the counterparty names
screened, the projection of the trades seen (trades, positions, last prices), evaluations,
holds with their four-eyes proposals, and alerts with their workflow history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RuleVersionRow(Base):
    """Every version of every rule, never updated: a change adds a version in force from
    its `effective_from` (the trades of events after it are evaluated with it)."""

    __tablename__ = "rule_versions"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    action: Mapped[str] = mapped_column(sa.Text)
    severity: Mapped[str] = mapped_column(sa.Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    effective_from: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)


class ListEntryRow(Base):
    """An entry of the restricted list (ISIN) or the watch list (LEI or name), from
    `added_at` until `removed_at`: a removal ends the entry, it is never deleted."""

    __tablename__ = "list_entries"

    entry_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    list: Mapped[str] = mapped_column(sa.Text)  # restricted | watch_lei | watch_name
    value: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    added_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    added_by: Mapped[str] = mapped_column(sa.Text)
    removed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    removed_by: Mapped[str | None] = mapped_column(sa.Text)
    removal_reason: Mapped[str | None] = mapped_column(sa.Text)


class CounterpartyRow(Base):
    """The legal name of a counterparty LEI, screened against the watched names."""

    __tablename__ = "counterparties"

    lei: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(sa.Text)


class TradeRow(Base):
    """Per trade: the latest version evaluated (0: none yet) and its cancellation. Its row
    lock serialises the events of one trade."""

    __tablename__ = "trades"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    cancelled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    # The terms of the latest version evaluated (null before revision 0003 or version 1).
    side: Mapped[str | None] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    quantity: Mapped[Decimal | None] = mapped_column(sa.Numeric)
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric)
    currency: Mapped[str | None] = mapped_column(sa.Text)
    trade_time: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class PositionRow(Base):
    """The net quantity (buys less sells) of each account in each ISIN, from the trades
    seen: each evaluated version replaces its trade's contribution, a cancellation removes it."""

    __tablename__ = "positions"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    isin: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric)


class LastPriceRow(Base):
    """The price of the latest trade (by trade time) seen in each ISIN and currency."""

    __tablename__ = "last_prices"

    isin: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    price: Mapped[Decimal] = mapped_column(sa.Numeric)
    trade_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    trade_id: Mapped[str] = mapped_column(sa.Text)


class EvaluationRow(Base):
    """One row per evaluated version of a trade: a history, never updated."""

    __tablename__ = "evaluations"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.Text)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    evaluated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AlertRow(Base):
    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    account: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    rule: Mapped[str] = mapped_column(sa.Text)
    rule_version: Mapped[int] = mapped_column(sa.Integer)
    severity: Mapped[str] = mapped_column(sa.Text)
    # A breach of a `hold` rule: the alert holds its trade version.
    blocking: Mapped[bool] = mapped_column(sa.Boolean)
    detail: Mapped[str] = mapped_column(sa.Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(sa.Text)  # open | assigned | escalated | closed
    assignee: Mapped[str | None] = mapped_column(sa.Text)
    raised_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    closed_reason: Mapped[str | None] = mapped_column(sa.Text)


class AlertActionRow(Base):
    """The workflow history of an alert: every assignment, escalation and closure."""

    __tablename__ = "alert_actions"

    action_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    alert_id: Mapped[str] = mapped_column(sa.Text, index=True)
    action: Mapped[str] = mapped_column(sa.Text)
    from_state: Mapped[str] = mapped_column(sa.Text)
    to_state: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    assignee: Mapped[str | None] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class HoldRow(Base):
    """A held version of a trade. `open` until released or rejected (four eyes: states
    `released`, `rejected`), or `closed` when superseded by a newer version or ended by the
    trade's cancellation; at most one open per trade."""

    __tablename__ = "holds"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    rules: Mapped[list[str]] = mapped_column(JSONB)
    opened_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    close_reason: Mapped[str | None] = mapped_column(sa.Text)


class ProposalRow(Base):
    """A proposal to release or reject a held version and what became of it: `pending`
    until another officer approves it, or it is declined, or the hold ends otherwise
    (`void`). At most one pending per trade."""

    __tablename__ = "hold_proposals"

    proposal_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    decision: Mapped[str] = mapped_column(sa.Text)  # release | reject
    state: Mapped[str] = mapped_column(sa.Text)  # pending | approved | declined | void
    proposed_by_key: Mapped[str] = mapped_column(sa.Text)
    proposed_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    proposed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    decided_by_key: Mapped[str | None] = mapped_column(sa.Text)
    decided_by: Mapped[str | None] = mapped_column(sa.Text)
    decided_reason: Mapped[str | None] = mapped_column(sa.Text)
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
