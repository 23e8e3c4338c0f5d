"""Two-phase postings at settlement: a partial settlement moves its part from pending to
settled and keeps the rest pending; the settlement in full releases the rest, whether its
confirmation states the last part or the whole trade; a settlement that arrives before the
capture is completed by the capture. Pure: no database."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import (
    Book,
    Entry,
    TradeTerms,
    book_capture,
    book_partial_settlement,
    book_settlement,
    net_by_account,
    partial_entry_id,
    settled_entry_id,
)

ISIN = "US0378331005"


def terms(quantity: int = 100, amount: str = "200", side: str = "BUY") -> TradeTerms:
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


def book(entries: list[Entry]) -> Book:
    return Book.of(entries)


def post(entries: list[Entry], decision_entries: tuple[Entry, ...]) -> None:
    entries.extend(decision_entries)


def pending_left(entries: list[Entry]) -> dict[tuple[str, str], Decimal]:
    return {k: v for k, v in net_by_account(*entries).items() if k[0].endswith("_pending")}


def settled_on(entries: list[Entry]) -> dict[tuple[str, str], Decimal]:
    return {k: v for k, v in net_by_account(*entries).items() if not k[0].endswith("_pending")}


def settle_alone(trade: TradeTerms) -> dict[tuple[str, str], Decimal]:
    entries: list[Entry] = []
    post(entries, book_capture(book(entries), trade).entries)
    post(entries, book_settlement(book(entries), trade, settled_entry_id="S").entries)
    return settled_on(entries)


def test_a_partial_settlement_keeps_the_rest_pending() -> None:
    entries: list[Entry] = []
    post(entries, book_capture(book(entries), terms()).entries)

    decision = book_partial_settlement(
        book(entries), terms(40, "80"), entry_id=partial_entry_id("T-1", "e1")
    )
    post(entries, decision.entries)

    assert [e.kind for e in decision.entries] == ["partially_settled"]
    assert pending_left(entries)[("client:ACC-1:securities_pending", ISIN)] == 60
    assert settled_on(entries)[("client:ACC-1:securities", ISIN)] == 40
    again = book_partial_settlement(
        book(entries), terms(40, "80"), entry_id=partial_entry_id("T-1", "e1")
    )
    assert again.entries == () and again.skipped


@given(
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from(["BUY", "SELL"]),
)
def test_parts_and_the_settlement_in_full_settle_the_trade_exactly_once(
    parts: list[int], whole_terms_stated: bool, side: str
) -> None:
    trade = terms(100, "200", side)
    entries: list[Entry] = []
    post(entries, book_capture(book(entries), trade).entries)
    for number, quantity in enumerate(parts):
        part = replace(trade, quantity=Decimal(quantity), amount=Decimal(quantity * 2))
        post(
            entries,
            book_partial_settlement(
                book(entries), part, entry_id=partial_entry_id("T-1", str(number))
            ).entries,
        )
    rest = 100 - sum(parts)
    final = trade if whole_terms_stated else replace(
        trade, quantity=Decimal(rest), amount=Decimal(rest * 2)
    )  # fmt: skip

    post(entries, book_settlement(book(entries), final, settled_entry_id="S").entries)

    assert pending_left(entries) == {}
    assert settled_on(entries) == settle_alone(trade)
    assert book(entries).settled


def test_a_settlement_before_its_capture_is_completed_by_the_capture() -> None:
    """The capture books what settled (even if it states other terms: an amendment
    settlement refused), so nothing stays pending."""
    entries: list[Entry] = []
    post(entries, book_settlement(book(entries), terms(), settled_entry_id="S").entries)
    assert pending_left(entries) != {}

    post(entries, book_capture(book(entries), terms(70, "140")).entries)

    assert pending_left(entries) == {}
    assert settled_on(entries) == settle_alone(terms())


def test_a_settlement_of_other_terms_than_booked_rebooks_the_pending_entry() -> None:
    entries: list[Entry] = []
    post(entries, book_capture(book(entries), terms(70, "140")).entries)

    decision = book_settlement(book(entries), terms(), settled_entry_id=settled_entry_id("T-1"))
    post(entries, decision.entries)

    assert [e.kind for e in decision.entries] == ["reversal", "pending", "settled"]
    assert pending_left(entries) == {}
    assert settled_on(entries) == settle_alone(terms())
