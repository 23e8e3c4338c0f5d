"""Events the gateway publishes on trade.events (keyed by account)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

TRADE_CAPTURED = "trade.captured"
TRADE_CAPTURED_VERSION = 1


class TradeCaptured(EventData):
    trade_id: str
    client_trade_id: str
    account: str
    desk: str | None = None
    side: Literal["BUY", "SELL"]
    isin: str
    quantity: Decimal
    price: Decimal
    currency: str
    gross_amount: Decimal
    trade_date: date
    trade_time: datetime
    venue: str
    counterparty_lei: str
    settlement_type: Literal["DVP", "FOP"]
