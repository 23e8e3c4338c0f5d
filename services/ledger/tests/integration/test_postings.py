"""The handlers on a database built by the real migrations: what a capture, a settlement,
a partial settlement, a rejection and a limit post, and what the database itself refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as settlement_contract
from ledger import handlers

if TYPE_CHECKING:
    from services.ledger.tests.integration.conftest import Ledger

LEI = "784F5XWPLTWKTBV3E584"
ISIN = "US0378331005"


def captured(ledger: Ledger, **overrides: Any) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "trade_id": ledger.fresh("T"),
        "client_trade_id": ledger.fresh("FO"),
        "account": ledger.fresh("ACC"),
        "side": "BUY",
        "isin": ISIN,
        "quantity": "3",
        "price": "10.005",
        "currency": "USD",
        "trade_date": "2026-11-20",
        "trade_time": "2026-11-20T14:31:07+00:00",
        "venue": "XNYS",
        "counterparty_lei": LEI,
        "settlement_type": "DVP",
        "version": 1,
    }
    trade.update(overrides)
    trade["gross_amount"] = str(Decimal(trade["quantity"]) * Decimal(trade["price"]))
    return trade


def settled(trade: dict[str, Any], quantity: str, amount: str) -> dict[str, Any]:
    return settlement_contract.SettlementSettled(
        trade_id=trade["trade_id"],
        instruction_id="I-1",
        account=trade["account"],
        side=trade["side"],
        isin=trade["isin"],
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        currency=trade["currency"],
        settlement_date=date(2026, 11, 21),
        counterparty_lei=trade["counterparty_lei"],
    ).model_dump(mode="json")


def client(trade: dict[str, Any], kind: str) -> str:
    return f"client:{trade['account']}:{kind}"


async def test_a_capture_books_the_cash_rounded_as_settlement_instructs_it(
    ledger: Ledger,
) -> None:
    trade = captured(ledger)  # 3 x 10.005 = 30.015 USD: settles as 30.02 (half even)
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )

    net = await ledger.net(trade_id=trade["trade_id"])
    assert net[(client(trade, "cash_pending"), "USD")] == Decimal("-30.02")
    assert net[(f"street:{LEI}:cash_pending", "USD")] == Decimal("30.02")

    # Settled for the instructed (rounded) cash: nothing is left pending, not a sub-cent.
    await ledger.deliver(
        handlers.post_settlement,
        ledger.event(settlement_contract.SETTLED, settled(trade, "3", "30.02")),
    )
    net = await ledger.net(trade_id=trade["trade_id"])
    assert {k: v for k, v in net.items() if k[0].endswith("_pending")} == {}
    assert net[(client(trade, "cash"), "USD")] == Decimal("-30.02")
    assert net[(client(trade, "securities"), ISIN)] == Decimal("3")


async def test_a_posting_creates_its_accounts_in_the_chart_with_type_and_normal_side(
    ledger: Ledger,
) -> None:
    trade = captured(ledger)
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )

    chart = await ledger.rows(
        "SELECT ledger_account, unit, account_type, normal_side, owner, asset_class, phase "
        "FROM ledger_accounts WHERE owner = :owner ORDER BY 1, 2",
        owner=trade["account"],
    )
    assert [tuple(row) for row in chart] == [
        (client(trade, "cash_pending"), "USD", "client", "debit", trade["account"], "cash",
         "pending"),
        (client(trade, "securities_pending"), ISIN, "client", "debit", trade["account"],
         "securities", "pending"),
    ]  # fmt: skip
    street = await ledger.scalar(
        "SELECT account_type || '/' || normal_side FROM ledger_accounts "
        "WHERE ledger_account = :a AND unit = 'USD'",
        a=f"street:{LEI}:cash_pending",
    )
    assert street == "counterparty/credit"


async def test_ledger_posted_carries_the_balances_the_entry_changed(ledger: Ledger) -> None:
    trade = captured(ledger)
    first = captured(ledger, account=trade["account"], quantity="5", price="2")
    # One consumed batch: each event carries the balances right after its own entry.
    await ledger.deliver_batch(
        [
            (handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, t))
            for t in (first, trade)
        ]
    )

    async def posted(trade_id: str) -> dict[str, Any]:
        [(data,)] = await ledger.rows(
            "SELECT convert_from(payload, 'UTF8')::jsonb -> 'data' FROM outbox "
            "WHERE event_type = 'ledger.posted' "
            "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t",
            t=trade_id,
        )
        return dict(data)

    def balances(data: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
        return {(b["ledger_account"], b["unit"]): Decimal(b["balance"]) for b in data["balances"]}

    early, late = (
        balances(await posted(first["trade_id"])),
        balances(await posted(trade["trade_id"])),
    )
    assert early[(client(trade, "cash_pending"), "USD")] == Decimal("-10")
    assert late[(client(trade, "cash_pending"), "USD")] == Decimal("-40.02")
    assert late[(client(trade, "securities_pending"), ISIN)] == Decimal("8")
    street = (f"street:{LEI}:cash_pending", "USD")
    now = await ledger.scalar(
        "SELECT balance FROM account_balances WHERE ledger_account = :a AND unit = 'USD'",
        a=street[0],
    )
    assert late[street] == now
    assert early[street] == now - Decimal("30.02")
    assert len(late) == 4  # every account the entry changed
    data = await posted(trade["trade_id"])
    assert data["effective_at"].startswith("2026-11-20T14:31:07")
    assert data["cause_event_type"] == "trade.captured"


async def test_a_rejection_by_compliance_voids_the_pending_entry_once(ledger: Ledger) -> None:
    trade = captured(ledger)
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )
    rejection = ledger.event(
        handlers.TRADE_REJECTED,
        {"trade_id": trade["trade_id"], "account": trade["account"], "version": 1,
         "reason": "restricted list"},
    )  # fmt: skip

    await ledger.deliver(handlers.post_trade_rejection, rejection)
    await ledger.deliver(handlers.post_trade_rejection, rejection)  # a redelivery

    kinds = await ledger.rows(
        "SELECT kind FROM journal_entries WHERE trade_id = :t ORDER BY seq", t=trade["trade_id"]
    )
    assert [k for (k,) in kinds] == ["pending", "reversal"]
    assert await ledger.net(trade_id=trade["trade_id"]) == {}
    reason = await ledger.scalar(
        "SELECT reason FROM trade_cancellations WHERE trade_id = :t", t=trade["trade_id"]
    )
    assert reason == "rejected by compliance: restricted list"
    # A late amendment books nothing for a rejected trade.
    amended = {**captured(ledger, **{k: trade[k] for k in ("trade_id", "account")}), "version": 2,
               "reason": "x", "changed_fields": ["quantity"]}  # fmt: skip
    await ledger.deliver(
        handlers.post_trade_amendment, ledger.event(gateway_contract.TRADE_AMENDED, amended)
    )
    assert await ledger.net(trade_id=trade["trade_id"]) == {}


async def test_a_partial_settlement_settles_the_part_and_keeps_the_rest_pending(
    ledger: Ledger,
) -> None:
    trade = captured(ledger, quantity="100", price="2")
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )
    part = ledger.event(handlers.PARTIALLY_SETTLED, settled(trade, "40", "80"))
    await ledger.deliver(handlers.post_partial_settlement, part)
    await ledger.deliver(handlers.post_partial_settlement, part)  # redelivered: once

    net = await ledger.net(trade_id=trade["trade_id"])
    assert net[(client(trade, "securities"), ISIN)] == 40
    assert net[(client(trade, "securities_pending"), ISIN)] == 60
    assert net[(client(trade, "cash_pending"), "USD")] == -120

    # The settlement in full releases what is still pending, whatever it states.
    await ledger.deliver(
        handlers.post_settlement,
        ledger.event(settlement_contract.SETTLED, settled(trade, "60", "120")),
    )
    net = await ledger.net(trade_id=trade["trade_id"])
    assert {k: v for k, v in net.items() if k[0].endswith("_pending")} == {}
    assert net[(client(trade, "securities"), ISIN)] == 100
    assert net[(client(trade, "cash"), "USD")] == -200


async def test_a_posting_below_an_account_limit_is_refused_into_an_exception(
    ledger: Ledger,
) -> None:
    trade = captured(ledger, quantity="10", price="100")
    account = trade["account"]
    async with ledger.engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO account_limits VALUES (:a, 'USD', 0, 'test', now()), "
                "(:a, :isin, 0, 'test', now())"
            ),
            {"a": account, "isin": ISIN},
        )
    # A sale of securities the client does not hold, and a purchase it cannot pay for.
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )

    assert await ledger.net(trade_id=trade["trade_id"]) == {}
    [(reason, breaches)] = await ledger.rows(
        "SELECT reason, breaches FROM ledger_exceptions WHERE trade_id = :t", t=trade["trade_id"]
    )
    assert "USD position would be -1000" in reason
    assert [b["unit"] for b in breaches] == ["USD"]
    refused = await ledger.scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'ledger.posting_refused' "
        "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t",
        t=trade["trade_id"],
    )
    assert refused == 1

    # It settles anyway (the depository moved it): the books follow, nothing stays pending.
    await ledger.deliver(
        handlers.post_settlement,
        ledger.event(settlement_contract.SETTLED, settled(trade, "10", "1000")),
    )
    net = await ledger.net(trade_id=trade["trade_id"])
    assert {k: v for k, v in net.items() if k[0].endswith("_pending")} == {}
    assert net[(client(trade, "cash"), "USD")] == -1000

    # A sale within the position is booked: the client holds 10 now.
    sale = captured(ledger, account=account, side="SELL", quantity="4", price="100")
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, sale)
    )
    assert await ledger.net(trade_id=sale["trade_id"]) != {}


async def test_the_database_refuses_to_change_or_remove_journal_records(ledger: Ledger) -> None:
    trade = captured(ledger)
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )
    entry_id = await ledger.scalar(
        "SELECT entry_id FROM journal_entries WHERE trade_id = :t", t=trade["trade_id"]
    )
    for statement in (
        "UPDATE journal_lines SET debit = debit + 1 WHERE entry_id = :e",
        "DELETE FROM journal_lines WHERE entry_id = :e",
        "UPDATE journal_entries SET kind = 'settled' WHERE entry_id = :e",
        "DELETE FROM journal_entries WHERE entry_id = :e",
        "TRUNCATE journal_lines CASCADE",
        "TRUNCATE journal_entries CASCADE",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with ledger.engine.begin() as connection:
                await connection.execute(sa.text(statement), {"e": entry_id})


async def _insert_entry(connection: Any, entry_id: str, lines: list[tuple[str, str, str]]) -> None:
    await connection.execute(
        sa.text(
            "INSERT INTO journal_entries (entry_id, trade_id, account, kind, event_id, "
            "posted_at, effective_at, version) "
            "VALUES (:e, :e, 'ACC-bypass', 'pending', 'ev', now(), now(), 1)"
        ),
        {"e": entry_id},
    )
    if lines:
        # One statement for all the lines, as the ledger writes them (the database checks
        # the entry's balance at the end of each statement that adds lines to it).
        await connection.execute(
            sa.text(
                "INSERT INTO journal_lines (entry_id, line_no, ledger_account, unit, debit, "
                "credit, effective_at) SELECT :e, n, a, 'USD', d, c, now() FROM unnest("
                "CAST(:n AS int[]), CAST(:a AS text[]), CAST(:d AS numeric[]), "
                "CAST(:c AS numeric[])) AS x(n, a, d, c)"
            ),
            {
                "e": entry_id,
                "n": list(range(1, len(lines) + 1)),
                "a": [a for a, _, _ in lines],
                "d": [Decimal(d) for _, d, _ in lines],
                "c": [Decimal(c) for _, _, c in lines],
            },
        )


async def test_an_unbalanced_entry_cannot_be_committed_bypassing_the_domain(
    ledger: Ledger,
) -> None:
    unbalanced = [("client:ACC-bypass:cash", "10", "0"), ("street:X:cash", "0", "9.99")]
    with pytest.raises(sa.exc.DBAPIError, match="unbalanced journal entry"):
        async with ledger.engine.begin() as connection:
            await _insert_entry(connection, ledger.fresh("E"), unbalanced)

    # Lines one statement at a time: the first already leaves the entry unbalanced.
    with pytest.raises(sa.exc.DBAPIError, match="unbalanced journal entry"):
        async with ledger.engine.begin() as connection:
            entry_id = ledger.fresh("E")
            await _insert_entry(connection, entry_id, [])
            await connection.execute(
                sa.text(
                    "INSERT INTO journal_lines VALUES "
                    "(:e, 1, 'client:ACC-bypass:cash', 'USD', 10, 0, now())"
                ),
                {"e": entry_id},
            )

    # An entry with no lines at all fails when the transaction commits (deferred).
    with pytest.raises(sa.exc.DBAPIError, match="has no lines"):
        async with ledger.engine.begin() as connection:
            await _insert_entry(connection, ledger.fresh("E"), [])

    # A line added later to a balanced entry unbalances it: refused too.
    entry_id = ledger.fresh("E")
    async with ledger.engine.begin() as connection:
        await _insert_entry(
            connection, entry_id, [("client:ACC-bypass:cash", "5", "0"), ("x:y:cash", "0", "5")]
        )
    with pytest.raises(sa.exc.DBAPIError, match="unbalanced journal entry"):
        async with ledger.engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO journal_lines VALUES "
                    "(:e, 3, 'client:ACC-bypass:cash', 'USD', 1, 0, now())"
                ),
                {"e": entry_id},
            )
    assert (
        await ledger.scalar("SELECT count(*) FROM journal_lines WHERE entry_id = :e", e=entry_id)
        == 2
    )


async def test_as_of_balances_before_between_after_and_with_a_late_posting(
    ledger: Ledger,
) -> None:
    from ledger.api import balances_as_of
    from ledger.domain_accounts import client_account_names

    account = ledger.fresh("ACC")
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    first = captured(ledger, account=account, quantity="10", price="1",
                     trade_time=t0.isoformat())  # fmt: skip
    second = captured(ledger, account=account, quantity="5", price="1",
                      trade_time=(t0 + timedelta(days=2)).isoformat())  # fmt: skip
    late = captured(ledger, account=account, quantity="1", price="1",
                    trade_time=(t0 + timedelta(days=1, hours=3)).isoformat())  # fmt: skip
    names = client_account_names(account)

    async def position(at: datetime) -> Decimal:
        async with ledger.sessions() as session:
            rows = await balances_as_of(session, names, at)
        return sum((b for a, u, b in rows if u == ISIN), Decimal(0))

    for trade in (first, second):
        await ledger.deliver(
            handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
        )
    assert await position(t0 - timedelta(seconds=1)) == 0  # before
    assert await position(t0) == 10  # at the instant: included
    assert await position(t0 + timedelta(days=1, hours=5)) == 10  # between
    assert await position(t0 + timedelta(days=3)) == 15  # after

    # Recorded now, effective between the two: the balances of that past now include it,
    # those before its effective time do not.
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, late)
    )
    assert await position(t0 + timedelta(days=1, hours=2)) == 10
    assert await position(t0 + timedelta(days=1, hours=5)) == 11
    assert await position(t0 + timedelta(days=3)) == 16
    # The daily projection and the lines agree with a full recomputation at every instant.
    for at in (t0, t0 + timedelta(days=1, hours=3), t0 + timedelta(days=5)):
        full = await ledger.scalar(
            "SELECT sum(debit - credit) FROM journal_lines WHERE ledger_account = ANY(:n) "
            "AND unit = :u AND effective_at <= :at",
            n=list(names), u=ISIN, at=at,
        )  # fmt: skip
        assert await position(at) == full


async def test_a_settlement_stating_the_whole_trade_after_parts_settles_what_is_left(
    ledger: Ledger,
) -> None:
    """A netted instruction's confirmation in full states each trade's whole terms, a
    single trade's its last part: both leave the trade settled exactly once."""
    trade = captured(ledger, quantity="100", price="2")
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )
    await ledger.deliver(
        handlers.post_partial_settlement,
        ledger.event(handlers.PARTIALLY_SETTLED, settled(trade, "30", "60")),
    )
    await ledger.deliver(
        handlers.post_settlement,
        ledger.event(settlement_contract.SETTLED, settled(trade, "100", "200")),
    )

    net = await ledger.net(trade_id=trade["trade_id"])
    assert {k: v for k, v in net.items() if k[0].endswith("_pending")} == {}
    assert net[(client(trade, "securities"), ISIN)] == 100
    assert net[(client(trade, "cash"), "USD")] == -200


