"""Events the ledger publishes on ledger.events (keyed by account).

Additive changes only: `effective_at`, `cause_event_id`, `cause_event_type` and
`balances` on ledger.posted are optional (absent from events written before them), and the
entry kind `partially_settled` is new; ledger.posting_refused is a new event type.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

POSTED = "ledger.posted"
# A posting an account limit refused: not applied, queued as an exception.
POSTING_REFUSED = "ledger.posting_refused"


class PostedLine(EventData):
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal


class PostedBalance(EventData):
    """An account's balance (debit - credit, every effective time) after the entry."""

    ledger_account: str
    unit: str
    balance: Decimal


class LedgerPosted(EventData):
    entry_id: str
    trade_id: str
    account: str
    # pending: contractual, on trade date; settled / partially_settled: the movement the
    # depository made, releasing the pending amounts; reversal: voids a pending entry.
    kind: Literal["pending", "settled", "partially_settled", "reversal"]
    lines: list[PostedLine]
    # A reversal names the entry it reverses; every entry names the trade version it books.
    reverses: str | None = None
    version: int = 1
    effective_at: datetime | None = None
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    # The balance, right after the entry, of every account and unit it changed (the
    # client's and the street's, settled and pending).
    balances: list[PostedBalance] | None = None


class LimitBreach(EventData):
    account: str
    unit: str
    min_position: Decimal
    position_before: Decimal
    position_after: Decimal


class PostingRefused(EventData):
    exception_id: str
    trade_id: str
    account: str
    version: int
    reason: str
    breaches: list[LimitBreach]
    lines: list[PostedLine]
    cause_event_id: str
    cause_event_type: str
