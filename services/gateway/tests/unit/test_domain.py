"""Identifier rules, request hashes, trade dates and the status view's ranks. Pure."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain import (
    STATE_OF_EVENT,
    TradeDateInFuture,
    check_trade_date,
    first_difference,
    request_hash,
    valid_currency,
    valid_isin,
    valid_lei,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("US0378331005", "US0378331005"),
        ("GB0002634946", "GB0002634946"),
        ("DE0007164600", "DE0007164600"),
        ("us0378331005", "US0378331005"),
    ],
)
def test_a_valid_isin_is_accepted(value: str, expected: str) -> None:
    assert valid_isin(value) == expected


@pytest.mark.parametrize(
    "value",
    ["US0378331006", "US037833100", "US03783310055", "ZZ0378331005", "", "US03783310O5"],
)
def test_an_invalid_isin_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid ISIN"):
        valid_isin(value)


@pytest.mark.parametrize("value", ["784F5XWPLTWKTBV3E584", "5493001KJTIIGC8Y1R12"])
def test_a_valid_lei_is_accepted(value: str) -> None:
    assert valid_lei(value) == value


@pytest.mark.parametrize(
    "value", ["784F5XWPLTWKTBV3E585", "784F5XWPLTWKTBV3E58", "784F5XWPLTWKTBV3E5844", ""]
)
def test_an_invalid_lei_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid LEI"):
        valid_lei(value)


@pytest.mark.parametrize(
    ("value", "expected"), [("USD", "USD"), ("EUR", "EUR"), ("JPY", "JPY"), ("gbp", "GBP")]
)
def test_an_iso_4217_currency_is_accepted_in_upper_case(value: str, expected: str) -> None:
    assert valid_currency(value) == expected


@pytest.mark.parametrize("value", ["XXY", "US", "USDD", "", "EURO"])
def test_a_code_that_is_not_an_iso_4217_currency_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        valid_currency(value)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=10),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=12), st.randoms())
def test_the_request_hash_does_not_depend_on_key_order(
    body: dict[str, Any], rng: random.Random
) -> None:
    items = list(body.items())
    rng.shuffle(items)

    assert request_hash(dict(items)) == request_hash(body)


def test_the_request_hash_changes_when_a_value_changes() -> None:
    body = {"isin": "US0378331005", "quantity": "100", "price": Decimal("180.25")}

    assert request_hash(body) != request_hash({**body, "quantity": "101"})
    assert request_hash(body) == request_hash(dict(body))
    assert len(request_hash(body)) == 64


def test_the_first_difference_is_the_first_differing_field_by_name() -> None:
    first = {"quantity": "100", "price": "10", "account": "ACC-1", "isin": "US0378331005"}
    second = {**first, "quantity": "200", "price": "11"}

    assert first_difference(first, second) == "price"


def test_identical_requests_have_no_difference() -> None:
    body = {"quantity": "100", "price": Decimal("10.5")}

    assert first_difference(body, dict(body)) is None


def test_a_field_present_in_only_one_request_is_a_difference() -> None:
    assert first_difference({"a": "1"}, {"a": "1", "desk": "EQ"}) == "desk"
    assert first_difference({"a": "1", "desk": "EQ"}, {"a": "1"}) == "desk"


def test_values_that_print_the_same_are_not_a_difference() -> None:
    stored = {"quantity": "100.5", "trade_date": "2026-03-03"}
    sent = {"quantity": Decimal("100.5"), "trade_date": date(2026, 3, 3)}

    assert first_difference(stored, sent) is None


TODAY = date(2026, 3, 4)
NOW = datetime(2026, 3, 4, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("trade_date", [TODAY, TODAY - timedelta(days=1), date(2020, 1, 2)])
def test_a_trade_dated_today_or_earlier_is_accepted(trade_date: date) -> None:
    trade_time = datetime.combine(trade_date, datetime.min.time(), UTC) + timedelta(hours=14)

    check_trade_date(trade_date, trade_time, NOW)


def test_the_next_day_is_today_at_a_venue_east_of_utc() -> None:
    tokyo = timezone(timedelta(hours=9))

    check_trade_date(TODAY + timedelta(days=1), datetime(2026, 3, 5, 0, 30, tzinfo=tokyo), NOW)
    with pytest.raises(TradeDateInFuture, match="in the future"):
        check_trade_date(TODAY + timedelta(days=2), datetime(2026, 3, 6, 0, 30, tzinfo=tokyo), NOW)


def test_a_trade_dated_in_the_future_is_refused() -> None:
    tomorrow = TODAY + timedelta(days=1)

    with pytest.raises(TradeDateInFuture, match="in the future"):
        check_trade_date(tomorrow, datetime(2026, 3, 5, 9, 30, tzinfo=UTC), NOW)


@pytest.mark.parametrize(
    "trade_time",
    [
        datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
        datetime(2026, 3, 4, 9, 0, tzinfo=UTC),
        datetime(2026, 3, 4, 0, 30, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_a_trade_time_on_another_date_than_the_trade_date_is_refused(
    trade_time: datetime,
) -> None:
    with pytest.raises(TradeDateInFuture, match="does not match"):
        check_trade_date(date(2026, 3, 3), trade_time, NOW)


def rank(event_type: str) -> int:
    return STATE_OF_EVENT[event_type][1]


def test_settled_outranks_matched_outranks_instructed_outranks_captured() -> None:
    assert (
        rank("settlement.settled")
        > rank("settlement.matched")
        > rank("settlement.instructed")
        > rank("trade.captured")
    )


def test_every_event_moves_the_trade_to_a_state_of_its_own_rank() -> None:
    ranks = [rank_ for _, rank_ in STATE_OF_EVENT.values()]
    states = [state for state, _ in STATE_OF_EVENT.values()]

    assert len(set(ranks)) == len(ranks)
    assert len(set(states)) == len(states)
    assert STATE_OF_EVENT["settlement.settled"][0] == "settled"
    assert STATE_OF_EVENT["trade.captured"][0] == "captured"


def test_an_event_belongs_to_the_trade_it_names_and_one_about_no_trade_to_none() -> None:
    from gateway.domain import trade_of_event

    trade = "0b6f7b1e-5c3a-4f5e-9a51-2f1f7c3f0d11"
    assert trade_of_event({"trade_id": trade}, "whatever") == trade
    assert trade_of_event({}, trade) == trade
    assert trade_of_event({"rule": "wash-trade"}, "rule:wash-trade") is None
    assert trade_of_event({"run_id": "r1"}, None) is None
    assert trade_of_event({"trade_id": 12}, None) is None
