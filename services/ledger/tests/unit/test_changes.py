"""Amendments and cancellations are booked as reversals and new entries, never as edits:
a reversal undoes its entry exactly, capture + amendments net to the latest terms alone,
capture + cancellation nets to nothing, whatever the order and however often each event
arrives. Pure: no database, no broker."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import (
    Book,
    Decision,
    Entry,
    LedgerError,
    TradeTerms,
    book_amendment,
    book_cancellation,
    book_capture,
    book_settlement,
    net_by_account,
    pending_entry,
    pending_entry_id,
    reversal_entry_id,
    reverse,
    settled_entry,
    settled_entry_id,
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
    """Terms of trade T-1 of account ACC-1: everything else may change in an amendment."""
    free_of_payment = draw(st.booleans())
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=draw(st.sampled_from(["BUY", "SELL"])),
        isin=draw(st.sampled_from(["US0378331005", "GB0002634946"])),
        quantity=draw(positive_amounts),
        amount=Decimal(0) if free_of_payment else draw(positive_amounts),
        currency=draw(st.sampled_from(["USD", "EUR", "GBP"])),
        counterparty_lei=draw(st.sampled_from(["784F5XWPLTWKTBV3E584", "W22LROWP2IHZNBB6K528"])),
    )


def net_by_unit(entry: Entry) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in entry.lines:
        totals[line.unit] = totals.get(line.unit, Decimal(0)) + line.debit - line.credit
    return totals


def terms(quantity: str = "10", amount: str = "1500.00", side: str = "BUY") -> TradeTerms:
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=side,  # type: ignore[arg-type]
        isin="US0378331005",
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        currency="USD",
        counterparty_lei="784F5XWPLTWKTBV3E584",
    )


@dataclass
class Journal:
    """An in-memory journal: what the handlers do, without the database."""

    entries: list[Entry] = field(default_factory=list)
    cancelled: bool = False

    def book(self) -> Book:
        return Book.of(self.entries, cancelled=self.cancelled)

    def apply(self, decision: Decision) -> Decision:
        booked = {e.entry_id for e in self.entries}
        for entry in decision.entries:
            assert entry.entry_id not in booked, "an entry is never booked twice"
            self.entries.append(entry)
        self.cancelled = self.cancelled or decision.record_cancellation
        return decision

    def capture(self, trade: TradeTerms) -> Decision:
        return self.apply(book_capture(self.book(), trade))

    def amend(self, trade: TradeTerms, version: int) -> Decision:
        return self.apply(book_amendment(self.book(), trade, version=version))

    def cancel(self) -> Decision:
        return self.apply(book_cancellation(self.book()))

    def settle(self, trade: TradeTerms) -> None:
        self.entries.append(settled_entry(trade, entry_id=settled_entry_id(trade.trade_id)))

    def net(self) -> dict[tuple[str, str], Decimal]:
        return net_by_account(*self.entries)


def alone(trade: TradeTerms) -> dict[tuple[str, str], Decimal]:
    return net_by_account(pending_entry(trade, entry_id="E"))


# --- reverse(entry) -------------------------------------------------------------------


@given(trade_terms(), st.booleans())
def test_a_reversal_balances_per_unit(trade: TradeTerms, settled: bool) -> None:
    entry = (settled_entry if settled else pending_entry)(trade, entry_id="E-1")

    reversal = reverse(entry, entry_id="E-2")

    assert reversal.kind == "reversal"
    assert reversal.reverses == "E-1"
    assert all(total == 0 for total in net_by_unit(reversal).values())


@given(trade_terms(), st.integers(min_value=1, max_value=50))
def test_an_entry_and_its_reversal_net_to_zero_per_account_and_unit(
    trade: TradeTerms, version: int
) -> None:
    entry = pending_entry(trade, entry_id="E-1", version=version)

    reversal = reverse(entry, entry_id="E-2")

    assert net_by_account(entry, reversal) == {}
    assert reversal.version == version
    assert (reversal.trade_id, reversal.account) == (entry.trade_id, entry.account)


@given(trade_terms())
def test_a_reversal_swaps_debit_and_credit_line_by_line(trade: TradeTerms) -> None:
    entry = pending_entry(trade, entry_id="E-1")

    reversal = reverse(entry, entry_id="E-2")

    assert [(x.ledger_account, x.unit, x.debit, x.credit) for x in reversal.lines] == [
        (x.ledger_account, x.unit, x.credit, x.debit) for x in entry.lines
    ]


def test_reversing_leaves_the_reversed_entry_as_it_was() -> None:
    entry = pending_entry(terms(), entry_id="E-1")
    before = replace(entry)

    reverse(entry, entry_id="E-2")

    assert entry == before


def test_a_reversal_is_not_reversed() -> None:
    reversal = reverse(pending_entry(terms(), entry_id="E-1"), entry_id="E-2")

    with pytest.raises(LedgerError):
        reverse(reversal, entry_id="E-3")


def test_only_a_reversal_names_an_entry_it_reverses() -> None:
    lines = pending_entry(terms(), entry_id="E-1").lines
    with pytest.raises(LedgerError):
        Entry("E-2", "T-1", "ACC-1", "reversal", lines)
    with pytest.raises(LedgerError):
        Entry("E-2", "T-1", "ACC-1", "pending", lines, reverses="E-1")
    with pytest.raises(LedgerError):
        Entry("E-1", "T-1", "ACC-1", "reversal", lines, reverses="E-1")


def test_entry_ids_are_derived_from_what_they_book() -> None:
    assert pending_entry_id("T-1", 2) == pending_entry_id("T-1", 2)
    assert len({pending_entry_id("T-1", 1), pending_entry_id("T-1", 2)}) == 2
    assert reversal_entry_id("E-1") != reversal_entry_id("E-2")
    assert settled_entry_id("T-1") not in {pending_entry_id("T-1", 1), reversal_entry_id("T-1")}


# --- amendments and cancellations -------------------------------------------------------


@given(trade_terms(), trade_terms())
def test_capture_then_amend_nets_to_the_amended_terms_alone(
    captured: TradeTerms, amended: TradeTerms
) -> None:
    journal = Journal()
    journal.capture(captured)

    decision = journal.amend(amended, version=2)

    assert [e.kind for e in decision.entries] == ["reversal", "pending"]
    assert decision.entries[0].reverses == pending_entry_id("T-1", 1)
    assert decision.entries[1].version == 2
    assert journal.net() == alone(amended)


@given(st.lists(trade_terms(), min_size=2, max_size=6))
def test_successive_amendments_net_to_the_latest_terms(versions: list[TradeTerms]) -> None:
    journal = Journal()
    journal.capture(versions[0])

    for number, trade in enumerate(versions[1:], start=2):
        journal.amend(trade, version=number)

    assert journal.net() == alone(versions[-1])
    assert journal.book().booked_version == len(versions)
    reversed_ids = [e.reverses for e in journal.entries if e.reverses is not None]
    assert len(reversed_ids) == len(set(reversed_ids)) == len(versions) - 1


@given(trade_terms())
def test_capture_then_cancel_nets_to_zero(trade: TradeTerms) -> None:
    journal = Journal()
    journal.capture(trade)

    decision = journal.cancel()

    assert [e.kind for e in decision.entries] == ["reversal"]
    assert decision.record_cancellation
    assert journal.net() == {}


@given(trade_terms(), trade_terms())
def test_capture_amend_cancel_nets_to_zero(captured: TradeTerms, amended: TradeTerms) -> None:
    journal = Journal()
    journal.capture(captured)
    journal.amend(amended, version=2)

    journal.cancel()

    assert journal.net() == {}
    assert [e.kind for e in journal.entries] == ["pending", "reversal", "pending", "reversal"]


def test_an_amendment_at_or_below_the_booked_version_books_nothing() -> None:
    journal = Journal()
    journal.capture(terms())
    journal.amend(terms(quantity="20"), version=2)
    booked = list(journal.entries)

    again = journal.amend(terms(quantity="30"), version=2)
    older = journal.amend(terms(quantity="40"), version=1)

    assert again.entries == older.entries == ()
    assert again.skipped and not again.refused
    assert journal.entries == booked


def test_a_second_cancellation_books_nothing() -> None:
    journal = Journal()
    journal.capture(terms())
    journal.cancel()
    booked = list(journal.entries)

    second = journal.cancel()

    assert second == Decision(skipped="the trade is cancelled already")
    assert journal.entries == booked


def test_nothing_is_booked_for_a_cancelled_trade_afterwards() -> None:
    journal = Journal()
    journal.capture(terms())
    journal.cancel()

    assert journal.amend(terms(quantity="20"), version=2).entries == ()
    assert journal.capture(terms()).entries == ()
    assert journal.net() == {}


def test_a_cancellation_before_the_capture_keeps_the_capture_from_booking() -> None:
    journal = Journal()

    first = journal.cancel()
    late_capture = journal.capture(terms())

    assert first.entries == () and first.record_cancellation
    assert late_capture.entries == ()
    assert journal.net() == {}


def test_an_amendment_before_the_capture_supersedes_it() -> None:
    journal = Journal()

    journal.amend(terms(quantity="20"), version=2)
    late_capture = journal.capture(terms())

    assert late_capture.entries == ()
    assert journal.net() == alone(terms(quantity="20"))


@pytest.mark.parametrize("change", ["amend", "cancel"])
def test_a_settled_trade_is_not_changed(change: str) -> None:
    journal = Journal()
    journal.capture(terms())
    journal.settle(terms())
    booked = list(journal.entries)

    decision = journal.amend(terms(quantity="20"), 2) if change == "amend" else journal.cancel()

    assert decision.entries == ()
    assert decision.refused
    assert not decision.record_cancellation
    assert journal.entries == booked
    assert all(total == 0 for (account, _), total in journal.net().items() if "_pending" in account)


def test_a_capture_after_its_settlement_is_still_booked() -> None:
    journal = Journal()
    journal.settle(terms())

    assert [e.kind for e in journal.capture(terms()).entries] == ["pending"]


def test_a_journal_with_two_unreversed_pending_entries_is_refused() -> None:
    entries = [
        pending_entry(terms(), entry_id="E-1"),
        pending_entry(terms(quantity="20"), entry_id="E-2", version=2),
    ]

    with pytest.raises(LedgerError):
        Book.of(entries)


def test_the_live_entry_of_a_book_is_a_pending_entry() -> None:
    with pytest.raises(LedgerError):
        Book(live_pending=settled_entry(terms(), entry_id="E-1"))


# --- any order, any repetition ------------------------------------------------------------

Event = tuple[str, int]  # ("capture", 1), ("amend", n) or ("cancel", n)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[TradeTerms], list[Event]]:
    """A trade's versions, and its events in any order with any of them repeated."""
    versions = draw(st.lists(trade_terms(), min_size=1, max_size=4))
    events: list[Event] = [("capture", 1)] + [("amend", n) for n in range(2, len(versions) + 1)]
    if draw(st.booleans()):
        events.append(("cancel", len(versions)))
    repeated = draw(st.lists(st.sampled_from(events), max_size=4))
    return versions, draw(st.permutations(events + repeated))


