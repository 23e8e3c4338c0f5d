"""Trades as the gateway captures them, identifier rules, and the status view's states.

No I/O: time and ids are arguments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pycountry
from stdnum import isin as stdnum_isin
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError


class DomainError(Exception):
    """A rule of the gateway's domain was broken."""


class AccountNotAllowed(DomainError):
    def __init__(self, account: str, desk: str | None) -> None:
        super().__init__(f"account '{account}' is not an account of desk '{desk}'")
        self.account = account


class TradeDateInFuture(DomainError):
    pass


def valid_isin(value: str) -> str:
    try:
        return str(stdnum_isin.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid ISIN ({error})") from None


def valid_lei(value: str) -> str:
    try:
        return str(stdnum_lei.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid LEI, ISO 17442 ({error})") from None


def valid_currency(value: str) -> str:
    if len(value) != 3 or pycountry.currencies.get(alpha_3=value.upper()) is None:
        raise ValueError("not an ISO 4217 currency code")
    return value.upper()


@dataclass(frozen=True)
class Trade:
    trade_id: str
    client: str
    client_trade_id: str
    account: str
    desk: str | None
    side: str
    isin: str
    quantity: Decimal
    price: Decimal
    currency: str
    trade_date: date
    trade_time: datetime
    venue: str
    counterparty_lei: str
    settlement_type: str
    received_at: datetime
    request_hash: str

    @property
    def gross_amount(self) -> Decimal:
        return self.quantity * self.price


def request_hash(body: dict[str, Any]) -> str:
    """A stable hash of what the client sent, to tell a retry from a different trade."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def first_difference(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    for field in sorted(set(first) | set(second)):
        if str(first.get(field)) != str(second.get(field)):
            return field
    return None


def check_trade_date(trade_date: date, trade_time: datetime, today: date) -> None:
    if trade_date > today:
        raise TradeDateInFuture(f"trade_date {trade_date} is in the future")
    if trade_time.date() != trade_date:
        raise TradeDateInFuture(
            f"trade_date {trade_date} does not match trade_time's date {trade_time.date()}"
        )


# The status view: each event type moves the trade to a state of a rank; the view shows
# the highest rank seen, so the result does not depend on the order events arrive in.
STATE_OF_EVENT: dict[str, tuple[str, int]] = {
    "trade.captured": ("captured", 10),
    "compliance.trade_held": ("held", 20),
    "compliance.trade_released": ("released", 30),
    "settlement.instructed": ("instructed", 40),
    "settlement.matched": ("matched", 50),
    "settlement.failed": ("failed", 55),
    "settlement.partially_settled": ("partially_settled", 60),
    "settlement.settled": ("settled", 70),
    "compliance.trade_rejected": ("rejected", 90),
    "trade.cancelled": ("cancelled", 95),
}
