"""Fails: age in business days and CSDR cash penalties (worked cases and hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement import penalties
from settlement.calendars import business_days
from settlement.markets import DE, FR, MARKETS, NL, UK, US
from settlement.penalties import (
    accrued_penalty,
    age_in_business_days,
    assess,
    asset_class_of,
    daily_penalty,
    daily_rate,
    fail_days,
    liable_party,
)

XPAR = business_days("XPAR").is_business_day
XLON = business_days("XLON").is_business_day


def weekdays(day: date) -> bool:
    return day.weekday() < 5


def test_only_eu_markets_are_under_csdr() -> None:
    assert (FR.csdr, DE.csdr, NL.csdr) == (True, True, True)
    # The UK left the EU (2020-12-31) and did not keep the CSDR penalty regime.
    assert (UK.csdr, US.csdr) == (False, False)
    assert {m.code for m in MARKETS.values() if m.csdr} == {"FR", "DE", "NL"}


def test_age_counts_the_business_days_of_fail_that_are_over() -> None:
    # Friday 2025-12-19 intended; Paris is closed 25 and 26 December.
    isd = date(2025, 12, 19)
    assert age_in_business_days(isd, isd, XPAR) == 0
    assert age_in_business_days(isd, date(2025, 12, 20), XPAR) == 1  # Saturday: the 19th over
    assert age_in_business_days(isd, date(2025, 12, 22), XPAR) == 1  # Monday morning
    assert age_in_business_days(isd, date(2025, 12, 29), XPAR) == 4  # 19, 22, 23, 24
    assert fail_days(isd, date(2025, 12, 29), XPAR) == [
        date(2025, 12, 19),
        date(2025, 12, 22),
        date(2025, 12, 23),
        date(2025, 12, 24),
    ]
    # Before the ISD: not yet a fail.
    assert age_in_business_days(isd, date(2025, 12, 1), XPAR) == 0
    # London has Boxing Day too; its calendar is the market's own.
    assert age_in_business_days(isd, date(2025, 12, 29), XLON) == 4


def test_securities_rates_by_asset_class() -> None:
    day = date(2025, 3, 3)
    rates = {
        asset_class: daily_rate(day, basis="securities", asset_class=asset_class, currency="EUR")
        for asset_class in penalties.SECURITIES_RATES
    }
    assert rates["liquid_shares"] == Decimal("0.0001")
    assert rates["illiquid_shares"] == Decimal("0.00005")
    assert rates["sme_growth_market"] == Decimal("0.000025")
    assert rates["sovereign_bonds"] == Decimal("0.00001")
    assert rates["other_bonds"] == Decimal("0.00002")


def test_cash_rate_is_the_ecb_marginal_lending_rate_per_day() -> None:
    rate = daily_rate(date(2025, 3, 3), basis="cash", asset_class="liquid_shares", currency="EUR")
    assert rate == Decimal("3.15") / 100 / 365
    later = daily_rate(date(2025, 7, 1), basis="cash", asset_class="liquid_shares", currency="EUR")
    assert later == Decimal("2.40") / 100 / 365
    with pytest.raises(penalties.NoRate):
        daily_rate(date(2025, 3, 3), basis="cash", asset_class="liquid_shares", currency="XAU")
    with pytest.raises(penalties.NoRate):
        daily_rate(
            date(2021, 3, 3), basis="securities", asset_class="liquid_shares", currency="EUR"
        )


def test_asset_class_from_isin_prefix_defaults_to_liquid_shares() -> None:
    assert asset_class_of("FR0000120271") == "liquid_shares"
    assert asset_class_of("DE0007164600") == "liquid_shares"
    assert asset_class_of("DE0001102580") == "sovereign_bonds"


def test_a_worked_lack_of_securities_penalty() -> None:
    # 100 TotalEnergies at 55.555: reference 5555.50; 1 bp a day = 0.55555 -> 0.56 (half even
    # of 0.55555 at cents is 0.56); three days over: 1.68.
    result = assess(
        intended_settlement_date=date(2025, 12, 19),
        as_of=date(2025, 12, 24),
        is_business_day=XPAR,
        csdr=True,
        status_reason="LACK",
        direction="RECEIVE",
        isin="FR0000120271",
        quantity=Decimal("100"),
        price=Decimal("55.555"),
        currency="EUR",
    )
    assert (result.age, result.reason_code, result.basis) == (3, "LACK", "securities")
    assert result.reference_value == Decimal("5555.500")
    assert result.penalty == Decimal("1.68")
    assert result.liable == "counterparty"


def test_half_even_rounding_per_day() -> None:
    # 1 bp of 125.00 = 0.0125 -> 0.01 (half to even), not 0.02.
    assert daily_penalty(
        date(2025, 3, 3),
        reference=Decimal("125.00"),
        basis="securities",
        asset_class="liquid_shares",
        currency="EUR",
    ) == Decimal("0.01")


def test_lack_of_cash_and_outside_csdr() -> None:
    common = {
        "intended_settlement_date": date(2025, 3, 3),
        "as_of": date(2025, 3, 4),
        "is_business_day": weekdays,
        "direction": "RECEIVE",
        "isin": "DE0007164600",
        "quantity": Decimal("1000"),
        "price": Decimal("200"),
    }
    cash = assess(csdr=True, status_reason="MONY: no cash", currency="EUR", **common)  # type: ignore[arg-type]
    # 200000 x 3.15 % / 365 = 17.26027... -> 17.26
    assert (cash.basis, cash.penalty, cash.liable) == ("cash", Decimal("17.26"), "us")
    uk = assess(csdr=False, status_reason="LACK", currency="GBP", **common)  # type: ignore[arg-type]
    assert (uk.age, uk.penalty) == (1, None)
    assert uk.penalty_note is not None


days_after = st.integers(min_value=0, max_value=60)
starts = st.dates(min_value=date(2022, 2, 1), max_value=date(2027, 6, 1))
references = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("1e9"), places=4, allow_nan=False
)
bases = st.sampled_from(["securities", "cash"])
classes = st.sampled_from(list(penalties.SECURITIES_RATES))


def _accrued(isd: date, as_of: date, reference: Decimal, basis: str, asset_class: str) -> Decimal:
    return accrued_penalty(
        fail_days(isd, as_of, XPAR),
        reference=reference,
        basis=basis,  # type: ignore[arg-type]
        asset_class=asset_class,  # type: ignore[arg-type]
        currency="EUR",
    )


@given(isd=starts, a=days_after, b=days_after, reference=references, basis=bases, cls=classes)
def test_accrual_is_additive_over_days(
    isd: date, a: int, b: int, reference: Decimal, basis: str, cls: str
) -> None:
    middle, end = isd + timedelta(days=a), isd + timedelta(days=a + b)
    first = _accrued(isd, middle, reference, basis, cls)
    second = accrued_penalty(
        fail_days(middle, end, XPAR),
        reference=reference,
        basis=basis,  # type: ignore[arg-type]
        asset_class=cls,  # type: ignore[arg-type]
        currency="EUR",
    )
    assert _accrued(isd, end, reference, basis, cls) == first + second


@given(isd=starts, reference=references, basis=bases, cls=classes)
def test_nothing_accrues_on_the_intended_settlement_date(
    isd: date, reference: Decimal, basis: str, cls: str
) -> None:
    assert age_in_business_days(isd, isd, XPAR) == 0
    assert _accrued(isd, isd, reference, basis, cls) == Decimal("0.00")


@given(isd=starts, a=days_after, b=days_after, reference=references, basis=bases, cls=classes)
def test_age_and_penalty_are_monotonic(
    isd: date, a: int, b: int, reference: Decimal, basis: str, cls: str
) -> None:
    earlier, later = isd + timedelta(days=a), isd + timedelta(days=a + b)
    assert age_in_business_days(isd, earlier, XPAR) <= age_in_business_days(isd, later, XPAR)
    assert _accrued(isd, earlier, reference, basis, cls) <= _accrued(
        isd, later, reference, basis, cls
    )
    assert _accrued(isd, later, reference, basis, cls) >= 0


@pytest.mark.parametrize(
    ("direction", "credit_debit", "liable"),
    [
        ("RECEIVE", None, "us"),  # conventional: we pay for what we receive
        ("DELIVER", None, "counterparty"),
        ("RECEIVE", "DBIT", "us"),
        ("DELIVER", "CRDT", "counterparty"),
        ("RECEIVE", "CRDT", "counterparty"),  # receive with payment: we are paid
        ("DELIVER", "DBIT", "us"),  # deliver with payment, or a PFOD we pay
    ],
)
def test_a_lack_of_cash_is_the_fail_of_whoever_pays(
    direction: str, credit_debit: str | None, liable: str
) -> None:
    assert liable_party("MONY", direction, credit_debit) == liable
    # A lack of securities is still the deliverer's.
    assert liable_party("LACK", direction, credit_debit) == (
        "us" if direction == "DELIVER" else "counterparty"
    )