@given(deliveries())
def test_any_order_and_any_repetition_nets_to_the_outcome_of_the_last_change(
    case: tuple[list[TradeTerms], list[Event]],
) -> None:
    versions, events = case
    journal = Journal()

    for kind, version in events:
        if kind == "capture":
            journal.capture(versions[0])
        elif kind == "amend":
            journal.amend(versions[version - 1], version)
        else:
            journal.cancel()

    cancelled = any(kind == "cancel" for kind, _ in events)
    assert journal.net() == ({} if cancelled else alone(versions[-1]))
    for entry in journal.entries:
        assert all(total == 0 for total in net_by_unit(entry).values())
    reversed_ids = [e.reverses for e in journal.entries if e.reverses is not None]
    assert len(reversed_ids) == len(set(reversed_ids)), "an entry is reversed at most once"


# --- settlement after a change settlement refused ---------------------------------------


def settle_through_the_domain(journal: Journal, trade: TradeTerms) -> Decision:
    return journal.apply(
        book_settlement(journal.book(), trade, settled_entry_id=settled_entry_id(trade.trade_id))
    )


def settled_only(trade: TradeTerms) -> dict[tuple[str, str], Decimal]:
    return net_by_account(settled_entry(trade, entry_id="S"))


@given(trade_terms())
def test_an_unchanged_trade_settles_with_one_settled_entry(trade: TradeTerms) -> None:
    journal = Journal()
    journal.capture(trade)

    decision = settle_through_the_domain(journal, trade)

    assert [e.kind for e in decision.entries] == ["settled"]
    assert journal.net() == net_by_account(
        pending_entry(trade, entry_id="P"), settled_entry(trade, entry_id="S")
    )


