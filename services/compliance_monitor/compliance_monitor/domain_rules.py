"""The compliance rules: their kinds and parameters, and the evaluation of one trade version
against the rule versions in force and the monitor's own projection of the trades it has
seen (positions, last prices, recent trades). Pure: time, calendars and what the projection
holds are arguments, so the same inputs always give the same outcomes.

Each rule has an action: `hold` (a breach blocks settlement until two compliance officers
release or reject the trade) or `alert` (a breach is raised for review, the trade goes on),
and a severity for the alert queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rapidfuzz import fuzz, process, utils

Action = Literal["alert", "hold"]
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

Percent = Annotated[Decimal, Field(gt=0, le=100)]
Amount = Annotated[Decimal, Field(gt=0)]


class RuleError(Exception):
    pass


class UnknownRuleKind(RuleError):
    pass


class InvalidParameters(RuleError):
    """The parameters do not fit the rule's kind: `errors` lists (field, reason)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))
        self.errors = errors


# -- parameters of each kind: strict, so a typo in a threshold is a 422, not a silent no-op


class _Parameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _currency_keys(value: dict[str, Decimal]) -> dict[str, Decimal]:
    for currency in value:
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ValueError(f"'{currency}' is not an ISO 4217 currency code")
    return value


class RestrictedListParameters(_Parameters):
    """The ISINs are the restricted list (its own routes); nothing to set here."""


class WatchListParameters(_Parameters):
    # rapidfuzz token_sort_ratio (0-100, word order ignored) from which a counterparty's name
    # matches a listed name. Not WRatio: its partial matching scores a shared prefix
    # ("Quorvex Foods" against "Quorvex Maritime Limited") as a match.
    name_match_threshold: Annotated[int, Field(ge=50, le=100)] = 85


class LargeTradeParameters(_Parameters):
    # Gross amount above which a trade breaches, per currency; others use the default
    # (none: a currency not listed never breaches).
    thresholds: dict[str, Amount] = Field(default_factory=dict)
    default_threshold: Amount | None = None

    _check_currencies = field_validator("thresholds")(_currency_keys)


class WashTradeParameters(_Parameters):
    # Opposite trades of one account (or of accounts of one beneficial owner group) in one
    # ISIN, whose trade times are at most this far apart and prices within the band.
    window_seconds: Annotated[int, Field(gt=0, le=7 * 86_400)] = 300
    price_band_percent: Annotated[Decimal, Field(ge=0, le=100)] = Decimal("1")
    # group name -> the accounts of one beneficial owner.
    groups: dict[str, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)


class PositionLimitParameters(_Parameters):
    # Largest absolute net position (units) an account may hold in one ISIN after a trade.
    default_max_quantity: Amount | None = None
    # Overrides: "ACCOUNT:ISIN" (most specific), "ISIN" or "ACCOUNT".
    max_quantity: dict[str, Amount] = Field(default_factory=dict)


class ConcentrationLimitParameters(_Parameters):
    # Largest share of one ISIN in the account's holdings in the trade's currency, valued at
    # the last prices seen; checked once the holdings are worth at least min_holdings_value.
    max_percent: Percent = Decimal("50")
    min_holdings_value: Amount = Decimal("1000000")


class TradingSessionParameters(_Parameters):
    # Minutes before the open and after the close still counted as in session.
    grace_minutes: Annotated[int, Field(ge=0, le=720)] = 0


class PriceDeviationParameters(_Parameters):
    # Largest distance from the last price seen for the ISIN (same currency), in percent.
    band_percent: Percent = Decimal("10")
    # A last price older than this (in trade time) is no reference.
    max_reference_age_seconds: Annotated[int, Field(gt=0)] = 5 * 86_400


PARAMETERS: dict[str, type[_Parameters]] = {
    "restricted_list": RestrictedListParameters,
    "watch_list": WatchListParameters,
    "large_trade": LargeTradeParameters,
    "wash_trade": WashTradeParameters,
    "position_limit": PositionLimitParameters,
    "concentration_limit": ConcentrationLimitParameters,
    "trading_session": TradingSessionParameters,
    "price_deviation": PriceDeviationParameters,
}


def parse_parameters(kind: str, raw: Mapping[str, Any]) -> _Parameters:
    model = PARAMETERS.get(kind)
    if model is None:
        known = ", ".join(sorted(PARAMETERS))
        raise UnknownRuleKind(f"unknown rule kind '{kind}' (known: {known})")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as error:
        raise InvalidParameters(
            [
                (".".join(["parameters", *(str(p) for p in e["loc"])]), str(e["msg"]))
                for e in error.errors()
            ]
        ) from None


