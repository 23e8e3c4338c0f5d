"""Settlement dates, obligation states and instruction terms. Pure except for one test
that asks the real holiday calendars."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.domain import (
    InstructionTerms,
    Ssi,
    UnknownComplianceDecision,
    UnknownMarket,
    cycle_days,
    instruction_terms,
    market_for,
    next_state,
    settlement_date,
)
from settlement.markets import DE, FR, NL, UK, US, Market

US_T1 = date(2024, 5, 28)
EU_T1 = date(2027, 10, 11)

T2_ERA = date(1995, 6, 7)


class FakeBusinessDays:
    """Weekends and the given holidays are not business days; a start that is not a
    business day is rolled back to the previous one first."""

    def __init__(self, holidays: Iterable[date] = ()) -> None:
        self.holidays = frozenset(holidays)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def add(self, start: date, business_days: int) -> date:
        day = start
        while not self.is_business_day(day):
            day -= timedelta(days=1)
        for _ in range(business_days):
            day += timedelta(days=1)
            while not self.is_business_day(day):
                day += timedelta(days=1)
        return day


class CalendarsSeen:
    def __init__(self, calendar: FakeBusinessDays) -> None:
        self.calendar = calendar
        self.names: list[str] = []

    def __call__(self, name: str) -> FakeBusinessDays:
        self.names.append(name)
        return self.calendar


# --- cycle_days ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trade_date", "expected"),
    [
        (date(2024, 5, 24), 2),
        (date(2024, 5, 27), 2),
        (US_T1, 1),
        (date(2024, 5, 29), 1),
        (date(2030, 1, 2), 1),
    ],
)
def test_us_settles_t_plus_2_before_2024_05_28_and_t_plus_1_from_then(
    trade_date: date, expected: int
) -> None:
    assert cycle_days(US, trade_date) == expected


@pytest.mark.parametrize("market", [UK, FR, DE, NL], ids=lambda m: m.code)
@pytest.mark.parametrize(
    ("trade_date", "expected"),
    [
        (date(2024, 5, 28), 2),
        (date(2027, 10, 8), 2),
        (date(2027, 10, 10), 2),
        (EU_T1, 1),
        (date(2027, 10, 12), 1),
    ],
)
def test_european_markets_settle_t_plus_2_before_2027_10_11_and_t_plus_1_from_then(
    market: Market, trade_date: date, expected: int
) -> None:
    assert cycle_days(market, trade_date) == expected


@given(st.dates(min_value=T2_ERA, max_value=date(2100, 12, 31)))
def test_the_cycle_depends_only_on_which_side_of_the_switch_the_trade_date_is(
    trade_date: date,
) -> None:
    assert cycle_days(US, trade_date) == (1 if trade_date >= US_T1 else 2)
    for market in (UK, FR, DE):
        assert cycle_days(market, trade_date) == (1 if trade_date >= EU_T1 else 2)


def test_a_trade_date_before_every_configured_cycle_has_no_cycle() -> None:
    with pytest.raises(UnknownMarket):
        cycle_days(US, date(1990, 1, 2))


# --- market_for ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isin", "market"),
    [
        ("US0378331005", US),
        ("GB0002634946", UK),
        ("FR0000120271", FR),
        ("DE0007164600", DE),
        ("NL0010273215", NL),
    ],
)
def test_the_market_is_read_from_the_isin_country(isin: str, market: Market) -> None:
    assert market_for(isin) == market


@pytest.mark.parametrize("isin", ["JP3633400001", "CH0012032048", "XS1234567890"])
def test_an_isin_country_without_a_configured_market_is_unknown(isin: str) -> None:
    with pytest.raises(UnknownMarket, match=isin[:2]):
        market_for(isin)


# --- settlement_date ----------------------------------------------------------------


def test_settlement_date_uses_the_markets_calendar_and_cycle() -> None:
    calendars = CalendarsSeen(FakeBusinessDays())

    # Tuesday 2026-03-03, T+1 in the US.
    assert settlement_date(US, date(2026, 3, 3), calendars) == (date(2026, 3, 4), 1)
    # Tuesday 2026-03-03, T+2 in London.
    assert settlement_date(UK, date(2026, 3, 3), calendars) == (date(2026, 3, 5), 2)
    assert calendars.names == ["XNYS", "XLON"]


def test_settlement_date_skips_weekends() -> None:
    calendars = CalendarsSeen(FakeBusinessDays())

    # Friday 2026-03-06: T+1 is Monday, T+2 is Tuesday.
    assert settlement_date(US, date(2026, 3, 6), calendars) == (date(2026, 3, 9), 1)
    assert settlement_date(FR, date(2026, 3, 6), calendars) == (date(2026, 3, 10), 2)


def test_settlement_date_skips_the_calendars_holidays() -> None:
    holiday = date(2026, 3, 9)  # a Monday
    calendars = CalendarsSeen(FakeBusinessDays({holiday}))

    assert settlement_date(US, date(2026, 3, 6), calendars) == (date(2026, 3, 10), 1)
    assert settlement_date(DE, date(2026, 3, 6), calendars) == (date(2026, 3, 11), 2)


def test_settlement_date_uses_the_cycle_in_force_on_the_trade_date() -> None:
    calendars = CalendarsSeen(FakeBusinessDays())

    # Friday 2027-10-08 is still T+2 in Europe; Monday 2027-10-11 is T+1.
    assert settlement_date(UK, date(2027, 10, 8), calendars) == (date(2027, 10, 12), 2)
    assert settlement_date(UK, date(2027, 10, 11), calendars) == (date(2027, 10, 12), 1)


def test_a_trade_dated_on_a_weekend_counts_from_the_previous_business_day() -> None:
    calendars = CalendarsSeen(FakeBusinessDays())

    # Saturday 2026-03-07 counts from Friday 2026-03-06.
    assert settlement_date(US, date(2026, 3, 7), calendars) == (date(2026, 3, 9), 1)


def test_real_calendars_skip_thanksgiving_and_the_london_christmas_holidays() -> None:
    from settlement.calendars import business_days

    # Wednesday 2026-11-25, T+1: Thursday 26th is Thanksgiving, so Friday 27th.
    assert settlement_date(US, date(2026, 11, 25), business_days) == (date(2026, 11, 27), 1)
    # Thursday 2026-12-24, T+2: Christmas Friday 25th, the weekend, and Boxing Day (Saturday)
    # substituted to Monday 28th, so Tuesday 29th is T+1 and Wednesday 30th is T+2.
    assert settlement_date(UK, date(2026, 12, 24), business_days) == (date(2026, 12, 30), 2)


# --- next_state ---------------------------------------------------------------------

SSI = Ssi(
    counterparty_lei="784F5XWPLTWKTBV3E584",
    market="US",
    depository="DTC",
    custodian_bic="IRVTUS3NXXX",
    safekeeping_account="SAFE-1",
    cash_account="CASH-1",
)


@pytest.mark.parametrize(
    ("compliance", "ssi", "expected"),
    [
        (None, None, "awaiting_compliance"),
        (None, SSI, "awaiting_compliance"),
        ("held", None, "held"),
        ("held", SSI, "held"),
        ("rejected", None, "cancelled"),
        ("rejected", SSI, "cancelled"),
        ("cleared", None, "needs_ssi"),
        ("cleared", SSI, "ready"),
    ],
)
def test_an_obligation_moves_as_far_as_compliance_and_the_ssi_allow(
    compliance: str | None, ssi: Ssi | None, expected: str
) -> None:
    assert next_state(compliance=compliance, ssi=ssi) == expected


# --- instruction_terms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "settlement_type", "expected"),
    [
        ("BUY", "DVP", InstructionTerms("RECEIVE", "APMT", Decimal("10"), Decimal("1500.50"))),
        ("SELL", "DVP", InstructionTerms("DELIVER", "APMT", Decimal("10"), Decimal("1500.50"))),
        ("BUY", "FOP", InstructionTerms("RECEIVE", "FREE", Decimal("10"), Decimal(0))),
        ("SELL", "FOP", InstructionTerms("DELIVER", "FREE", Decimal("10"), Decimal(0))),
    ],
)
def test_a_buy_receives_a_sell_delivers_and_only_dvp_carries_a_payment(
    side: str, settlement_type: str, expected: InstructionTerms
) -> None:
    terms = instruction_terms(
        side=side,
        settlement_type=settlement_type,
        quantity=Decimal("10"),
        amount=Decimal("1500.50"),
    )

    assert terms == expected


@pytest.mark.parametrize("decision", ["clearde", "approved", ""])
def test_an_unknown_compliance_decision_never_lets_a_trade_through(decision: str) -> None:
    with pytest.raises(UnknownComplianceDecision):
        next_state(compliance=decision, ssi=None)
