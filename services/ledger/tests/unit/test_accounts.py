"""The chart of accounts from account names, a client's balances per asset, and account
limits. Pure: no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import (
    Entry,
    LedgerError,
    TradeTerms,
    effective_time,
    pending_entry,
    reverse,
    trade_cash,
)
from ledger.domain_accounts import (
    Limit,
    asset_balances,
    chart_account,
    client_account_names,
    limit_breaches,
    position_changes,
)

ISIN = "US0378331005"


def terms(side: str = "BUY", quantity: str = "10", amount: str = "1000") -> TradeTerms:
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=side,  # type: ignore[arg-type]
        isin=ISIN,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        currency="USD",
        counterparty_lei="784F5XWPLTWKTBV3E584",
    )


def test_a_client_pending_cash_account_is_a_debit_normal_client_account() -> None:
    chart = chart_account("client:ACC-1:cash_pending", "USD")

    assert (chart.account_type, chart.normal_side) == ("client", "debit")
    assert (chart.owner, chart.asset_class, chart.phase) == ("ACC-1", "cash", "pending")


def test_a_street_securities_account_is_a_credit_normal_counterparty_account() -> None:
    chart = chart_account("street:784F5XWPLTWKTBV3E584:securities", ISIN)

    assert (chart.account_type, chart.normal_side, chart.phase) == (
        "counterparty",
        "credit",
        "settled",
    )


@pytest.mark.parametrize(
    "name", ["client:ACC-1", "bank:X:cash", "client::cash", "client:ACC-1:gold", "a:b:c:d"]
)
def test_a_name_outside_the_naming_rule_is_not_an_account(name: str) -> None:
    with pytest.raises(LedgerError):
        chart_account(name, "USD")


@given(st.sampled_from(["BUY", "SELL"]), st.booleans())
def test_every_account_a_trade_books_on_is_in_the_chart(side: str, settled: bool) -> None:
    entry = pending_entry(terms(side), entry_id="E")
    for line in entry.lines:
        chart = chart_account(line.ledger_account, line.unit)
        assert chart.phase == "pending"


def test_balances_per_asset_split_settled_and_pending() -> None:
    rows = [
        ("client:ACC-1:cash", "USD", Decimal("-500")),
        ("client:ACC-1:cash_pending", "USD", Decimal("-250.50")),
        ("client:ACC-1:securities_pending", ISIN, Decimal("3")),
    ]

    security, usd = asset_balances(rows)  # in unit order

    assert (security.unit, security.asset_class, security.settled, security.pending) == (
        ISIN,
        "securities",
        0,
        3,
    )
    assert (usd.settled, usd.pending, usd.position) == (
        Decimal("-500"),
        Decimal("-250.50"),
        Decimal("-750.50"),
    )


def test_a_purchase_the_cash_limit_does_not_cover_breaches_it() -> None:
    purchase = pending_entry(terms(amount="1000"), entry_id="E")
    limits = {"USD": Limit("ACC-1", "USD", Decimal(0))}

    [breach] = limit_breaches(
        "ACC-1", [purchase], positions={"USD": Decimal("999.99")}, limits=limits
    )

    assert (breach.unit, breach.position_before, breach.position_after) == (
        "USD",
        Decimal("999.99"),
        Decimal("-0.01"),
    )
    assert not limit_breaches("ACC-1", [purchase], positions={"USD": Decimal(1000)}, limits=limits)


def test_a_sale_of_securities_not_held_breaches_a_no_short_limit() -> None:
    sale = pending_entry(terms(side="SELL", quantity="5"), entry_id="E")
    limits = {ISIN: Limit("ACC-1", ISIN, Decimal(0))}

    assert [b.unit for b in limit_breaches("ACC-1", [sale], positions={}, limits=limits)] == [ISIN]


@given(st.decimals(min_value=-10_000, max_value=10_000, places=2))
def test_a_posting_that_raises_a_position_never_breaches(position: Decimal) -> None:
    """A sale raises the cash position; the void of a purchase raises it too."""
    purchase = pending_entry(terms(amount="1000"), entry_id="E")
    sale = pending_entry(terms(side="SELL", amount="1000"), entry_id="S")
    limits = {"USD": Limit("ACC-1", "USD", Decimal(0))}

    for raising in (sale, reverse(purchase, entry_id="R")):
        cash = [b for b in limit_breaches(
            "ACC-1", [raising], positions={"USD": position}, limits=limits
        ) if b.unit == "USD"]  # fmt: skip
        assert cash == []


@given(st.sampled_from(["BUY", "SELL"]))
def test_an_amendment_is_judged_on_the_void_and_the_new_terms_together(side: str) -> None:
    old = pending_entry(terms(side, amount="1000"), entry_id="E1")
    new = pending_entry(terms(side, amount="1200"), entry_id="E2")

    changes = position_changes("ACC-1", [reverse(old, entry_id="R"), new])

    assert changes["USD"] == (Decimal(-200) if side == "BUY" else Decimal(200))
    assert changes[ISIN] == 0


def test_client_account_names_cover_settled_and_pending_cash_and_securities() -> None:
    assert set(client_account_names("A")) == {
        "client:A:cash",
        "client:A:cash_pending",
        "client:A:securities",
        "client:A:securities_pending",
    }


@pytest.mark.parametrize(
    ("gross", "currency", "cash"),
    [
        ("30.015", "USD", "30.02"),
        ("30.025", "USD", "30.02"),  # half to even
        ("1234.5", "JPY", "1234"),
        ("1.0005", "BHD", "1.000"),
        ("1.0015", "BHD", "1.002"),
    ],
)
def test_cash_is_rounded_to_the_currency_minor_units_half_even(
    gross: str, currency: str, cash: str
) -> None:
    assert trade_cash(Decimal(gross), currency, "DVP") == Decimal(cash)
    assert trade_cash(Decimal(gross), currency, "FOP") == 0


def test_a_capture_takes_effect_at_the_trade_time_anything_else_at_its_event() -> None:
    from datetime import UTC, datetime

    traded, happened = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)

    assert effective_time("capture", event_time=happened, trade_time=traded) == traded
    assert effective_time("settle", event_time=happened, trade_time=traded) == happened
    assert effective_time("void", event_time=happened, trade_time=None) == happened


def test_an_entry_is_checked_balanced_when_made() -> None:
    lines = pending_entry(terms(), entry_id="E").lines
    with pytest.raises(LedgerError):
        Entry("E", "T-1", "ACC-1", "pending", lines[:3])