def parameters_json(parameters: _Parameters) -> dict[str, Any]:
    """As stored and published: decimals as strings, every default spelled out."""
    return parameters.model_dump(mode="json")


@dataclass(frozen=True)
class RuleVersion:
    """One version of a rule, in force from `effective_from` until the next version."""

    name: str
    version: int
    kind: str
    enabled: bool
    action: Action
    severity: Severity
    parameters: _Parameters
    effective_from: datetime


def in_force(versions: Iterable[RuleVersion], at: datetime) -> list[RuleVersion]:
    """Each rule's latest version effective at `at` (enabled or not), by rule name."""
    latest: dict[str, RuleVersion] = {}
    for rule in versions:
        if rule.effective_from > at:
            continue
        current = latest.get(rule.name)
        if current is None or rule.version > current.version:
            latest[rule.name] = rule
    return [latest[name] for name in sorted(latest)]


# -- the trade and what the monitor knows around it -------------------------------------


@dataclass(frozen=True)
class TradeFacts:
    trade_id: str
    version: int
    account: str
    side: str
    isin: str
    quantity: Decimal
    price: Decimal
    gross_amount: Decimal
    currency: str
    counterparty_lei: str
    venue: str
    trade_time: datetime

    @property
    def signed_quantity(self) -> Decimal:
        return signed_quantity(self.side, self.quantity)


