"""Journal entries for trades balance per unit, and pending + settled clear every pending
account. Pure: no database, no broker."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import (
    Entry,
    LedgerError,
    Line,
    TradeTerms,
    UnbalancedEntry,
    pending_entry,
    settled_entry,
)

positive_amounts = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("1000000000000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


@st.composite
def trade_terms(draw: st.DrawFn) -> TradeTerms:
    free_of_payment = draw(st.booleans())
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=draw(st.sampled_from(["BUY", "SELL"])),
        isin="US0378331005",
        quantity=draw(positive_amounts),
        amount=Decimal(0) if free_of_payment else draw(positive_amounts),
        currency=draw(st.sampled_from(["USD", "EUR", "GBP"])),
        counterparty_lei="784F5XWPLTWKTBV3E584",
    )


def net_by_account(*entries: Entry) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        for line in entry.lines:
            totals[(line.ledger_account, line.unit)] += line.debit - line.credit
    return dict(totals)


def net_by_unit(entry: Entry) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in entry.lines:
        totals[line.unit] += line.debit - line.credit
    return dict(totals)


def terms(side: str = "BUY", amount: Decimal = Decimal("1500.00")) -> TradeTerms:
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=side,  # type: ignore[arg-type]
        isin="US0378331005",
        quantity=Decimal("10"),
        amount=amount,
        currency="USD",
        counterparty_lei="784F5XWPLTWKTBV3E584",
    )


@given(trade_terms())
def test_every_pending_entry_balances_per_unit(trade: TradeTerms) -> None:
    entry = pending_entry(trade, entry_id="E-1")

    assert entry.kind == "pending"
    assert all(total == 0 for total in net_by_unit(entry).values())


@given(trade_terms())
def test_every_settled_entry_balances_per_unit(trade: TradeTerms) -> None:
    entry = settled_entry(trade, entry_id="E-2")

    assert entry.kind == "settled"
    assert all(total == 0 for total in net_by_unit(entry).values())


@given(trade_terms())
def test_pending_and_settled_together_leave_every_pending_account_at_zero(
    trade: TradeTerms,
) -> None:
    totals = net_by_account(
        pending_entry(trade, entry_id="E-1"), settled_entry(trade, entry_id="E-2")
    )

    pending_accounts = {key: v for key, v in totals.items() if key[0].endswith("_pending")}
    assert pending_accounts
    assert all(total == 0 for total in pending_accounts.values())


@given(trade_terms())
def test_settling_moves_the_pending_amounts_to_the_settled_accounts(trade: TradeTerms) -> None:
    pending = net_by_account(pending_entry(trade, entry_id="E-1"))
    both = net_by_account(
        pending_entry(trade, entry_id="E-1"), settled_entry(trade, entry_id="E-2")
    )

    settled = {key: v for key, v in both.items() if not key[0].endswith("_pending")}
    assert settled == {
        (account.removesuffix("_pending"), unit): v for (account, unit), v in pending.items()
    }


@given(trade_terms())
def test_free_of_payment_trades_book_no_cash(trade: TradeTerms) -> None:
    units = {line.unit for line in pending_entry(trade, entry_id="E-1").lines}

    assert (trade.currency in units) == (trade.amount > 0)


def test_a_buy_receives_securities_and_pays_cash_to_the_street() -> None:
    totals = net_by_account(
        pending_entry(terms("BUY"), entry_id="E-1"), settled_entry(terms("BUY"), entry_id="E-2")
    )

    assert totals[("client:ACC-1:securities", "US0378331005")] == Decimal("10")
    assert totals[("street:784F5XWPLTWKTBV3E584:securities", "US0378331005")] == Decimal("-10")
    assert totals[("client:ACC-1:cash", "USD")] == Decimal("-1500.00")
    assert totals[("street:784F5XWPLTWKTBV3E584:cash", "USD")] == Decimal("1500.00")


def test_a_sell_delivers_securities_and_is_paid_by_the_street() -> None:
    totals = net_by_account(
        pending_entry(terms("SELL"), entry_id="E-1"),
        settled_entry(terms("SELL"), entry_id="E-2"),
    )

    assert totals[("client:ACC-1:securities", "US0378331005")] == Decimal("-10")
    assert totals[("client:ACC-1:cash", "USD")] == Decimal("1500.00")


def test_an_entry_with_unbalanced_lines_is_refused() -> None:
    lines = (
        Line("client:ACC-1:cash_pending", "USD", debit=Decimal("100")),
        Line("street:X:cash_pending", "USD", credit=Decimal("99.99")),
    )

    with pytest.raises(UnbalancedEntry):
        Entry("E-1", "T-1", "ACC-1", "pending", lines)


def test_an_entry_balanced_in_total_but_not_per_unit_is_refused() -> None:
    lines = (
        Line("client:ACC-1:cash_pending", "USD", debit=Decimal("100")),
        Line("street:X:cash_pending", "EUR", credit=Decimal("100")),
    )

    with pytest.raises(UnbalancedEntry):
        Entry("E-1", "T-1", "ACC-1", "pending", lines)


def test_an_entry_without_lines_is_refused() -> None:
    with pytest.raises(UnbalancedEntry):
        Entry("E-1", "T-1", "ACC-1", "pending", ())


def test_a_line_with_both_a_debit_and_a_credit_is_refused() -> None:
    with pytest.raises(LedgerError):
        Line("client:ACC-1:cash", "USD", debit=Decimal("1"), credit=Decimal("1"))


def test_a_line_with_neither_a_debit_nor_a_credit_is_refused() -> None:
    with pytest.raises(LedgerError):
        Line("client:ACC-1:cash", "USD")


def test_a_line_with_a_negative_amount_is_refused() -> None:
    with pytest.raises(LedgerError):
        Line("client:ACC-1:cash", "USD", debit=Decimal("-1"))
