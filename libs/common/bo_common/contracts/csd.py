"""Messages between settlement and the depository (csd.instructions, csd.status)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

INSTRUCTION = "csd.instruction"
MATCHED = "csd.matched"
SETTLED = "csd.settled"
PARTIALLY_SETTLED = "csd.partially_settled"
FAILED = "csd.failed"
PENDING = "csd.pending"


class CsdInstruction(EventData):
    instruction_id: str
    trade_ids: list[str]
    account: str
    direction: Literal["RECEIVE", "DELIVER"]
    payment: Literal["APMT", "FREE"]
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    settlement_date: date
    depository: str
    counterparty_lei: str


class CsdStatus(EventData):
    instruction_id: str
    status: Literal["matched", "pending", "settled", "partially_settled", "failed"]
    reason: str | None = None
    settled_quantity: Decimal | None = None