def signed_quantity(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == "BUY" else -quantity


@dataclass(frozen=True)
class SeenTrade:
    """A trade the monitor has seen (its current version), for the wash trade rule."""

    trade_id: str
    account: str
    side: str
    isin: str
    price: Decimal
    trade_time: datetime


@dataclass(frozen=True)
class PricePoint:
    price: Decimal
    trade_time: datetime
    trade_id: str


@dataclass(frozen=True)
class ListEntry:
    value: str
    reason: str


class Sessions(Protocol):
    def is_open(self, venue: str, at: datetime) -> bool | None:
        """Whether the venue trades at `at`; None when no calendar is known for it."""


@dataclass(frozen=True)
class Context:
    """What the evaluation of one trade version needs besides the trade and the rules: the
    lists as they stood at the event's time and the projection before this version."""

    restricted: Mapping[str, str] = field(default_factory=dict)  # ISIN -> reason
    watched_leis: Mapping[str, str] = field(default_factory=dict)  # LEI -> reason
    watched_names: Sequence[ListEntry] = ()
    counterparty_name: str | None = None
    # Trades seen in the same ISIN by the account or its groups: at least those on the other
    # side, which is what the wash trade rules read (the handler may pass more).
    recent_trades: Sequence[SeenTrade] = ()
    # The account's net position in the ISIN without this trade (nor an older version of it).
    position_before: Decimal = Decimal(0)
    # The account's other holdings in the trade's currency: ISIN -> (net quantity, price).
    other_holdings: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    last_price: PricePoint | None = None
    sessions: Sessions | None = None


@dataclass(frozen=True)
class Outcome:
    rule: str
    rule_version: int
    passed: bool
    blocking: bool
    severity: Severity
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rule_version": self.rule_version,
            "passed": self.passed,
            "blocking": self.blocking,
            "severity": self.severity,
            "detail": self.detail,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class _Result:
    passed: bool
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


def _text(value: Decimal) -> str:
    """A decimal as JSON carries it: no exponent, no trailing zeros after the point."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- the checks ---------------------------------------------------------------------------


def _restricted(trade: TradeFacts, p: Any, context: Context) -> _Result:
    reason = context.restricted.get(trade.isin)
    if reason is not None:
        return _Result(
            False,
            f"{trade.isin} is on the restricted list: {reason}",
            {"isin": trade.isin, "list_reason": reason},
        )
    return _Result(True, f"{trade.isin} is not restricted")


def _watch(trade: TradeFacts, p: WatchListParameters, context: Context) -> _Result:
    reason = context.watched_leis.get(trade.counterparty_lei)
    if reason is not None:
        return _Result(
            False,
            f"counterparty {trade.counterparty_lei} is on the watch list: {reason}",
            {"counterparty_lei": trade.counterparty_lei, "list_reason": reason},
        )
    name = context.counterparty_name
    if name and context.watched_names:
        best = process.extractOne(
            name,
            [entry.value for entry in context.watched_names],
            scorer=fuzz.token_sort_ratio,
            processor=utils.default_process,
            score_cutoff=p.name_match_threshold,
        )
        if best is not None:
            listed, score, index = best
            entry = context.watched_names[index]
            return _Result(
                False,
                f"counterparty name '{name}' matches watched name '{listed}' "
                f"(score {score:.0f} >= {p.name_match_threshold}): {entry.reason}",
                {
                    "counterparty_lei": trade.counterparty_lei,
                    "counterparty_name": name,
                    "matched_name": listed,
                    "score": round(score, 1),
                    "list_reason": entry.reason,
                },
            )
    named = f" ('{name}')" if name else ""
    return _Result(True, f"counterparty {trade.counterparty_lei}{named} not watched")


def _large(trade: TradeFacts, p: LargeTradeParameters, context: Context) -> _Result:
    threshold = p.thresholds.get(trade.currency, p.default_threshold)
    if threshold is None:
        return _Result(True, f"no threshold for {trade.currency}")
    if trade.gross_amount > threshold:
        return _Result(
            False,
            f"gross amount {_text(trade.gross_amount)} {trade.currency} exceeds "
            f"{_text(threshold)} {trade.currency}",
            {
                "gross_amount": _text(trade.gross_amount),
                "threshold": _text(threshold),
                "currency": trade.currency,
            },
        )
    return _Result(True, f"within {_text(threshold)} {trade.currency}")


def wash_accounts(p: WashTradeParameters, account: str) -> frozenset[str]:
    """The account and every account sharing a beneficial owner group with it."""
    accounts = {account}
    for members in p.groups.values():
        if account in members:
            accounts.update(members)
    return frozenset(accounts)


def _wash(trade: TradeFacts, p: WashTradeParameters, context: Context) -> _Result:
    accounts = wash_accounts(p, trade.account)
    window = timedelta(seconds=p.window_seconds)
    band = p.price_band_percent / 100
    matches = sorted(
        (
            seen
            for seen in context.recent_trades
            if seen.trade_id != trade.trade_id
            and seen.account in accounts
            and seen.isin == trade.isin
            and seen.side != trade.side
            and abs(seen.trade_time - trade.trade_time) <= window
            and abs(seen.price - trade.price) <= band * trade.price
        ),
        key=lambda seen: (seen.trade_time, seen.trade_id),
    )
    if matches:
        return _Result(
            False,
            f"{trade.side} {trade.isin} at {_text(trade.price)} offsets {len(matches)} "
            f"opposite trade(s) of {', '.join(sorted({m.account for m in matches}))} within "
            f"{p.window_seconds} s and {_text(p.price_band_percent)} %",
            {
                "matched_trades": [
                    {
                        "trade_id": m.trade_id,
                        "account": m.account,
                        "side": m.side,
                        "price": _text(m.price),
                        "trade_time": m.trade_time.isoformat(),
                    }
                    for m in matches
                ],
                "accounts": sorted(accounts),
            },
        )
    return _Result(True, "no offsetting trade in the window and band")


def position_limit(p: PositionLimitParameters, account: str, isin: str) -> Decimal | None:
    for key in (f"{account}:{isin}", isin, account):
        if key in p.max_quantity:
            return p.max_quantity[key]
    return p.default_max_quantity


def _position(trade: TradeFacts, p: PositionLimitParameters, context: Context) -> _Result:
    limit = position_limit(p, trade.account, trade.isin)
    after = context.position_before + trade.signed_quantity
    if limit is None:
        return _Result(True, f"no position limit for {trade.account} in {trade.isin}")
    evidence = {
        "position_before": _text(context.position_before),
        "position_after": _text(after),
        "limit": _text(limit),
    }
    if abs(after) > limit:
        return _Result(
            False,
            f"net position of {trade.account} in {trade.isin} would be {_text(after)}, "
            f"beyond the limit of {_text(limit)}",
            evidence,
        )
    return _Result(True, f"net position {_text(after)} within {_text(limit)}", evidence)


def _concentration(trade: TradeFacts, p: ConcentrationLimitParameters, context: Context) -> _Result:
    values = {
        isin: abs(quantity) * price
        for isin, (quantity, price) in context.other_holdings.items()
        if isin != trade.isin
    }
    values[trade.isin] = abs(context.position_before + trade.signed_quantity) * trade.price
    total = sum(values.values(), Decimal(0))
    if total < p.min_holdings_value:
        return _Result(
            True,
            f"holdings of {_text(total)} {trade.currency} below the "
            f"{_text(p.min_holdings_value)} checked",
        )
    share = (values[trade.isin] / total * 100).quantize(Decimal("0.01"))
    evidence = {
        "isin_value": _text(values[trade.isin]),
        "holdings_value": _text(total),
        "share_percent": _text(share),
        "max_percent": _text(p.max_percent),
        "currency": trade.currency,
    }
    if share > p.max_percent:
        return _Result(
            False,
            f"{trade.isin} would be {_text(share)} % of {trade.account}'s {trade.currency} "
            f"holdings, above {_text(p.max_percent)} %",
            evidence,
        )
    return _Result(True, f"{_text(share)} % of holdings", evidence)


def _session(trade: TradeFacts, p: TradingSessionParameters, context: Context) -> _Result:
    if context.sessions is None:
        return _Result(True, "no calendars")
    grace = timedelta(minutes=p.grace_minutes)
    moments = [trade.trade_time]
    if grace:
        moments += [trade.trade_time - grace, trade.trade_time + grace]
    answers = [context.sessions.is_open(trade.venue, moment) for moment in moments]
    if answers[0] is None:
        return _Result(True, f"no session calendar for venue {trade.venue}")
    if any(answers):
        return _Result(True, f"{trade.venue} in session at {trade.trade_time.isoformat()}")
    return _Result(
        False,
        f"traded at {trade.trade_time.isoformat()}, outside the session of {trade.venue}",
        {
            "venue": trade.venue,
            "trade_time": trade.trade_time.isoformat(),
            "grace_minutes": p.grace_minutes,
        },
    )


def _price(trade: TradeFacts, p: PriceDeviationParameters, context: Context) -> _Result:
    last = context.last_price
    if last is None or last.trade_id == trade.trade_id:
        return _Result(True, f"no earlier price seen for {trade.isin} in {trade.currency}")
    age = abs(trade.trade_time - last.trade_time)
    if age > timedelta(seconds=p.max_reference_age_seconds):
        return _Result(True, f"last price seen for {trade.isin} too old to compare")
    deviation = (abs(trade.price - last.price) / last.price * 100).quantize(Decimal("0.01"))
    evidence = {
        "price": _text(trade.price),
        "reference_price": _text(last.price),
        "reference_trade_id": last.trade_id,
        "deviation_percent": _text(deviation),
        "band_percent": _text(p.band_percent),
    }
    if deviation > p.band_percent:
        return _Result(
            False,
            f"price {_text(trade.price)} is {_text(deviation)} % from the last price "
            f"{_text(last.price)} seen for {trade.isin}, beyond {_text(p.band_percent)} %",
            evidence,
        )
    return _Result(True, f"{_text(deviation)} % from the last price", evidence)


CHECKS: dict[str, Callable[[TradeFacts, Any, Context], _Result]] = {
    "restricted_list": _restricted,
    "watch_list": _watch,
    "large_trade": _large,
    "wash_trade": _wash,
    "position_limit": _position,
    "concentration_limit": _concentration,
    "trading_session": _session,
    "price_deviation": _price,
}


def evaluate(trade: TradeFacts, rules: Sequence[RuleVersion], context: Context) -> list[Outcome]:
    """The outcome of every enabled rule, in rule-name order."""
    outcomes = []
    for rule in sorted(rules, key=lambda r: r.name):
        if not rule.enabled:
            continue
        check = CHECKS.get(rule.kind)
        if check is None:
            raise UnknownRuleKind(f"rule '{rule.name}' has unknown kind '{rule.kind}'")
        result = check(trade, rule.parameters, context)
        outcomes.append(
            Outcome(
                rule=rule.name,
                rule_version=rule.version,
                passed=result.passed,
                blocking=not result.passed and rule.action == "hold",
                severity=rule.severity,
                detail=result.detail,
                evidence=result.evidence,
            )
        )
    return outcomes


def wash_lookup(rules: Sequence[RuleVersion], account: str) -> tuple[frozenset[str], int]:
    """Which accounts' trades, and how many seconds around the trade, the enabled wash
    rules need to see (an empty set: none)."""
    accounts: set[str] = set()
    window = 0
    for rule in rules:
        if rule.enabled and isinstance(rule.parameters, WashTradeParameters):
            accounts |= wash_accounts(rule.parameters, account)
            window = max(window, rule.parameters.window_seconds)
    return frozenset(accounts), window


def newer_price(current: PricePoint | None, candidate: PricePoint) -> bool:
    """Whether `candidate` replaces the last price: later in trade time (trade id breaks a
    tie), so that the last price does not depend on arrival order alone."""
    if current is None:
        return True
    return (candidate.trade_time, candidate.trade_id) >= (current.trade_time, current.trade_id)
