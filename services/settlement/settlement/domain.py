"""Settlement domain: settlement dates, obligations, the instructions that settle them, and
what an amendment or cancellation of the trade does to its obligation.

No I/O: the business-day calendar, time and ids are arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

from settlement.markets import MARKET_OF_ISIN_COUNTRY, Market
from settlement.penalties import asset_class_of


class SettlementError(Exception):
    """A settlement rule was broken."""


class UnknownMarket(SettlementError):
    pass


class SsiNotFound(SettlementError):
    pass


class SsiEffectiveTooEarly(SettlementError):
    """A new SSI version may not take effect before the version it follows."""


# SSIs are kept per (counterparty LEI, market, asset class). The class of a trade comes from
# its ISIN by the same prefix table as the CSDR penalties (settlement.penalties): sovereign
# and other bonds are "bond", everything else "equity". There is no fallback: a bond trade
# whose counterparty has only an equity SSI waits in needs_ssi.
SsiAssetClass = Literal["equity", "bond"]
SSI_ASSET_CLASSES: tuple[SsiAssetClass, ...] = ("equity", "bond")
BOND_CLASSES = frozenset({"sovereign_bonds", "other_bonds", "sme_growth_market_bonds"})


def ssi_asset_class(isin: str) -> SsiAssetClass:
    return "bond" if asset_class_of(isin) in BOND_CLASSES else "equity"


class SsiVersion(Protocol):
    @property
    def effective_from(self) -> date: ...

    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=SsiVersion)


def version_in_force(versions: Iterable[V], on: date) -> V | None:
    """The version in force on `on`: the latest effective_from not after it (the higher
    version wins a tie); None when every version starts later."""
    candidates = [v for v in versions if v.effective_from <= on]
    return max(candidates, key=lambda v: (v.effective_from, v.version), default=None)


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


@dataclass(frozen=True)
class ObligationTerms:
    """What settlement owes or is owed for one version of a trade."""

    side: str
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    trade_date: date
    settlement_date: date
    cycle_days: int
    market: str
    counterparty_lei: str
    settlement_type: str


def obligation_terms(
    *,
    side: str,
    isin: str,
    quantity: Decimal,
    amount: Decimal,
    currency: str,
    trade_date: date,
    counterparty_lei: str,
    settlement_type: str,
    calendar_for: Callable[[str], BusinessDays],
) -> ObligationTerms:
    """The obligation of a trade's terms, at capture and again at each amendment: the market
    from the ISIN, the settlement date from that market's cycle and calendar."""
    market = market_for(isin)
    settle_on, cycle = settlement_date(market, trade_date, calendar_for)
    return ObligationTerms(
        side=side,
        isin=isin,
        quantity=quantity,
        amount=amount,
        currency=currency,
        trade_date=trade_date,
        settlement_date=settle_on,
        cycle_days=cycle,
        market=market.code,
        counterparty_lei=counterparty_lei,
        settlement_type=settlement_type,
    )


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


def settled_so_far(
    *,
    instructed_quantity: Decimal,
    instructed_amount: Decimal,
    before_quantity: Decimal,
    before_amount: Decimal,
    confirmed_quantity: Decimal | None,
    confirmed_amount: Decimal | None,
    in_full: bool,
) -> tuple[Decimal, Decimal]:
    """The quantity and cash of an instruction settled in total after a sese.025.

    A confirmation states what it settles (a partial one: a part of what was left). Settled
    in full, the whole instructed quantity is settled. Cash the confirmation does not state
    (free of payment) follows the quantity pro rata. Never more than was instructed.
    """
    if in_full:
        quantity = instructed_quantity
        amount = instructed_amount if confirmed_amount is None else before_amount + confirmed_amount
    else:
        quantity = min(instructed_quantity, before_quantity + (confirmed_quantity or Decimal(0)))
        if confirmed_amount is not None:
            amount = before_amount + confirmed_amount
        elif instructed_quantity:
            share = (quantity - before_quantity) / instructed_quantity
            amount = before_amount + instructed_amount * share
        else:
            amount = before_amount
    return quantity, min(amount, instructed_amount)


def remaining_quantity(instructed: Decimal, settled: Decimal) -> Decimal:
    """What a partially settled instruction still has to settle (its open remainder)."""
    return max(instructed - settled, Decimal(0))


# --- amendments and cancellations ------------------------------------------------------
# Until an instruction has gone to the depository the obligation follows the trade; after,
# the instruction stands and the change goes to operations (the exception queue).

AmendmentAction = Literal["apply", "stale", "cancelled", "refuse"]
CancellationAction = Literal["cancel", "already_cancelled", "refuse"]
Change = Literal["amend", "cancel"]


def amendment_action(
    *, current_version: int, amendment_version: int, instructed: bool, cancelled: bool
) -> AmendmentAction:
    """What an amendment to `amendment_version` does to an obligation at `current_version`.

    - stale: a version the obligation already has (a redelivery or a late duplicate): no-op;
    - cancelled: the trade was cancelled, nothing brings it back: no-op;
    - refuse: an instruction was sent, which an amendment cannot change;
    - apply: recompute the obligation from the new terms.
    """
    if amendment_version <= current_version:
        return "stale"
    if cancelled:
        return "cancelled"
    if instructed:
        return "refuse"
    return "apply"


def cancellation_action(*, instructed: bool, cancelled: bool) -> CancellationAction:
    if cancelled:
        return "already_cancelled"
    if instructed:
        return "refuse"
    return "cancel"


def decision_counts(*, decision_version: int, obligation_version: int) -> bool:
    """Compliance's decision applies to the terms it evaluated: only a decision about the
    obligation's current version may release (or hold) it. One about an older version is a
    late answer about terms that no longer exist; one about a newer version waits for the
    amendment that brings those terms."""
    return decision_version == obligation_version


def refusal_reason(
    *, change: Change, trade_id: str, instruction_id: str, instruction_state: str
) -> str:
    verb = "amended" if change == "amend" else "cancelled"
    return (
        f"trade {trade_id} cannot be {verb} by settlement: instruction {instruction_id} was "
        f"already sent to the depository (state {instruction_state}); the instruction stands "
        "until operations unwind it at the depository"
    )
