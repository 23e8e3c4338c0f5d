"""Events settlement publishes on settlement.events (keyed by account)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

OBLIGATION_CREATED = "settlement.obligation_created"
NEEDS_SSI = "settlement.needs_ssi"
INSTRUCTED = "settlement.instructed"
MATCHED = "settlement.matched"
SETTLED = "settlement.settled"
FAILED = "settlement.failed"
OBLIGATION_AMENDED = "settlement.obligation_amended"
OBLIGATION_CANCELLED = "settlement.obligation_cancelled"
# An amendment or cancellation that reached settlement after the trade was instructed: the
# instruction stands, and the trade waits in the exception queue for operations.
CHANGE_REFUSED = "settlement.change_refused"


class ObligationCreated(EventData):
    trade_id: str
    obligation_id: str
    account: str
    settlement_date: date
    market: str
    cycle_days: int
    version: int = 1


class ObligationCancelled(EventData):
    trade_id: str
    obligation_id: str
    account: str
    version: int
    reason: str


class ChangeRefused(EventData):
    trade_id: str
    account: str
    change: Literal["amend", "cancel"]
    version: int
    reason: str


class SettlementStep(EventData):
    """instructed / matched / failed for one trade of an instruction."""

    trade_id: str
    instruction_id: str
    account: str
    reason: str | None = None


class SettlementSettled(EventData):
    """Carries the economics so that the ledger can book it without the capture.

    Also settlement.partially_settled (one event per part). Where it settled, from the SSI
    the instruction used (optional, added later: an event without them still parses, and
    the ledger then books the settled movement against the street as before):
    `depository` is the BIC of the place of settlement (the sese.023's `Dpstry`),
    `custodian_bic` and `safekeeping_account` the SSI's custodian and its account.
    """

    trade_id: str
    instruction_id: str
    account: str
    side: Literal["BUY", "SELL"]
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    settlement_date: date
    counterparty_lei: str
    depository: str | None = None
    custodian_bic: str | None = None
    safekeeping_account: str | None = None
