"""Settlement follows a trade's amendments and cancellation until it has instructed the
trade, and refuses them after (the change goes to the exception queue).

The trades are captured through the gateway; the amendments, cancellations and some
compliance decisions are published here directly on the broker, as the gateway and
compliance would publish them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import COMPLIANCE_EVENTS, TRADE_EVENTS
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, fresh_lei, scalar

pytestmark = pytest.mark.e2e

ACCOUNT = "ACC-001"


@pytest.fixture
async def settlement(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("settlement"), timeout=10, headers=auth(keys["ops"])
    ) as client:
        yield client


async def obligation(db: AsyncEngine, trade_id: str) -> dict[str, Any] | None:
    async with db.connect() as connection:
        row = (
            (
                await connection.execute(
                    sa.text("SELECT * FROM obligations WHERE trade_id = :t"), {"t": trade_id}
                )
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


async def obligation_where(
    db: AsyncEngine, trade_id: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    async def read() -> dict[str, Any] | None:
        row = await obligation(db, trade_id)
        return row if row is not None and check(row) else None

    result: dict[str, Any] = await eventually(read, f"obligation of {trade_id}: {what}")
    return result


async def settlement_events(db: AsyncEngine, trade_id: str, type_: str) -> list[dict[str, Any]]:
    async with db.connect() as connection:
        payloads = (
            await connection.execute(
                sa.text(
                    "SELECT payload FROM outbox WHERE event_type = :type "
                    "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t ORDER BY seq"
                ),
                {"type": type_, "t": trade_id},
            )
        ).scalars()
        return [json.loads(p) for p in payloads]


async def capture(
    gateway: httpx.AsyncClient, keys: dict[str, str], **overrides: str
) -> tuple[str, dict[str, Any]]:
    trade = a_trade(account=ACCOUNT, **overrides)
    response = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    return response.json()["trade_id"], trade


async def publish(producer: AIOKafkaProducer, topic: str, event: Envelope) -> None:
    await producer.send_and_wait(topic, event.to_bytes(), key=ACCOUNT.encode())


def amended(
    trade_id: str, trade: dict[str, Any], version: int, **changes: str
) -> tuple[Envelope, dict[str, Any]]:
    terms = {**trade, **changes}
    data = gateway_contract.TradeAmended(
        trade_id=trade_id,
        desk="DEMO",
        gross_amount=Decimal(terms["quantity"]) * Decimal(terms["price"]),
        version=version,
        reason="booked with the wrong terms",
        changed_fields=sorted(changes),
        **terms,
    ).model_dump(mode="json")
    event = new_event(
        type=gateway_contract.TRADE_AMENDED,
        source="gateway",
        subject=trade_id,
        correlation_id=trade_id,
        actor="key:test-trader",
        data=data,
    )
    return event, terms


def cancelled(trade_id: str, trade: dict[str, Any], version: int) -> Envelope:
    return new_event(
        type=gateway_contract.TRADE_CANCELLED,
        source="gateway",
        subject=trade_id,
        correlation_id=trade_id,
        actor="key:test-trader",
        data=gateway_contract.TradeCancelled(
            trade_id=trade_id,
            client_trade_id=trade["client_trade_id"],
            account=ACCOUNT,
            desk="DEMO",
            version=version,
            reason="booked twice",
        ).model_dump(mode="json"),
    )


def decision(
    trade_id: str, version: int, type_: str = compliance_contract.TRADE_CLEARED
) -> Envelope:
    return new_event(
        type=type_,
        source="compliance_monitor",
        subject=trade_id,
        correlation_id=trade_id,
        actor="service:compliance_monitor",
        data=compliance_contract.TradeEvaluated(
            trade_id=trade_id, account=ACCOUNT, outcomes=[], version=version
        ).model_dump(mode="json"),
    )


async def add_ssi(settlement: httpx.AsyncClient, lei: str, market: str) -> None:
    depository, bic = {"US": ("DTC", "IRVTUS3NXXX"), "UK": ("CREST", "CITIGB2LXXX")}[market]
    response = await settlement.post(
        "/v1/ssis",
        json={
            "counterparty_lei": lei,
            "market": market,
            "depository": depository,
            "custodian_bic": bic,
            "safekeeping_account": f"SAFE-{market}-T",
            "cash_account": f"CASH-{market}-T",
            "effective_from": "2020-01-01",
        },
    )
    assert response.status_code == 201, response.text


async def decision_recorded(db: AsyncEngine, trade_id: str, version: int, at: datetime) -> None:
    async def recorded() -> bool:
        decided_at = await scalar(
            db,
            "SELECT decided_at FROM compliance_decisions WHERE trade_id = :t AND version = :v",
            t=trade_id,
            v=version,
        )
        return decided_at is not None and decided_at >= at

    await eventually(recorded, f"decision on version {version} of {trade_id} recorded")


async def test_an_amendment_before_instruction_recomputes_the_obligation_at_version_2(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    lei = fresh_lei()
    trade_id, trade = await capture(gateway, keys, counterparty_lei=lei)
    before = await obligation_where(
        db, trade_id, lambda o: o["state"] == "needs_ssi", "waits for an SSI"
    )
    assert (before["version"], before["market"], before["cycle_days"]) == (1, "US", 1)

    # A sale in London on Christmas Eve 2024: T+2 skips Christmas, Boxing Day and the weekend.
    event, _ = amended(
        trade_id,
        trade,
        2,
        side="SELL",
        isin="GB0002634946",
        currency="GBP",
        venue="XLON",
        quantity="50",
        price="200",
        trade_date="2024-12-24",
        trade_time="2024-12-24T10:00:00Z",
    )
    await publish(producer, TRADE_EVENTS, event)

    after = await obligation_where(db, trade_id, lambda o: o["version"] == 2, "at version 2")
    assert after["obligation_id"] == before["obligation_id"]
    assert (after["side"], after["isin"], after["currency"]) == ("SELL", "GB0002634946", "GBP")
    assert (after["quantity"], after["amount"]) == (Decimal("50"), Decimal("10000"))
    assert (after["market"], after["cycle_days"]) == ("UK", 2)
    assert str(after["trade_date"]) == "2024-12-24"
    assert str(after["settlement_date"]) == "2024-12-30"
    assert after["instruction_id"] is None
    # The clearance of version 1 does not cover version 2: it waits for compliance again
    # (needs_ssi once compliance has cleared version 2 too).
    assert after["state"] in ("awaiting_compliance", "needs_ssi", "held")
    [published] = await settlement_events(db, trade_id, "settlement.obligation_amended")
    assert published["data"]["version"] == 2
    assert published["data"]["settlement_date"] == "2024-12-30"
    assert published["causation_id"] == str(event.id)
    listed = (await settlement.get("/v1/obligations", params={"trade_id": trade_id})).json()
    assert (listed[0]["version"], listed[0]["settlement_date"]) == (2, "2024-12-30")

    # Redelivered (same id) or published twice (new id): nothing more happens.
    await publish(producer, TRADE_EVENTS, event)
    again, _ = amended(trade_id, trade, 2, quantity="70", price="200")
    await publish(producer, TRADE_EVENTS, again)

    # Compliance clears version 2 and an SSI for London arrives: the new terms are instructed.
    await publish(producer, COMPLIANCE_EVENTS, decision(trade_id, 2))
    await add_ssi(settlement, lei, "UK")
    done = await obligation_where(
        db, trade_id, lambda o: o["instruction_id"] is not None, "instructed"
    )
    assert (done["version"], done["quantity"]) == (2, Decimal("50"))
    instruction = (await settlement.get(f"/v1/instructions/{done['instruction_id']}")).json()
    assert instruction["direction"] == "DELIVER"
    assert (Decimal(instruction["quantity"]), Decimal(instruction["amount"])) == (
        Decimal("50"),
        Decimal("10000"),
    )
    assert (instruction["settlement_date"], instruction["depository"]) == ("2024-12-30", "CREST")
    assert len(await settlement_events(db, trade_id, "settlement.obligation_amended")) == 1


async def test_a_stale_compliance_decision_does_not_release_an_amended_trade(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    lei = fresh_lei()
    trade_id, trade = await capture(gateway, keys, counterparty_lei=lei)
    await obligation_where(db, trade_id, lambda o: o["state"] == "needs_ssi", "cleared v1")

    # Version 2 is over the notional limit: compliance, re-evaluating it, would hold it.
    event, _ = amended(trade_id, trade, 2, quantity="1000000", price="20")
    await publish(producer, TRADE_EVENTS, event)
    await obligation_where(db, trade_id, lambda o: o["version"] == 2, "at version 2")

    # A clearance of version 1 arriving now (late, or redelivered) and then an SSI.
    stale = decision(trade_id, 1)
    await publish(producer, COMPLIANCE_EVENTS, stale)
    await decision_recorded(db, trade_id, 1, stale.time)
    await add_ssi(settlement, lei, "US")
    await asyncio.sleep(1.5)

    row = await obligation(db, trade_id)
    assert row is not None
    assert row["state"] in ("awaiting_compliance", "held"), row
    assert row["instruction_id"] is None
    assert not await settlement_events(db, trade_id, "settlement.instructed")

    # Compliance releases version 2: now it is instructed, with the amended quantity.
    await publish(producer, COMPLIANCE_EVENTS, decision(trade_id, 2, "compliance.trade_released"))
    done = await obligation_where(
        db, trade_id, lambda o: o["instruction_id"] is not None, "instructed"
    )
    assert (done["version"], done["quantity"]) == (2, Decimal("1000000"))


async def test_a_cancelled_obligation_is_never_instructed(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    lei = fresh_lei()
    trade_id, trade = await capture(gateway, keys, counterparty_lei=lei)
    await obligation_where(db, trade_id, lambda o: o["state"] == "needs_ssi", "waits for SSI")

    cancel = cancelled(trade_id, trade, 1)
    await publish(producer, TRADE_EVENTS, cancel)
    row = await obligation_where(db, trade_id, lambda o: o["state"] == "cancelled", "cancelled")
    assert row["cancel_reason"] == "booked twice"
    assert row["cancelled_at"] is not None
    [published] = await settlement_events(db, trade_id, "settlement.obligation_cancelled")
    assert published["data"] == {
        "trade_id": trade_id,
        "obligation_id": row["obligation_id"],
        "account": ACCOUNT,
        "version": 1,
        "reason": "booked twice",
    }

    # Afterwards: the cancellation again, an amendment, a clearance and an SSI. Nothing moves.
    await publish(producer, TRADE_EVENTS, cancel)
    await publish(producer, TRADE_EVENTS, cancelled(trade_id, trade, 1))
    late_amendment, _ = amended(trade_id, trade, 2, quantity="10")
    await publish(producer, TRADE_EVENTS, late_amendment)
    clearance = decision(trade_id, 1)
    await publish(producer, COMPLIANCE_EVENTS, clearance)
    await decision_recorded(db, trade_id, 1, clearance.time)
    await add_ssi(settlement, lei, "US")
    await asyncio.sleep(1.5)

    final = await obligation(db, trade_id)
    assert final is not None
    assert (final["state"], final["version"], final["quantity"]) == (
        "cancelled",
        1,
        Decimal("100"),
    )
    assert final["instruction_id"] is None
    assert not await settlement_events(db, trade_id, "settlement.instructed")
    assert len(await settlement_events(db, trade_id, "settlement.obligation_cancelled")) == 1
    exceptions = (await settlement.get("/v1/exceptions")).json()
    assert trade_id not in {e["trade_id"] for e in exceptions}


async def test_a_change_after_instruction_is_refused_and_queued_for_operations(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    trade_id, trade = await capture(gateway, keys)  # the demo counterparty has an SSI
    instructed = await obligation_where(
        db, trade_id, lambda o: o["instruction_id"] is not None, "instructed"
    )
    instruction_id = instructed["instruction_id"]

    amendment, _ = amended(trade_id, trade, 2, quantity="300")
    await publish(producer, TRADE_EVENTS, amendment)
    await publish(producer, TRADE_EVENTS, cancelled(trade_id, trade, 1))

    async def both_refused() -> list[dict[str, Any]] | None:
        events = await settlement_events(db, trade_id, "settlement.change_refused")
        return events if len(events) >= 2 else None

    refused = await eventually(both_refused, "both changes refused")
    assert [e["data"]["change"] for e in refused] == ["amend", "cancel"]
    assert [e["data"]["version"] for e in refused] == [2, 1]
    assert all(instruction_id in e["data"]["reason"] for e in refused)

    row = await obligation(db, trade_id)
    assert row is not None
    assert (row["version"], row["quantity"], row["instruction_id"]) == (
        1,
        Decimal("100"),
        instruction_id,
    )
    assert row["state"] != "cancelled"
    assert row["cancelled_at"] is None

    exceptions = [
        e for e in (await settlement.get("/v1/exceptions")).json() if e["trade_id"] == trade_id
    ]
    assert sorted((e["kind"], e["change"], e["change_version"]) for e in exceptions) == [
        ("change_refused", "amend", 2),
        ("change_refused", "cancel", 1),
    ]
    assert all(instruction_id in e["reason"] for e in exceptions)
    assert all(e["instruction_id"] == instruction_id for e in exceptions)

    # The same amendment again (a new event id): still one refusal of it.
    duplicate, _ = amended(trade_id, trade, 2, quantity="300")
    await publish(producer, TRADE_EVENTS, duplicate)
    marker = decision(trade_id, 1, compliance_contract.TRADE_CLEARED)
    await publish(producer, COMPLIANCE_EVENTS, marker)
    await decision_recorded(db, trade_id, 1, marker.time)
    await asyncio.sleep(0.5)
    assert len(await settlement_events(db, trade_id, "settlement.change_refused")) == 2

    # Operations deal with it; the refusal leaves the queue.
    amend_refusal = next(e for e in exceptions if e["change"] == "amend")
    resolved = await settlement.post(
        f"/v1/exceptions/{amend_refusal['exception_id']}/resolve",
        json={"resolution": "unwound at the depository, rebooked as a new trade"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_by"] == "key:dev-ops"
    left = {
        (e["change"], e["trade_id"])
        for e in (await settlement.get("/v1/exceptions")).json()
        if e["trade_id"] == trade_id
    }
    assert left == {("cancel", trade_id)}
    trader = await settlement.get("/v1/exceptions", headers=auth(keys["trader"]))
    assert trader.status_code == 403


async def test_changes_that_arrive_before_the_trade_do_not_crash_settlement(
    settlement: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    databases: dict[str, AsyncEngine],
) -> None:
    """Out of order (it cannot happen on one partition, but a replayed dead letter can):
    an amendment makes the obligation from its terms; a cancellation is remembered and the
    capture that follows it is cancelled at once."""
    db = databases["settlement"]
    now = datetime.now(UTC)
    base = a_trade(account=ACCOUNT, counterparty_lei=fresh_lei())

    early_amended = f"T-early-amend-{uuid.uuid4().hex[:8]}"
    event, _ = amended(early_amended, base, 3, quantity="40")
    await publish(producer, TRADE_EVENTS, event)
    row = await obligation_where(db, early_amended, lambda o: o["version"] == 3, "created")
    assert (row["quantity"], row["instruction_id"]) == (Decimal("40"), None)

    early_cancelled = f"T-early-cancel-{uuid.uuid4().hex[:8]}"
    await publish(producer, TRADE_EVENTS, cancelled(early_cancelled, base, 1))
    await eventually(
        lambda: scalar(db, "SELECT 1 FROM cancellations WHERE trade_id = :t", t=early_cancelled),
        "cancellation recorded",
    )
    captured = new_event(
        type=gateway_contract.TRADE_CAPTURED,
        source="gateway",
        subject=early_cancelled,
        actor="key:test-trader",
        time=now,
        data=gateway_contract.TradeCaptured(
            trade_id=early_cancelled,
            desk="DEMO",
            gross_amount=Decimal("18925"),
            **base,
        ).model_dump(mode="json"),
    )
    await publish(producer, TRADE_EVENTS, captured)
    row = await obligation_where(
        db, early_cancelled, lambda o: o["state"] == "cancelled", "cancelled on capture"
    )
    assert row["instruction_id"] is None
    listed = (await settlement.get("/v1/obligations", params={"trade_id": early_cancelled})).json()
    assert listed[0]["cancel_reason"] == "booked twice"
