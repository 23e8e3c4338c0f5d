"""Amendments and cancellations of a trade: the recomputed obligation, what a change does
at each stage, and which compliance decision counts. Pure: the calendar is a fake."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.domain import (
    ObligationTerms,
    Ssi,
    UnknownMarket,
    amendment_action,
    cancellation_action,
    decision_counts,
    instruction_terms,
    market_for,
    next_state,
    obligation_terms,
    refusal_reason,
    settlement_date,
)
from settlement.markets import US


class Weekdays:
    """Monday to Friday are business days; a weekend start rolls back to Friday."""

    def add(self, start: date, business_days: int) -> date:
        day = start
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        for _ in range(business_days):
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
        return day


def weekdays(_name: str) -> Weekdays:
    return Weekdays()


def terms(**overrides: object) -> ObligationTerms:
    args: dict[str, object] = {
        "side": "BUY",
        "isin": "US0378331005",
        "quantity": Decimal("100"),
        "amount": Decimal("18925"),
        "currency": "USD",
        "trade_date": date(2026, 3, 3),
        "counterparty_lei": "784F5XWPLTWKTBV3E584",
        "settlement_type": "DVP",
        "calendar_for": weekdays,
    }
    args.update(overrides)
    return obligation_terms(**args)  # type: ignore[arg-type]


SSI = Ssi(
    counterparty_lei="784F5XWPLTWKTBV3E584",
    market="US",
    depository="DTC",
    custodian_bic="IRVTUS3NXXX",
    safekeeping_account="SAFE-1",
    cash_account="CASH-1",
)

# --- obligation_terms ---------------------------------------------------------------


def test_the_obligation_of_a_trade_takes_market_cycle_and_settlement_date_from_its_terms() -> None:
    assert terms() == ObligationTerms(
        side="BUY",
        isin="US0378331005",
        quantity=Decimal("100"),
        amount=Decimal("18925"),
        currency="USD",
        trade_date=date(2026, 3, 3),
        settlement_date=date(2026, 3, 4),
        cycle_days=1,
        market="US",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        settlement_type="DVP",
    )


def test_an_amended_trade_date_moves_the_settlement_date() -> None:
    # Friday 2026-03-06 settles T+1 on Monday 2026-03-09.
    amended = terms(trade_date=date(2026, 3, 6))

    assert (amended.settlement_date, amended.cycle_days) == (date(2026, 3, 9), 1)


def test_an_amended_isin_moves_the_obligation_to_the_new_market_and_its_cycle() -> None:
    amended = terms(isin="GB0002634946", currency="GBP", trade_date=date(2026, 3, 6))

    # London is T+2 until 2027-10-11: Friday → Tuesday.
    assert (amended.market, amended.cycle_days) == ("UK", 2)
    assert amended.settlement_date == date(2026, 3, 10)


def test_an_amended_side_quantity_and_amount_change_what_is_instructed() -> None:
    amended = terms(side="SELL", quantity=Decimal("50"), amount=Decimal("10000"))

    instruction = instruction_terms(
        side=amended.side,
        settlement_type=amended.settlement_type,
        quantity=amended.quantity,
        amount=amended.amount,
    )
    assert (instruction.direction, instruction.quantity, instruction.amount) == (
        "DELIVER",
        Decimal("50"),
        Decimal("10000"),
    )


def test_an_amendment_to_an_isin_of_no_configured_market_is_an_error() -> None:
    with pytest.raises(UnknownMarket):
        terms(isin="JP3633400001")


@given(
    trade_date=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    isin=st.sampled_from(["US0378331005", "GB0002634946", "FR0000120271", "DE0007164600"]),
)
def test_recomputed_terms_are_those_of_a_capture_with_the_same_terms(
    trade_date: date, isin: str
) -> None:
    recomputed = terms(isin=isin, trade_date=trade_date)
    market = market_for(isin)

    assert (recomputed.settlement_date, recomputed.cycle_days) == settlement_date(
        market, trade_date, weekdays
    )
    assert recomputed.market == market.code
    assert recomputed.settlement_date.weekday() < 5
    assert 1 <= (recomputed.settlement_date - trade_date).days <= 2 + recomputed.cycle_days + 2


def test_the_cycle_of_an_amendment_is_the_one_in_force_on_the_amended_trade_date() -> None:
    # US moved to T+1 on 2024-05-28: an amendment across the switch changes the cycle.
    before = terms(trade_date=date(2024, 5, 24))
    after = terms(trade_date=date(2024, 5, 28))

    assert (before.cycle_days, after.cycle_days) == (2, 1)
    assert (before.market, after.market) == (US.code, US.code)


# --- amendment_action ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "amendment", "instructed", "cancelled", "expected"),
    [
        (1, 2, False, False, "apply"),
        (2, 5, False, False, "apply"),
        (1, 2, True, False, "refuse"),
        (1, 2, False, True, "cancelled"),
        (1, 2, True, True, "cancelled"),
        (2, 2, False, False, "stale"),
        (3, 2, False, False, "stale"),
        (2, 2, True, False, "stale"),
    ],
)
def test_an_amendment_applies_only_to_a_newer_version_of_a_live_uninstructed_obligation(
    current: int, amendment: int, instructed: bool, cancelled: bool, expected: str
) -> None:
    assert (
        amendment_action(
            current_version=current,
            amendment_version=amendment,
            instructed=instructed,
            cancelled=cancelled,
        )
        == expected
    )


@given(
    current=st.integers(min_value=1, max_value=50),
    amendment=st.integers(min_value=1, max_value=50),
    instructed=st.booleans(),
    cancelled=st.booleans(),
)
def test_a_version_the_obligation_already_has_is_always_a_no_op(
    current: int, amendment: int, instructed: bool, cancelled: bool
) -> None:
    action = amendment_action(
        current_version=current,
        amendment_version=amendment,
        instructed=instructed,
        cancelled=cancelled,
    )

    assert (action == "stale") == (amendment <= current)
    if action == "apply":
        assert not instructed and not cancelled


@given(st.lists(st.integers(min_value=2, max_value=8), min_size=1, max_size=20))
def test_amendments_redelivered_or_late_leave_the_obligation_at_the_newest_version(
    versions: list[int],
) -> None:
    """However often and in whatever order amendments arrive, applying the ones that are
    newer ends at the newest version, and no version is applied twice."""
    version, applied = 1, []
    for amendment in versions:
        if (
            amendment_action(
                current_version=version,
                amendment_version=amendment,
                instructed=False,
                cancelled=False,
            )
            == "apply"
        ):
            version = amendment
            applied.append(amendment)

    assert version == max(versions)
    assert len(applied) == len(set(applied))
    assert applied == sorted(applied)


# --- cancellation_action ------------------------------------------------------------


@pytest.mark.parametrize(
    ("instructed", "cancelled", "expected"),
    [
        (False, False, "cancel"),
        (True, False, "refuse"),
        (False, True, "already_cancelled"),
        (True, True, "already_cancelled"),
    ],
)
def test_a_cancellation_cancels_an_uninstructed_obligation_once_and_is_refused_after(
    instructed: bool, cancelled: bool, expected: str
) -> None:
    assert cancellation_action(instructed=instructed, cancelled=cancelled) == expected


# --- decision_counts ----------------------------------------------------------------


@given(
    decision=st.integers(min_value=1, max_value=20),
    obligation=st.integers(min_value=1, max_value=20),
)
def test_only_a_decision_on_the_obligations_version_counts(decision: int, obligation: int) -> None:
    counts = decision_counts(decision_version=decision, obligation_version=obligation)

    assert counts == (decision == obligation)
    if decision < obligation:
        assert not counts


@given(
    obligation_version=st.integers(min_value=2, max_value=6),
    decisions=st.lists(
        st.tuples(st.integers(min_value=1, max_value=6), st.sampled_from(["cleared", "held"])),
        max_size=10,
    ),
)
def test_a_cleared_decision_on_an_older_version_never_releases_an_amended_trade(
    obligation_version: int, decisions: list[tuple[int, str]]
) -> None:
    """The newest counted decision drives the obligation: it is ready only if compliance
    cleared the version it is at."""
    counted = [
        decision
        for version, decision in decisions
        if decision_counts(decision_version=version, obligation_version=obligation_version)
    ]
    current = counted[-1] if counted else None

    state = next_state(compliance=current, ssi=SSI)

    if state == "ready":
        assert (obligation_version, "cleared") in decisions
    if not any(v == obligation_version for v, _ in decisions):
        assert state == "awaiting_compliance"


# --- refusal_reason -----------------------------------------------------------------


@pytest.mark.parametrize(("change", "verb"), [("amend", "amended"), ("cancel", "cancelled")])
def test_a_refusal_names_the_instruction_that_stands(change: str, verb: str) -> None:
    reason = refusal_reason(
        change=change,  # type: ignore[arg-type]
        trade_id="T-1",
        instruction_id="INS-9",
        instruction_state="matched",
    )

    assert "INS-9" in reason
    assert f"cannot be {verb}" in reason
    assert "matched" in reason
