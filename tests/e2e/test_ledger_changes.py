"""The ledger books an amendment as a reversal of the pending entry plus a pending entry
for the new terms, and a cancellation as a reversal alone; a settled trade keeps its books;
a repeated or stale change books nothing.

The gateway's amend and cancel routes are not used: the test captures a trade through the
gateway and then publishes trade.amended / trade.cancelled itself, as the gateway would
(on trade.events, keyed by account)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import COMPLIANCE_EVENTS, TRADE_EVENTS
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, scalar

pytestmark = pytest.mark.e2e

# Over the 10,000,000 USD notional limit: compliance holds the trade, so it is never
# instructed and stays pending in the ledger while the test changes it.
HELD = {"quantity": "1000000", "price": "20"}
AMENDED = {"quantity": "1200000", "price": "21"}
ISIN = "US0378331005"
LEI = "784F5XWPLTWKTBV3E584"

Net = dict[tuple[str, str], Decimal]


@pytest.fixture
async def ledger(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("ledger"), timeout=10, headers=auth(keys["compliance"])
    ) as client:
        yield client


async def capture(stack: Stack, keys: dict[str, str], **overrides: str) -> dict[str, Any]:
    """Post a trade to the gateway; the trade as the gateway published it (trade.captured)."""
    body = a_trade(**overrides)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as gateway:
        response = await gateway.post("/v1/trades", json=body, headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    return {
        **body,
        "trade_id": response.json()["trade_id"],
        "desk": "DEMO",
        "gross_amount": str(Decimal(body["quantity"]) * Decimal(body["price"])),
        "version": 1,
    }


def amended(trade: dict[str, Any], version: int, **changes: str) -> Envelope:
    terms = {**trade, **changes}
    terms["gross_amount"] = str(Decimal(terms["quantity"]) * Decimal(terms["price"]))
    data = contract.TradeAmended(
        **{**terms, "version": version}, reason="test amendment", changed_fields=sorted(changes)
    )
    return _event(contract.TRADE_AMENDED, trade, data.model_dump(mode="json"))


def cancelled(trade: dict[str, Any], version: int) -> Envelope:
    data = contract.TradeCancelled(
        trade_id=trade["trade_id"],
        client_trade_id=trade["client_trade_id"],
        account=trade["account"],
        desk=trade["desk"],
        version=version,
        reason="test cancellation",
    )
    return _event(contract.TRADE_CANCELLED, trade, data.model_dump(mode="json"))


def _event(type_: str, trade: dict[str, Any], data: dict[str, Any]) -> Envelope:
    return new_event(
        type=type_,
        source="gateway",
        subject=trade["trade_id"],
        correlation_id=trade["trade_id"],
        actor="test:ledger-changes",
        data=data,
    )


async def publish(producer: AIOKafkaProducer, *events: Envelope) -> None:
    """In order, on the trade's partition, as the gateway's outbox relay would."""
    for event in events:
        await producer.send_and_wait(
            TRADE_EVENTS, event.to_bytes(), key=str(event.data["account"]).encode()
        )


async def wait_applied(databases: dict[str, AsyncEngine], event: Envelope) -> None:
    """Until the ledger has recorded the event in its inbox (applied or found to be a no-op):
    everything published before it on the same partition has been handled too."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await scalar(
            databases["ledger"], "SELECT count(*) FROM inbox WHERE event_id = :id", id=event.id
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the ledger did not apply {event.type} {event.id}")


