"""Events the gateway publishes on trade.events (keyed by account).

A trade has a version: 1 when captured, +1 with each amendment. Every later event about the
trade's economics carries the version it was computed from, so a consumer can tell a late
answer about an older version from one about the current version. The account of a trade
never changes (it is the partition key, which keeps a trade's events in order).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from bo_common.contracts._base import EventData

TRADE_CAPTURED = "trade.captured"
TRADE_CAPTURED_VERSION = 1
TRADE_AMENDED = "trade.amended"
TRADE_AMENDED_VERSION = 1
TRADE_CANCELLED = "trade.cancelled"
TRADE_CANCELLED_VERSION = 1


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
    # The trade's version these terms are: 1 at capture.
    version: int = 1
    cusip: str | None = None


class TradeAmended(TradeCaptured):
    """The trade's full terms after the amendment (same trade_id and account), the version
    they supersede is `version - 1`."""

    reason: str
    changed_fields: list[str]


class TradeCancelled(EventData):
    trade_id: str
    client_trade_id: str
    account: str
    desk: str | None = None
    # The version that was current when the trade was cancelled.
    version: int
    reason: str
