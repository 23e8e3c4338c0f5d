"""Trades as the gateway captures them, identifier rules, and the status view's states.

No I/O: time and ids are arguments.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import iso10383
import pycountry
from stdnum import cusip as stdnum_cusip
from stdnum import isin as stdnum_isin
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError


class DomainError(Exception):
    """A rule of the gateway's domain was broken."""


class AccountNotAllowed(DomainError):
    def __init__(self, account: str, desk: str | None) -> None:
        super().__init__(f"account '{account}' is not an account of desk '{desk}'")
        self.account = account


class UnknownAccount(DomainError):
    def __init__(self, account: str) -> None:
        super().__init__(f"account '{account}' is not a known account of any desk")
        self.account = account


class TradeDateInFuture(DomainError):
    pass


class InvalidTerms(DomainError):
    """Terms that break a rule spanning fields: each (field, reason)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))
        self.errors = errors


class ChangeNotAllowed(DomainError):
    """An amendment or cancellation the trade's state (or the field) does not allow."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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


def valid_cusip(value: str) -> str:
    try:
        return str(stdnum_cusip.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid CUSIP ({error})") from None


def check_cusip_matches_isin(cusip: str, isin: str) -> None:
    """A US or Canadian ISIN embeds the CUSIP (characters 3 to 11)."""
    if isin[:2] not in ("US", "CA"):
        raise ValueError(f"a CUSIP is only given for a US or CA ISIN, not {isin[:2]}")
    if isin[2:11] != cusip:
        raise ValueError(f"CUSIP {cusip} is not the one in ISIN {isin} ({isin[2:11]})")


# ISO 4217 codes that are not a currency a trade can be priced and paid in: precious
# metals, SDRs, bond-market units, test and "no currency" codes.
NOT_A_SETTLEMENT_CURRENCY = frozenset(
    {"XAU", "XAG", "XPT", "XPD", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA", "XTS", "XXX"}
)


def valid_currency(value: str) -> str:
    code = value.upper()
    if len(value) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError("not an ISO 4217 currency code")
    if code in NOT_A_SETTLEMENT_CURRENCY:
        raise ValueError(f"{code} is an ISO 4217 code but not a currency trades settle in")
    return code


def valid_mic(value: str) -> str:
    """A market identifier code from the ISO 10383 register (the `iso10383` package)."""
    entry = iso10383.MIC.__members__.get(value.lower()) if len(value) == 4 else None
    if entry is None:
        raise ValueError("not a market identifier code in the ISO 10383 register")
    return value.upper()


def check_venue_open(mic: str, trade_date: date) -> None:
    """A MIC that the register marks expired is refused for trades on or after its expiry."""
    entry = iso10383.MIC[mic.lower()].value
    if entry.status is iso10383.Status.expired:
        expiry = entry.expiry_date
        if expiry is None or trade_date >= expiry:
            when = f" on {expiry}" if expiry else ""
            raise ValueError(f"MIC {mic} expired{when} in the ISO 10383 register")


def request_hash(body: dict[str, Any]) -> str:
    """A stable hash of what the client sent, to tell a retry from a different trade."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def first_difference(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    for field in sorted(set(first) | set(second)):
        if str(first.get(field)) != str(second.get(field)):
            return field
    return None


def check_trade_date(trade_date: date, trade_time: datetime, now: datetime) -> None:
    """trade_date is the date of trade_time in the offset the client gave (the venue's local
    day), and is not after today in that offset."""
    local_today = now.astimezone(trade_time.tzinfo).date()
    if trade_date > local_today:
        raise TradeDateInFuture(
            f"trade_date {trade_date} is in the future (today is {local_today} at UTC"
            f"{trade_time.strftime('%z') or '+0000'})"
        )
    if trade_time.date() != trade_date:
        raise TradeDateInFuture(
            f"trade_date {trade_date} does not match trade_time's date {trade_time.date()}"
        )


CLOCK_SKEW = timedelta(minutes=1)


def rule_errors(terms: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    """The rules that span fields, on terms whose fields are each valid: (field, reason)."""
    errors: list[tuple[str, str]] = []
    if terms.get("cusip") is not None:
        try:
            check_cusip_matches_isin(terms["cusip"], terms["isin"])
        except ValueError as error:
            errors.append(("cusip", str(error)))
    try:
        check_venue_open(terms["venue"], terms["trade_date"])
    except ValueError as error:
        errors.append(("venue", str(error)))
    try:
        check_trade_date(terms["trade_date"], terms["trade_time"], now)
    except TradeDateInFuture as error:
        errors.append(("trade_date", str(error)))
    if terms["trade_time"] - now > CLOCK_SKEW:
        errors.append(("trade_time", f"{terms['trade_time'].isoformat()} is in the future"))
    return errors


def trade_of_event(data: dict[str, Any], correlation_id: str | None) -> str | None:
    """The trade an event is about (its data's trade_id, else its correlation id), or None
    for an event about no single trade (a rule or list change, a netting run): those have
    no place in a trade's timeline."""
    candidate = data.get("trade_id") or correlation_id
    if not isinstance(candidate, str):
        return None
    try:
        uuid.UUID(candidate)
    except ValueError:
        return None
    return candidate


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


# -- amendment and cancellation ---------------------------------------------------------
# Until settlement has instructed the trade its terms may change; after, only operations
# can unwind it at the depository.
CHANGEABLE_STATES = frozenset({"captured", "held", "released"})
CANCELLABLE_STATES = CHANGEABLE_STATES | {"rejected"}
# Fields that identify the trade or route its events (the account is the partition key):
# they are never amended; cancel and capture a new trade instead.
FIXED_FIELDS = ("client_trade_id", "account")


def check_changeable(state: str, change: str) -> None:
    allowed = CANCELLABLE_STATES if change == "cancel" else CHANGEABLE_STATES
    if state not in allowed:
        if state == "cancelled":
            reason = "the trade is cancelled"
        elif state == "rejected":
            reason = "compliance rejected the trade; it can only be cancelled"
        else:
            reason = (
                f"the trade is {state}: settlement has instructed it, so it can no longer "
                "change here; ask operations to unwind it at the depository"
            )
        raise ChangeNotAllowed(f"cannot {change} trade: {reason}")


def amended_terms(
    current: dict[str, Any], changes: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The trade's terms after `changes`, and the fields whose value really changed (a
    change to the value a field already has is no change: a retried amendment is a no-op)."""
    for field in FIXED_FIELDS:
        if field in changes:
            raise ChangeNotAllowed(
                f"{field} cannot be amended; cancel the trade and capture a new one",
                field=field,
            )
    terms = {**current, **changes}
    # Typed comparison: 150 equals 150.00000000, and two times equal as instants.
    changed = sorted(f for f in changes if changes[f] != current.get(f))
    return terms, changed
