"""Events the operations tool (`bo`) publishes on ops.events, so that what operators did
and what the controls found are in the audit trail."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from bo_common.contracts._base import EventData

RECONCILIATION_COMPLETED = "ops.reconciliation_completed"
RECONCILIATION_COMPLETED_VERSION = 1
DEAD_LETTER_REPLAYED = "ops.dead_letter_replayed"
DEAD_LETTER_REPLAYED_VERSION = 1


class ReconciliationBreak(EventData):
    trade_id: str | None
    service: str
    kind: str
    detail: str


class ReconciliationCompleted(EventData):
    run_id: str
    # The scope: a trade-date period, a settlement date, or named trades.
    trade_date_from: date | None = None
    trade_date_to: date | None = None
    settlement_date: date | None = None
    trade_ids: list[str] | None = None
    trades: int
    quantity: Decimal
    gross_amounts: dict[str, Decimal]
    checked: dict[str, int]
    clean: bool
    break_count: int
    # The first breaks (the event stays small); `bo reconcile` prints them all.
    breaks: list[ReconciliationBreak]


class DeadLetterReplayed(EventData):
    dead_letter_id: str
    topic: str
    partition: int
    offset: int
    consumer: str
    # True when the operator replayed a corrected value instead of the original.
    corrected: bool
    replayed_to_partition: int
    replayed_to_offset: int