async def test_a_settlement_stating_its_location_books_the_depository_and_the_custodian(
    ledger: Ledger,
) -> None:
    """The chart gets the location accounts (credit normal), ledger.posted carries their
    balances, and the street keeps nothing once the trade has settled."""
    trade = captured(ledger, quantity="100", price="2")
    safekeeping = ledger.fresh("SAFE")
    where = {"depository": "DTCYUS33", "custodian_bic": "IRVTUS3NXXX",
             "safekeeping_account": safekeeping}  # fmt: skip
    depository = "depository:DTCYUS33:securities"
    custodian = f"custodian:IRVTUS3NXXX/{safekeeping}:cash"
    await ledger.deliver(
        handlers.post_trade_capture, ledger.event(gateway_contract.TRADE_CAPTURED, trade)
    )
    await ledger.deliver(
        handlers.post_partial_settlement,
        ledger.event(handlers.PARTIALLY_SETTLED, settled(trade, "40", "80") | where),
    )
    await ledger.deliver(
        handlers.post_settlement,
        ledger.event(settlement_contract.SETTLED, settled(trade, "60", "120") | where),
    )

    net = await ledger.net(trade_id=trade["trade_id"])
    assert net == {
        (client(trade, "securities"), ISIN): 100,
        (depository, ISIN): -100,
        (client(trade, "cash"), "USD"): -200,
        (custodian, "USD"): 200,
    }
    chart = await ledger.rows(
        "SELECT ledger_account, account_type, normal_side, owner, asset_class, phase "
        "FROM ledger_accounts WHERE ledger_account = ANY(:a) ORDER BY 1",
        a=[depository, custodian],
    )
    assert [tuple(row) for row in chart] == [
        (custodian, "custodian", "credit", f"IRVTUS3NXXX/{safekeeping}", "cash", "settled"),
        (depository, "depository", "credit", "DTCYUS33", "securities", "settled"),
    ]
    [(data,)] = await ledger.rows(
        "SELECT convert_from(payload, 'UTF8')::jsonb -> 'data' FROM outbox "
        "WHERE event_type = 'ledger.posted' "
        "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t "
        "AND convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'kind' = 'settled'",
        t=trade["trade_id"],
    )
    balances = {b["ledger_account"]: Decimal(b["balance"]) for b in data["balances"]}
    assert balances[custodian] == 200
    assert depository in balances
