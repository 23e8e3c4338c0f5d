"""Any sequence of captures, amendments, cancellations, rejections, partial and full
settlements (saying where they settled, or not: events from before settlement said so), in
any order the topics allow and with redeliveries, delivered to the real handlers on the real
database, leaves every unit's trial balance at zero, every balance equal to a recomputation
from the trades' final terms written here without the domain code, and no posting applied
twice."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.envelope import Envelope
from ledger import handlers
from ledger.api import balances_as_of
from ledger.domain_accounts import client_account_names

if TYPE_CHECKING:
    from services.ledger.tests.integration.conftest import Handler, Ledger

LEIS = ("784F5XWPLTWKTBV3E584", "8I5DZWZKVSZI1NUHU748")
ISINS = ("US0378331005", "GB0002634946")
# Where a trade settles, as settlement.settled states it: (depository BIC, custodian BIC,
# safekeeping account), or None (an event from before settlement stated it).
LOCATIONS: tuple[tuple[str | None, str | None, str | None] | None, ...] = (
    None,
    ("DTCYUS33", "IRVTUS3NXXX", "SAFE-US-1"),
    ("CRSTGB22", "CITIGB2LXXX", "SAFE-UK-C-001"),
    ("DTCYUS33", None, None),
)


@dataclass(frozen=True)
class Terms:
    side: str
    isin: str
    quantity: int
    cents: int  # cash in minor units; 0 free of payment
    currency: str
    lei: str


terms_strategy = st.builds(
    Terms,
    side=st.sampled_from(["BUY", "SELL"]),
    isin=st.sampled_from(ISINS),
    quantity=st.integers(min_value=1, max_value=1_000_000),
    cents=st.one_of(st.just(0), st.integers(min_value=1, max_value=10**11)),
    currency=st.sampled_from(["USD", "EUR"]),
    lei=st.sampled_from(LEIS),
)


@dataclass(frozen=True)
class Trade:
    versions: tuple[Terms, ...]
    ending: str  # open, cancel, reject
    # Quantities (and cents) of each part the depository settles, the last one completing
    # it; empty: not settled.
    parts: tuple[tuple[int, int], ...]
    # Where every part settled (one SSI per instruction).
    location: tuple[str | None, str | None, str | None] | None = None


def split(total: int, cuts: list[int]) -> list[int]:
    points = sorted({c for c in cuts if 0 < c < total})
    edges = [0, *points, total]
    return [b - a for a, b in itertools.pairwise(edges)]


@st.composite
def trades(draw: st.DrawFn) -> Trade:
    versions = tuple(draw(st.lists(terms_strategy, min_size=1, max_size=3)))
    ending = draw(st.sampled_from(["open", "cancel", "reject"]))
    final = versions[-1]
    parts: tuple[tuple[int, int], ...] = ()
    if draw(st.booleans()):
        cuts = draw(st.lists(st.integers(1, max(final.quantity - 1, 1)), max_size=2))
        quantities = split(final.quantity, cuts)
        # Cash of each part pro rata, rounded down, the remainder on the last part.
        cents = [final.cents * q // final.quantity for q in quantities[:-1]]
        cents.append(final.cents - sum(cents))
        parts = tuple(zip(quantities, cents, strict=True))
    return Trade(versions, ending, parts, draw(st.sampled_from(LOCATIONS)))


def captured_data(trade_id: str, account: str, terms: Terms, version: int) -> dict[str, Any]:
    amount = Decimal(terms.cents) / 100
    return gateway_contract.TradeCaptured(
        trade_id=trade_id,
        client_trade_id=f"FO-{trade_id}",
        account=account,
        side=terms.side,  # type: ignore[arg-type]
        isin=terms.isin,
        quantity=Decimal(terms.quantity),
        price=amount / terms.quantity,
        currency=terms.currency,
        gross_amount=amount,
        trade_date=date(2026, 11, 20),
        trade_time=datetime(2026, 11, 20, 14, 0, tzinfo=UTC) + timedelta(seconds=version),
        venue="XNYS",
        counterparty_lei=terms.lei,
        settlement_type="DVP" if terms.cents else "FOP",
        version=version,
    ).model_dump(mode="json")


def events_of(ledger: Ledger, trade_id: str, account: str, trade: Trade) -> tuple[list[Any], ...]:
    """The trade's events on trade.events (and compliance.events) and on
    settlement.events, each list in the order its topic keeps."""
    trade_events: list[tuple[Handler, Envelope]] = []
    for number, terms in enumerate(trade.versions, start=1):
        data = captured_data(trade_id, account, terms, number)
        if number == 1:
            trade_events.append(
                (handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, data))
            )
        else:
            data.update(reason="test", changed_fields=["quantity"])
            trade_events.append(
                (handlers.post_trade_amendment, ledger.event(gateway_contract.TRADE_AMENDED, data))
            )
    version = len(trade.versions)
    if trade.ending == "cancel":
        data = {"trade_id": trade_id, "client_trade_id": f"FO-{trade_id}", "account": account,
                "version": version, "reason": "test"}  # fmt: skip
        trade_events.append(
            (handlers.post_trade_cancellation, ledger.event(gateway_contract.TRADE_CANCELLED, data))
        )
    elif trade.ending == "reject":
        data = {"trade_id": trade_id, "account": account, "version": version, "reason": "test"}
        trade_events.append(
            (handlers.post_trade_rejection, ledger.event(handlers.TRADE_REJECTED, data))
        )
    final = trade.versions[-1]
    settlement_events: list[tuple[Handler, Envelope]] = []
    for number, (quantity, cents) in enumerate(trade.parts, start=1):
        last = number == len(trade.parts)
        data = settlement_contract.SettlementSettled(
            trade_id=trade_id,
            instruction_id=f"I-{trade_id}",
            account=account,
            side=final.side,  # type: ignore[arg-type]
            isin=final.isin,
            quantity=Decimal(quantity),
            amount=Decimal(cents) / 100,
            currency=final.currency,
            settlement_date=date(2026, 11, 21),
            counterparty_lei=final.lei,
        ).model_dump(mode="json", exclude_none=True)
        if trade.location is not None:
            depository, custodian, safekeeping = trade.location
            data.update(
                depository=depository, custodian_bic=custodian, safekeeping_account=safekeeping
            )
        settlement_events.append(
            (handlers.post_settlement, ledger.event(settlement_contract.SETTLED, data))
            if last
            else (
                handlers.post_partial_settlement,
                ledger.event(handlers.PARTIALLY_SETTLED, data),
            )
        )
    return trade_events, settlement_events


def expected_net(account: str, trade: Trade) -> dict[tuple[str, str], Decimal]:
    """Written from the business rule, not from the domain code: a trade that settled is on
    the settled accounts with the terms that settled (whatever change was refused after);
    one that did not is pending with its last terms, or nowhere if cancelled or rejected.
    Pending, the other side is the street (an open contract); settled, it is where the
    assets are: the securities at the depository (else the custodian), the cash at the
    custodian's safekeeping account (else the depository), both credit-normal; a
    settlement that did not say where it settled leaves it on the street."""
    final = trade.versions[-1]
    if not trade.parts and trade.ending != "open":
        return {}
    suffix = "" if trade.parts else "_pending"
    sign = 1 if final.side == "BUY" else -1
    quantity = Decimal(final.quantity)
    cash = Decimal(final.cents) / 100
    securities_at = f"street:{final.lei}:securities{suffix}"
    cash_at = f"street:{final.lei}:cash{suffix}"
    if trade.parts and trade.location is not None:
        depository, custodian, safekeeping = trade.location
        custodian_owner = (
            None if custodian is None else "/".join(p for p in (custodian, safekeeping) if p)
        )
        securities_at = (
            f"depository:{depository}:securities"
            if depository
            else f"custodian:{custodian_owner}:securities"
        )
        cash_at = (
            f"custodian:{custodian_owner}:cash"
            if custodian_owner
            else f"depository:{depository}:cash"
        )
    net = {
        (f"client:{account}:securities{suffix}", final.isin): sign * quantity,
        (securities_at, final.isin): -sign * quantity,
    }
    if cash:
        net[(f"client:{account}:cash{suffix}", final.currency)] = -sign * cash
        net[(cash_at, final.currency)] = sign * cash
    return net


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.lists(trades(), min_size=1, max_size=2),
    data=st.data(),
)
async def test_any_sequence_balances_and_matches_a_recomputation_from_the_events(
    ledger: Ledger, case: list[Trade], data: st.DataObject
) -> None:
    account = ledger.fresh("ACC")
    streams: list[list[tuple[Handler, Envelope]]] = []
    ids = []
    for trade in case:
        trade_id = ledger.fresh("T")
        ids.append(trade_id)
        streams.extend(events_of(ledger, trade_id, account, trade))
    # Interleave the streams, each kept in its own order (a partition of a topic), then
    # deliver some events again anywhere after their first delivery.
    sequence: list[tuple[Handler, Envelope]] = []
    positions = [0] * len(streams)
    while any(p < len(s) for p, s in zip(positions, streams, strict=True)):
        open_streams = [i for i, s in enumerate(streams) if positions[i] < len(s)]
        pick = data.draw(st.sampled_from(open_streams))
        sequence.append(streams[pick][positions[pick]])
        positions[pick] += 1
    for _ in range(data.draw(st.integers(0, 4))):
        index = data.draw(st.integers(0, len(sequence) - 1))
        at = data.draw(st.integers(index + 1, len(sequence)))
        sequence.insert(at, sequence[index])

    # In consumed batches of any size (one transaction each, flushed once).
    while sequence:
        size = data.draw(st.integers(1, len(sequence)))
        await ledger.deliver_batch(sequence[:size])
        sequence = sequence[size:]

    expected: dict[tuple[str, str], Decimal] = {}
    for trade_id, trade in zip(ids, case, strict=True):
        want = expected_net(account, trade)
        assert await ledger.net(trade_id=trade_id) == want, trade
        for key, amount in want.items():
            expected[key] = expected.get(key, Decimal(0)) + amount
    client_expected = {k: v for k, v in expected.items() if k[0].startswith("client:")}
    client_expected = {k: v for k, v in client_expected.items() if v != 0}
    # The database's projections agree with the recomputation: now and as of now.
    projected = await ledger.rows(
        "SELECT ledger_account, unit, balance FROM account_balances "
        "WHERE ledger_account = ANY(:names) AND balance <> 0",
        names=list(client_account_names(account)),
    )
    assert {(a, u): b for a, u, b in projected} == client_expected
    async with ledger.sessions() as session:
        as_of = await balances_as_of(
            session, client_account_names(account), datetime.now(UTC) + timedelta(days=1)
        )
    assert {(a, u): b for a, u, b in as_of if b != 0} == client_expected
    # Every unit sums to zero over every account, and nothing was posted twice.
    assert (
        await ledger.rows(
            "SELECT unit FROM account_balances GROUP BY unit HAVING sum(balance) <> 0"
        )
        == []
    )
    assert (
        await ledger.rows(
            "SELECT ledger_account, unit FROM account_balances b "
            "WHERE balance <> (SELECT coalesce(sum(debit - credit), 0) FROM journal_lines l "
            "WHERE l.ledger_account = b.ledger_account AND l.unit = b.unit) AND "
            "ledger_account = ANY(:names)",
            names=list(client_account_names(account)),
        )
        == []
    )
    entries = await ledger.scalar(
        "SELECT count(*) FROM journal_entries WHERE trade_id = ANY(:ids)", ids=ids
    )
    published = await ledger.scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'ledger.posted' "
        "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = ANY(:ids)",
        ids=ids,
    )
    assert entries == published
    for trade_id, trade in zip(ids, case, strict=True):
        kinds = [k for (k,) in await ledger.rows(
            "SELECT kind FROM journal_entries WHERE trade_id = :t", t=trade_id
        )]  # fmt: skip
        assert kinds.count("settled") == (1 if trade.parts else 0)
        assert kinds.count("partially_settled") == max(len(trade.parts) - 1, 0)
        assert kinds.count("reversal") <= kinds.count("pending")