@given(trade_terms(), trade_terms())
def test_an_amendment_settlement_refused_is_rebooked_to_the_terms_that_settled(
    captured: TradeTerms, amended: TradeTerms
) -> None:
    journal = Journal()
    journal.capture(captured)
    journal.amend(amended, version=2)

    settle_through_the_domain(journal, captured)

    # The books are those of the original trade settled, as if no amendment had happened.
    expected = Journal()
    expected.capture(captured)
    settle_through_the_domain(expected, captured)
    assert journal.net() == expected.net()
    assert journal.book().settled


@given(trade_terms())
def test_a_cancellation_settlement_refused_is_rebooked_to_the_terms_that_settled(
    trade: TradeTerms,
) -> None:
    journal = Journal()
    journal.capture(trade)
    journal.cancel()

    decision = settle_through_the_domain(journal, trade)

    assert [e.kind for e in decision.entries] == ["pending", "settled"]
    expected = Journal()
    expected.capture(trade)
    settle_through_the_domain(expected, trade)
    assert journal.net() == expected.net()


def test_a_settlement_delivered_twice_is_booked_once() -> None:
    journal = Journal()
    journal.capture(terms())
    settle_through_the_domain(journal, terms())

    again = settle_through_the_domain(journal, terms())

    assert again.entries == ()
    assert again.skipped is not None