async def wait_journal(
    ledger: httpx.AsyncClient, trade_id: str, kinds: list[str], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Until the trade's journal holds entries of these kinds, in this order. The bounds are
    generous: earlier tests of the session may leave the consumers a backlog."""
    deadline = time.monotonic() + timeout_s
    journal: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = await ledger.get("/v1/journal", params={"trade_id": trade_id})
        assert response.status_code == 200, response.text
        journal = response.json()
        if [e["kind"] for e in journal] == kinds:
            return journal
        await asyncio.sleep(0.1)
    raise AssertionError(f"journal of {trade_id} is {[e['kind'] for e in journal]}, not {kinds}")


def net(*entries: dict[str, Any]) -> Net:
    totals: Net = {}
    for entry in entries:
        for line in entry["lines"]:
            key = (line["ledger_account"], line["unit"])
            totals[key] = (
                totals.get(key, Decimal(0)) + Decimal(line["debit"]) - Decimal(line["credit"])
            )
    return {key: total for key, total in totals.items() if total != 0}


def pending_net(account: str, quantity: str, price: str) -> Net:
    """What a pending BUY of `quantity` at `price` owes each way."""
    amount = Decimal(quantity) * Decimal(price)
    return {
        (f"client:{account}:securities_pending", ISIN): Decimal(quantity),
        (f"street:{LEI}:securities_pending", ISIN): -Decimal(quantity),
        (f"street:{LEI}:cash_pending", "USD"): amount,
        (f"client:{account}:cash_pending", "USD"): -amount,
    }


def assert_balanced(entry: dict[str, Any]) -> None:
    by_unit: dict[str, Decimal] = {}
    for line in entry["lines"]:
        by_unit[line["unit"]] = (
            by_unit.get(line["unit"], Decimal(0)) + Decimal(line["debit"]) - Decimal(line["credit"])
        )
    assert all(total == 0 for total in by_unit.values()), entry


def assert_reverses(reversal: dict[str, Any], entry: dict[str, Any]) -> None:
    assert reversal["kind"] == "reversal"
    assert reversal["reverses"] == entry["entry_id"]
    assert reversal["version"] == entry["version"]
    assert [
        (x["ledger_account"], x["unit"], x["debit"], x["credit"]) for x in reversal["lines"]
    ] == [(x["ledger_account"], x["unit"], x["credit"], x["debit"]) for x in entry["lines"]]
    assert_balanced(reversal)


async def net_in_database(databases: dict[str, AsyncEngine], trade_id: str) -> Net:
    async with databases["ledger"].connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT l.ledger_account, l.unit, sum(l.debit - l.credit) "
                "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
                "WHERE e.trade_id = :t GROUP BY 1, 2 HAVING sum(l.debit - l.credit) <> 0"
            ),
            {"t": trade_id},
        )
        return {(account, unit): total for account, unit, total in rows}


async def posted_events(databases: dict[str, AsyncEngine], trade_id: str) -> list[dict[str, Any]]:
    """The ledger.posted events the ledger has put in its outbox for the trade."""
    async with databases["ledger"].connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT payload FROM outbox WHERE event_type = 'ledger.posted' "
                "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t ORDER BY seq"
            ),
            {"t": trade_id},
        )
        return [Envelope.from_bytes(payload).data for (payload,) in rows]


async def assert_trial_balance(ledger: httpx.AsyncClient) -> None:
    trial = (await ledger.get("/v1/trial-balance")).json()
    assert trial["balanced"] is True, trial["totals_by_unit"]


async def test_an_amendment_reverses_the_pending_entry_and_books_the_amended_terms(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    trade = await capture(stack, keys, **HELD)
    trade_id = trade["trade_id"]
    [pending] = await wait_journal(ledger, trade_id, ["pending"])
    assert pending["version"] == 1 and pending["reverses"] is None

    amendment = amended(trade, 2, **AMENDED)
    await publish(producer, amendment)

    journal = await wait_journal(ledger, trade_id, ["pending", "reversal", "pending"])
    assert journal[0] == pending, "the original entry is never edited"
    reversal, rebooked = journal[1], journal[2]
    assert_reverses(reversal, pending)
    assert (rebooked["version"], rebooked["reverses"]) == (2, None)
    assert_balanced(rebooked)
    assert net(*journal) == net(rebooked) == pending_net(trade["account"], **AMENDED)
    assert await net_in_database(databases, trade_id) == pending_net(trade["account"], **AMENDED)
    posted = await posted_events(databases, trade_id)
    assert [(p["kind"], p["version"], p["reverses"]) for p in posted] == [
        ("pending", 1, None),
        ("reversal", 1, pending["entry_id"]),
        ("pending", 2, None),
    ]

    # The same event again, and another amendment at the version booked: nothing is booked
    # and nothing is published.
    same_version = amended(trade, 2, quantity="1300000", price="22")
    await publish(producer, amendment, same_version)
    await wait_applied(databases, same_version)

    assert await wait_journal(ledger, trade_id, ["pending", "reversal", "pending"]) == journal
    assert len(await posted_events(databases, trade_id)) == 3
    assert await net_in_database(databases, trade_id) == pending_net(trade["account"], **AMENDED)
    await assert_trial_balance(ledger)


async def test_a_cancellation_reverses_the_pending_entry_and_the_trade_nets_to_zero(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    trade = await capture(stack, keys, **HELD)
    trade_id = trade["trade_id"]
    await wait_journal(ledger, trade_id, ["pending"])
    amendment = amended(trade, 2, **AMENDED)
    cancellation = cancelled(trade, 2)

    await publish(producer, amendment, cancellation)

    journal = await wait_journal(ledger, trade_id, ["pending", "reversal", "pending", "reversal"])
    assert_reverses(journal[1], journal[0])
    assert_reverses(journal[3], journal[2])
    assert net(*journal) == {}
    assert await net_in_database(databases, trade_id) == {}
    assert (
        await scalar(
            databases["ledger"],
            "SELECT version FROM trade_cancellations WHERE trade_id = :t",
            t=trade_id,
        )
        == 2
    )

    # The cancellation again (same event, and a second one), then an amendment after it:
    # nothing is reversed twice and nothing is booked for a cancelled trade.
    second = cancelled(trade, 2)
    late_amendment = amended(trade, 3, quantity="1500000")
    await publish(producer, cancellation, second, late_amendment)
    await wait_applied(databases, late_amendment)

    assert await wait_journal(ledger, trade_id, [e["kind"] for e in journal]) == journal
    assert len(await posted_events(databases, trade_id)) == 4
    assert await net_in_database(databases, trade_id) == {}
    await assert_trial_balance(ledger)


async def test_a_capture_then_a_cancellation_leaves_no_balance_on_any_account(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    trade = await capture(stack, keys, **HELD)
    trade_id = trade["trade_id"]
    [pending] = await wait_journal(ledger, trade_id, ["pending"])

    await publish(producer, cancelled(trade, 1))

    pending_again, reversal = await wait_journal(ledger, trade_id, ["pending", "reversal"])
    assert pending_again == pending
    assert_reverses(reversal, pending)
    assert net(pending, reversal) == {}
    assert await net_in_database(databases, trade_id) == {}


async def test_a_settled_trade_keeps_its_books_when_a_change_arrives(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    trade = await capture(stack, keys)
    trade_id = trade["trade_id"]
    journal = await wait_journal(ledger, trade_id, ["pending", "settled"], timeout_s=120)
    net_before = await net_in_database(databases, trade_id)
    assert all(total == 0 for (a, _), total in net_before.items() if a.endswith("_pending"))

    amendment = amended(trade, 2, quantity="150")
    cancellation = cancelled(trade, 2)
    await publish(producer, amendment, cancellation)
    await wait_applied(databases, cancellation)

    assert await wait_journal(ledger, trade_id, ["pending", "settled"]) == journal
    assert await net_in_database(databases, trade_id) == net_before
    assert len(await posted_events(databases, trade_id)) == 2
    assert (
        await scalar(
            databases["ledger"],
            "SELECT count(*) FROM trade_cancellations WHERE trade_id = :t",
            t=trade_id,
        )
        == 0
    )


async def test_the_journal_refuses_to_change_a_reversal(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    trade = await capture(stack, keys, **HELD)
    await wait_journal(ledger, trade["trade_id"], ["pending"])
    await publish(producer, cancelled(trade, 1))
    _, reversal = await wait_journal(ledger, trade["trade_id"], ["pending", "reversal"])

    for statement in (
        "UPDATE journal_entries SET reverses = NULL, kind = 'pending' WHERE entry_id = :e",
        "DELETE FROM journal_lines WHERE entry_id = :e",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with databases["ledger"].begin() as connection:
                await connection.execute(sa.text(statement), {"e": reversal["entry_id"]})
    # A second reversal of the same entry is refused by the database too.
    with pytest.raises(sa.exc.IntegrityError):
        async with databases["ledger"].begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO journal_entries (entry_id, trade_id, account, kind, event_id, "
                    "posted_at, version, reverses) VALUES (:id, :t, :a, 'reversal', :ev, now(), "
                    "1, :r)"
                ),
                {
                    "id": str(uuid.uuid4()),
                    "t": trade["trade_id"],
                    "a": trade["account"],
                    "ev": str(uuid.uuid4()),
                    "r": reversal["reverses"],
                },
            )


async def test_a_rejection_by_compliance_voids_the_pending_entry_once(
    stack: Stack,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    producer: AIOKafkaProducer,
    ledger: httpx.AsyncClient,
) -> None:
    """compliance.trade_rejected (two officers rejected a held trade) cancels the trade
    downstream: the ledger voids its pending entry as for a cancellation, once."""
    trade = await capture(stack, keys, **HELD)
    trade_id = trade["trade_id"]
    [pending] = await wait_journal(ledger, trade_id, ["pending"])
    rejection = new_event(
        type=compliance_contract.TRADE_REJECTED,
        source="compliance_monitor",
        subject=trade_id,
        correlation_id=trade_id,
        actor="test:ledger-changes",
        data=compliance_contract.HoldDecided(
            trade_id=trade_id,
            account=trade["account"],
            version=1,
            reason="rejected by two officers",
            proposed_by="key:officer-1",
            proposal_reason="sanctioned counterparty",
            approved_by="key:officer-2",
            approval_reason="agreed",
        ).model_dump(mode="json"),
    )

    for _ in range(2):  # delivered twice: voided once
        await producer.send_and_wait(
            COMPLIANCE_EVENTS, rejection.to_bytes(), key=trade["account"].encode()
        )
    await wait_applied(databases, rejection)

    journal = await wait_journal(ledger, trade_id, ["pending", "reversal"])
    assert journal[0] == pending
    assert_reverses(journal[1], pending)
    assert journal[1]["event_id"] == str(rejection.id)
    assert journal[1]["event_type"] == "compliance.trade_rejected"
    assert await net_in_database(databases, trade_id) == {}
    assert [p["kind"] for p in await posted_events(databases, trade_id)] == [
        "pending",
        "reversal",
    ]
    # A later amendment books nothing for the rejected trade.
    late_amendment = amended(trade, 2, **AMENDED)
    await publish(producer, late_amendment)
    await wait_applied(databases, late_amendment)
    assert await net_in_database(databases, trade_id) == {}
    await assert_trial_balance(ledger)
