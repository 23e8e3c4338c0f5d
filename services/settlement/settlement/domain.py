"""Settlement domain: settlement dates, obligations and the instructions that settle them.

No I/O: the business-day calendar, time and ids are arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal, Protocol

from settlement.markets import MARKET_OF_ISIN_COUNTRY, Market


class SettlementError(Exception):
    """A settlement rule was broken."""


class UnknownMarket(SettlementError):
    pass


class BusinessDays(Protocol):
    def add(self, start: date, business_days: int) -> date:
        """The date `business_days` business days after `start` (start rolled back to a
        business day first, so a trade dated on a holiday counts from the day before)."""
        ...


def market_for(isin: str) -> Market:
    market = MARKET_OF_ISIN_COUNTRY.get(isin[:2])
    if market is None:
        raise UnknownMarket(f"no settlement market configured for ISIN country '{isin[:2]}'")
    return market


def cycle_days(market: Market, trade_date: date) -> int:
    applicable = [c for c in market.cycles if c.effective_from <= trade_date]
    if not applicable:
        raise UnknownMarket(f"no settlement cycle of {market.code} covers {trade_date}")
    return max(applicable, key=lambda c: c.effective_from).business_days


def settlement_date(
    market: Market, trade_date: date, calendar_for: Callable[[str], BusinessDays]
) -> tuple[date, int]:
    days = cycle_days(market, trade_date)
    return calendar_for(market.calendar).add(trade_date, days), days


ObligationState = Literal[
    "awaiting_compliance",
    "held",
    "needs_ssi",
    "ready",
    "instructed",
    "matched",
    "settled",
    "partially_settled",
    "failed",
    "cancelled",
]


@dataclass(frozen=True)
class Ssi:
    counterparty_lei: str
    market: str
    depository: str
    custodian_bic: str
    safekeeping_account: str
    cash_account: str


COMPLIANCE_DECISIONS = frozenset({"cleared", "held", "rejected"})


class UnknownComplianceDecision(SettlementError):
    pass


def next_state(*, compliance: str | None, ssi: Ssi | None) -> ObligationState:
    """Where a not-yet-instructed obligation stands given what is known so far.

    Only an explicit 'cleared' lets a trade proceed: an unknown decision is an error, never
    a pass.
    """
    if compliance is None:
        return "awaiting_compliance"
    if compliance not in COMPLIANCE_DECISIONS:
        raise UnknownComplianceDecision(f"unknown compliance decision '{compliance}'")
    if compliance == "rejected":
        return "cancelled"
    if compliance == "held":
        return "held"
    if ssi is None:
        return "needs_ssi"
    return "ready"


@dataclass(frozen=True)
class InstructionTerms:
    direction: Literal["RECEIVE", "DELIVER"]
    payment: Literal["APMT", "FREE"]
    quantity: Decimal
    amount: Decimal


def instruction_terms(
    *, side: str, settlement_type: str, quantity: Decimal, amount: Decimal
) -> InstructionTerms:
    """A buy receives securities (and pays); a sell delivers them (and is paid)."""
    return InstructionTerms(
        direction="RECEIVE" if side == "BUY" else "DELIVER",
        payment="APMT" if settlement_type == "DVP" else "FREE",
        quantity=quantity,
        amount=amount if settlement_type == "DVP" else Decimal(0),
    )


CSD_OUTCOME_STATE: dict[str, ObligationState] = {
    "matched": "matched",
    "settled": "settled",
    "partially_settled": "partially_settled",
    "failed": "failed",
}
