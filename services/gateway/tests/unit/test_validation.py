"""Every intake rule, table-driven, with real identifiers: the field each failure names.

Field rules come from the request model (TradeIn), rules across fields from
`domain.rule_errors`; both are pure, so this runs without a server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.domain import ChangeNotAllowed, amended_terms, check_changeable, rule_errors
from gateway.schemas import TRADE_EXAMPLE, AmendIn, BatchIn, TradeIn

NOW = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def field_errors(body: dict[str, Any]) -> list[str]:
    """The fields named by every broken rule (empty: the trade is valid)."""
    try:
        trade = TradeIn.model_validate(body)
    except ValidationError as error:
        return [".".join(str(p) for p in e["loc"]) or "body" for e in error.errors()]
    return [field for field, _ in rule_errors(trade.model_dump(), NOW)]


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("the example", {}),
    ("a SELL", {"side": "SELL"}),
    ("a UK ISIN (BP)", {"isin": "GB0007980591", "venue": "XLON", "currency": "GBP"}),
    ("a German ISIN on Xetra", {"isin": "DE0007164600", "venue": "XETR", "currency": "EUR"}),
    ("a lower-case ISIN is normalised", {"isin": "us0378331005"}),
    ("Apple's CUSIP with its ISIN", {"cusip": "037833100"}),
    ("a Canadian ISIN and CUSIP", {"isin": "CA0679011084", "cusip": "067901108"}),
    ("another LEI", {"counterparty_lei": "5493001KJTIIGC8Y1R12"}),
    ("a fractional quantity", {"quantity": "0.00000001"}),
    ("a price with 10 decimals", {"price": "0.0000000001"}),
    ("the largest quantity", {"quantity": "9999999999.99999999"}),
    ("numbers as JSON numbers", {"quantity": 100, "price": 189.25}),
    ("an off-exchange trade", {"venue": "XOFF"}),
    ("a segment MIC (Nasdaq NMS)", {"venue": "XNGS"}),
    ("free of payment", {"settlement_type": "FOP"}),
    ("a currency in lower case", {"currency": "usd"}),
    ("a West African franc", {"currency": "XOF"}),
    ("an earlier trade date", {"trade_date": "2026-11-02", "trade_time": "2026-11-02T10:00:00Z"}),
    (
        "a trade in New York after midnight UTC",
        {"trade_date": "2026-11-19", "trade_time": "2026-11-19T20:30:00-05:00"},
    ),
    (
        "today in Tokyo while UTC is still yesterday",
        {"trade_date": "2026-11-21", "trade_time": "2026-11-21T00:30:00+09:00"},
    ),
]


@pytest.mark.parametrize(("case", "changes"), GOOD, ids=[c for c, _ in GOOD])
def test_a_valid_trade_breaks_no_rule(case: str, changes: dict[str, Any]) -> None:
    assert field_errors({**TRADE_EXAMPLE, **changes}) == []


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("ISIN check digit wrong", {"isin": "US0378331006"}, "isin"),
    ("ISIN too short", {"isin": "US037833100"}, "isin"),
    ("ISIN unknown country", {"isin": "ZZ0378331005"}, "isin"),
    ("ISIN with a letter O for zero", {"isin": "US03783310O5"}, "isin"),
    ("CUSIP check digit wrong", {"cusip": "037833101"}, "cusip"),
    ("CUSIP of another security", {"cusip": "594918104"}, "cusip"),
    ("CUSIP given for a German ISIN", {"isin": "DE0007164600", "cusip": "037833100"}, "cusip"),
    ("LEI check digits wrong", {"counterparty_lei": "784F5XWPLTWKTBV3E585"}, "counterparty_lei"),
    ("LEI too short", {"counterparty_lei": "784F5XWPLTWKTBV3E58"}, "counterparty_lei"),
    ("currency not ISO 4217", {"currency": "ABC"}, "currency"),
    ("currency two letters", {"currency": "US"}, "currency"),
    ("gold is not a settlement currency", {"currency": "XAU"}, "currency"),
    ("the no-currency code", {"currency": "XXX"}, "currency"),
    ("MIC not in the register", {"venue": "ZZZZ"}, "venue"),
    ("MIC of the wrong length", {"venue": "XNYSE"}, "venue"),
    ("MIC expired before the trade", {"venue": "XUBS"}, "venue"),
    ("side neither BUY nor SELL", {"side": "HOLD"}, "side"),
    ("side in lower case", {"side": "buy"}, "side"),
    ("quantity zero", {"quantity": "0"}, "quantity"),
    ("quantity negative", {"quantity": "-5"}, "quantity"),
    ("quantity with 9 decimals", {"quantity": "1.000000001"}, "quantity"),
    ("quantity too large", {"quantity": "99999999999"}, "quantity"),
    ("quantity not a number", {"quantity": "lots"}, "quantity"),
    ("quantity infinite", {"quantity": "Infinity"}, "quantity"),
    ("quantity NaN", {"quantity": "NaN"}, "quantity"),
    ("price zero", {"price": "0"}, "price"),
    ("price with 11 decimals", {"price": "1.00000000001"}, "price"),
    ("price too large", {"price": "123456789.5"}, "price"),
    (
        "trade date in the future",
        {"trade_date": "2026-11-23", "trade_time": "2026-11-23T10:00:00Z"},
        "trade_date",
    ),
    ("trade date not the trade time's date", {"trade_date": "2026-11-19"}, "trade_date"),
    ("trade time without an offset", {"trade_time": "2026-11-20T14:31:07"}, "trade_time"),
    ("trade time later today", {"trade_time": "2026-11-20T18:00:00Z"}, "trade_time"),
    ("trade date not a date", {"trade_date": "20/11/2026"}, "trade_date"),
    ("settlement type unknown", {"settlement_type": "RVP"}, "settlement_type"),
    ("client_trade_id empty", {"client_trade_id": ""}, "client_trade_id"),
    ("client_trade_id with a space", {"client_trade_id": "FO 1"}, "client_trade_id"),
    ("client_trade_id too long", {"client_trade_id": "F" * 65}, "client_trade_id"),
    ("account with a quote", {"account": "ACC'1"}, "account"),
    ("an unknown field", {"trader_mood": "good"}, "trader_mood"),
]


@pytest.mark.parametrize(("case", "changes", "field"), BAD, ids=[c for c, _, _ in BAD])
def test_each_broken_rule_names_its_field(case: str, changes: dict[str, Any], field: str) -> None:
    assert field in field_errors({**TRADE_EXAMPLE, **changes})


@pytest.mark.parametrize("missing", sorted(TRADE_EXAMPLE))
def test_every_field_of_the_example_is_required(missing: str) -> None:
    body = {k: v for k, v in TRADE_EXAMPLE.items() if k != missing}

    assert field_errors(body) == [missing]


def test_several_broken_rules_are_all_named() -> None:
    errors = field_errors({**TRADE_EXAMPLE, "isin": "US0378331006", "currency": "ABC"})

    assert set(errors) == {"isin", "currency"}


def test_a_batch_holds_one_to_a_thousand_trades() -> None:
    BatchIn.model_validate({"trades": [TRADE_EXAMPLE] * 1000})
    for size in (0, 1001):
        with pytest.raises(ValidationError, match="trades"):
            BatchIn.model_validate({"trades": [TRADE_EXAMPLE] * size})


def test_an_amendment_needs_a_reason_and_takes_no_account() -> None:
    with pytest.raises(ValidationError, match="reason"):
        AmendIn.model_validate({"quantity": "5"})
    with pytest.raises(ValidationError, match="account"):
        AmendIn.model_validate({"reason": "moved", "account": "ACC-2"})


def test_an_amendment_changes_only_what_differs() -> None:
    current = {"quantity": "100", "price": "10", "side": "BUY"}

    terms, changed = amended_terms(current, {"quantity": "150", "price": "10"})

    assert terms == {"quantity": "150", "price": "10", "side": "BUY"}
    assert changed == ["quantity"]
    assert amended_terms(current, {"price": "10"})[1] == []


def test_an_amendment_to_an_equal_value_is_no_change() -> None:
    current = {"quantity": Decimal("150.00000000"), "trade_time": NOW}

    changes = {
        "quantity": Decimal("150"),
        "trade_time": NOW.astimezone(timezone(timedelta(hours=2))),
    }

    assert amended_terms(current, changes)[1] == []


@pytest.mark.parametrize("field", ["account", "client_trade_id"])
def test_the_account_and_the_client_id_are_never_amended(field: str) -> None:
    with pytest.raises(ChangeNotAllowed, match="cancel the trade") as error:
        amended_terms({"quantity": "1"}, {field: "X"})
    assert error.value.field == field


@pytest.mark.parametrize("state", ["captured", "held", "released"])
def test_a_trade_not_yet_instructed_may_change(state: str) -> None:
    check_changeable(state, "amend")
    check_changeable(state, "cancel")


@pytest.mark.parametrize(
    "state", ["instructed", "matched", "settled", "partially_settled", "failed", "cancelled"]
)
def test_a_trade_instructed_or_cancelled_may_not_change(state: str) -> None:
    for change in ("amend", "cancel"):
        with pytest.raises(ChangeNotAllowed, match=f"cannot {change}"):
            check_changeable(state, change)


def test_a_rejected_trade_may_be_cancelled_but_not_amended() -> None:
    check_changeable("rejected", "cancel")
    with pytest.raises(ChangeNotAllowed, match="rejected"):
        check_changeable("rejected", "amend")
