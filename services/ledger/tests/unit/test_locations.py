"""Settlement books the client's settled position against where the assets are (the
depository and the custodian of the SSI), not against the street: the stock record's
owner side and location side balance, and the street keeps only open contracts. A
settlement that does not say where it settled books against the street as before. Pure: no
database."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import (
    Book,
    Entry,
    LedgerError,
    Location,
    TradeTerms,
    account_owner,
    book_capture,
    book_partial_settlement,
    book_settlement,
    net_by_account,
    partial_entry_id,
    settled_entry,
)
from ledger.domain_accounts import chart_account

ISIN = "US0378331005"
LEI = "784F5XWPLTWKTBV3E584"
DTC = "DTCYUS33"
AT_DTC = Location(depository=DTC, custodian_bic="IRVTUS3NXXX", safekeeping_account="SAFE-001")
DEPOSITORY = f"depository:{DTC}:securities"
CUSTODIAN = "custodian:IRVTUS3NXXX/SAFE-001:cash"


def terms(
    side: str = "BUY",
    quantity: str = "100",
    amount: str = "2000.00",
    location: Location | None = AT_DTC,
) -> TradeTerms:
    return TradeTerms(
        trade_id="T-1",
        account="ACC-1",
        side=side,  # type: ignore[arg-type]
        isin=ISIN,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        currency="USD",
        counterparty_lei=LEI,
        location=location,
    )


def lines(entry: Entry) -> set[tuple[str, str, Decimal, Decimal]]:
    return {(li.ledger_account, li.unit, li.debit, li.credit) for li in entry.lines}


D = Decimal


def test_a_dvp_buy_settles_against_the_depository_and_the_custodian() -> None:
    entry = settled_entry(terms("BUY"), entry_id="S")

    assert lines(entry) == {
        # the pending contract, client and street, released
        ("client:ACC-1:securities_pending", ISIN, D(0), D(100)),
        (f"street:{LEI}:securities_pending", ISIN, D(100), D(0)),
        (f"street:{LEI}:cash_pending", "USD", D(0), D("2000.00")),
        ("client:ACC-1:cash_pending", "USD", D("2000.00"), D(0)),
        # the movement: the client's settled position against where it is
        ("client:ACC-1:securities", ISIN, D(100), D(0)),
        (DEPOSITORY, ISIN, D(0), D(100)),
        (CUSTODIAN, "USD", D("2000.00"), D(0)),
        ("client:ACC-1:cash", "USD", D(0), D("2000.00")),
    }


def test_a_fop_sell_delivers_out_of_the_depository_and_moves_no_cash() -> None:
    entry = settled_entry(terms("SELL", amount="0"), entry_id="S")

    assert lines(entry) == {
        ("client:ACC-1:securities_pending", ISIN, D(100), D(0)),
        (f"street:{LEI}:securities_pending", ISIN, D(0), D(100)),
        ("client:ACC-1:securities", ISIN, D(0), D(100)),
        (DEPOSITORY, ISIN, D(100), D(0)),
    }


def test_a_settlement_without_a_location_books_against_the_street_as_before() -> None:
    entry = settled_entry(terms("BUY", location=None), entry_id="S")

    settled = {(a, u): v for (a, u), v in net_by_account(entry).items() if "_pending" not in a}
    assert settled == {
        ("client:ACC-1:securities", ISIN): D(100),
        (f"street:{LEI}:securities", ISIN): D(-100),
        ("client:ACC-1:cash", "USD"): D("-2000.00"),
        (f"street:{LEI}:cash", "USD"): D("2000.00"),
    }


@pytest.mark.parametrize(("side", "amount"), [("BUY", "2000.00"), ("SELL", "2000.00"),
                                              ("BUY", "0"), ("SELL", "0")])  # fmt: skip
def test_a_partial_settlement_settles_its_part_through_the_location_and_keeps_the_rest_pending(
    side: str, amount: str
) -> None:
    trade = terms(side, amount=amount)
    sign = 1 if side == "BUY" else -1
    entries: list[Entry] = list(book_capture(Book.of([]), trade).entries)
    part = replace(trade, quantity=D(40), amount=D(amount) * D("0.4"))

    entries += book_partial_settlement(
        Book.of(entries), part, entry_id=partial_entry_id("T-1", "e1")
    ).entries

    net = net_by_account(*entries)
    assert net[("client:ACC-1:securities", ISIN)] == sign * 40
    assert net[(DEPOSITORY, ISIN)] == -sign * 40
    assert net[("client:ACC-1:securities_pending", ISIN)] == sign * 60
    assert net[(f"street:{LEI}:securities_pending", ISIN)] == -sign * 60
    assert (f"street:{LEI}:securities", ISIN) not in net
    if amount != "0":
        assert net[("client:ACC-1:cash", "USD")] == -sign * D("800.00")
        assert net[(CUSTODIAN, "USD")] == sign * D("800.00")
        assert net[("client:ACC-1:cash_pending", "USD")] == -sign * D("1200.00")
    else:
        assert not any(unit == "USD" for _, unit in net)

    # The rest settles, stated as the last part or (a netted instruction) as the whole.
    for final in (replace(trade, quantity=D(60), amount=D(amount) * D("0.6")), trade):
        done = entries + list(
            book_settlement(Book.of(entries), final, settled_entry_id="S").entries
        )
        net = net_by_account(*done)
        assert {k: v for k, v in net.items() if not k[0].startswith("client:")} == (
            {(DEPOSITORY, ISIN): -sign * 100}
            | ({(CUSTODIAN, "USD"): sign * D(amount)} if amount != "0" else {})
        )


@st.composite
def located_terms(draw: st.DrawFn) -> TradeTerms:
    depository = draw(st.sampled_from([None, DTC, "CRSTGB22"]))
    custodian = draw(st.sampled_from([None, "IRVTUS3NXXX", "CITIGB2LXXX"]))
    location = (
        None
        if depository is None and custodian is None
        else Location(depository, custodian, draw(st.sampled_from([None, "SAFE-1", "A:B/C %"])))
    )
    return terms(
        draw(st.sampled_from(["BUY", "SELL"])),
        quantity=str(draw(st.integers(1, 10**9))),
        amount=str(draw(st.sampled_from([D(0), D("0.01"), D("123456.78")]))),
        location=location,
    )


@given(located_terms())
def test_owner_and_location_sides_balance_and_the_street_keeps_only_open_contracts(
    trade: TradeTerms,
) -> None:
    entries = list(book_capture(Book.of([]), trade).entries)
    entries += book_settlement(Book.of(entries), trade, settled_entry_id="S").entries

    net = net_by_account(*entries)
    client = {k: v for k, v in net.items() if k[0].startswith("client:")}
    street = {k: v for k, v in net.items() if k[0].startswith("street:")}
    location = {k: v for k, v in net.items() if k[0].startswith(("depository:", "custodian:"))}
    assert all(not account.endswith("_pending") for account, _ in net)
    for unit in {u for _, u in client}:
        owned = sum(v for (_, u), v in client.items() if u == unit)
        held = sum(v for (_, u), v in {**street, **location}.items() if u == unit)
        assert owned + held == 0
    if trade.location is not None:
        assert street == {}
        assert {chart_account(a, u).account_type for a, u in location} <= {
            "depository",
            "custodian",
        }
    else:
        assert location == {}


def test_location_accounts_are_credit_normal_and_parse_from_their_names() -> None:
    depository = chart_account(DEPOSITORY, ISIN)
    custodian = chart_account(CUSTODIAN, "USD")

    assert (depository.account_type, depository.normal_side, depository.owner) == (
        "depository",
        "credit",
        DTC,
    )
    assert (depository.asset_class, depository.phase) == ("securities", "settled")
    assert (custodian.account_type, custodian.normal_side, custodian.owner) == (
        "custodian",
        "credit",
        "IRVTUS3NXXX/SAFE-001",
    )
    assert custodian.asset_class == "cash"


def test_identifiers_in_an_owner_are_encoded_so_that_the_name_still_parses() -> None:
    owner = account_owner("IRVTUS3NXXX", "SAFE:01/A %")
    location = Location(custodian_bic="IRVTUS3NXXX", safekeeping_account="SAFE:01/A %")

    assert owner == "IRVTUS3NXXX/SAFE%3A01%2FA%20%25"
    assert chart_account(location.cash_account, "USD").owner == owner
    assert chart_account(location.securities_account, ISIN).account_type == "custodian"
    assert Location(depository=DTC).cash_account == f"depository:{DTC}:cash"
    with pytest.raises(LedgerError):
        Location()
