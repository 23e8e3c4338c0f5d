"""Events the ledger publishes on ledger.events (keyed by account)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

POSTED = "ledger.posted"


class PostedLine(EventData):
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal


class LedgerPosted(EventData):
    entry_id: str
    trade_id: str
    account: str
    kind: Literal["pending", "settled", "reversal"]
    lines: list[PostedLine]
    # A reversal names the entry it reverses; every entry names the trade version it books.
    reverses: str | None = None
    version: int = 1
