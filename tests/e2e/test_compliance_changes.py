"""Compliance follows a trade's versions: an amendment is evaluated again (held or cleared,
with its version), a newer version supersedes an older hold, a cancellation closes the hold,
and a redelivered or stale amendment changes nothing.

The gateway's amend and cancel routes are not used: the test publishes the trade.amended and
trade.cancelled events the gateway would, on trade.events keyed by the account."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import COMPLIANCE_EVENTS, TRADE_EVENTS
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth

pytestmark = pytest.mark.e2e

# No SSI in any market: the trade waits in settlement's exceptions and is never settled, so
# it stays amendable, as the gateway requires.
NO_SSI_LEI = "W22LROWP2IHZNBB6K528"
ACCOUNT = "ACC-004"
OVER_THE_LIMIT = "100000"  # x 189.25 = 18,925,000 USD > the 10,000,000 USD limit
WITHIN_THE_LIMIT = "200"  # x 189.25 = 37,850 USD
DECISIONS = {compliance_contract.TRADE_CLEARED, compliance_contract.TRADE_HELD}


class Events:
    """Every envelope on trade.events and compliance.events, read from the beginning."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.seen: list[Envelope] = []

    async def _read(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=100)
        for records in batches.values():
            for record in records:
                # Other tests put malformed messages on trade.events.
                with contextlib.suppress(ValueError):
                    self.seen.append(Envelope.from_bytes(record.value))

    def about(self, trade_id: str, types: set[str] | None = None) -> list[Envelope]:
        return [
            e for e in self.seen if e.subject == trade_id and (types is None or e.type in types)
        ]

    async def wait_for(self, what: str, found: Callable[[], Any], timeout_s: float = 15) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self._read()
            result = found()
            if result:
                return result
        raise AssertionError(f"timed out waiting for {what}")

    async def settle(self, quiet_s: float = 1.0) -> None:
        """Read for a while longer: what is published late would be seen."""
        deadline = time.monotonic() + quiet_s
        while time.monotonic() < deadline:
            await self._read()


@pytest.fixture
async def events(stack: Stack) -> AsyncIterator[Events]:
    consumer = AIOKafkaConsumer(
        TRADE_EVENTS,
        COMPLIANCE_EVENTS,
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        yield Events(consumer)
    finally:
        await consumer.stop()


@pytest.fixture
async def compliance(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("compliance_monitor"), timeout=10, headers=auth(keys["compliance"])
    ) as client:
        yield client


async def capture(
    gateway: httpx.AsyncClient, keys: dict[str, str], events: Events, **overrides: str
) -> gateway_contract.TradeCaptured:
    """Post a trade through the gateway; its trade.captured event as published."""
    body = a_trade(account=ACCOUNT, counterparty_lei=NO_SSI_LEI, **overrides)
    response = await gateway.post("/v1/trades", json=body, headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]
    [captured] = await events.wait_for(
        f"trade.captured of {trade_id}",
        lambda: events.about(trade_id, {gateway_contract.TRADE_CAPTURED}),
    )
    return gateway_contract.TradeCaptured.model_validate(captured.data)


def amendment(trade: gateway_contract.TradeCaptured, version: int, quantity: str) -> Envelope:
    terms = trade.model_dump()
    terms.update(
        version=version,
        quantity=Decimal(quantity),
        gross_amount=Decimal(quantity) * trade.price,
        reason=f"amendment {version}: quantity {quantity}",
        changed_fields=["quantity"],
    )
    return new_event(
        type=gateway_contract.TRADE_AMENDED,
        version=gateway_contract.TRADE_AMENDED_VERSION,
        source="gateway",
        subject=trade.trade_id,
        correlation_id=trade.trade_id,
        actor="test:compliance_changes",
        data=gateway_contract.TradeAmended.model_validate(terms).model_dump(mode="json"),
    )


def cancellation(trade: gateway_contract.TradeCaptured, version: int) -> Envelope:
    return new_event(
        type=gateway_contract.TRADE_CANCELLED,
        version=gateway_contract.TRADE_CANCELLED_VERSION,
        source="gateway",
        subject=trade.trade_id,
        correlation_id=trade.trade_id,
        actor="test:compliance_changes",
        data=gateway_contract.TradeCancelled(
            trade_id=trade.trade_id,
            client_trade_id=trade.client_trade_id,
            account=trade.account,
            desk=trade.desk,
            version=version,
            reason="booked in error",
        ).model_dump(mode="json"),
    )


async def publish(producer: AIOKafkaProducer, event: Envelope) -> None:
    await producer.send_and_wait(
        TRADE_EVENTS, event.to_bytes(), key=str(event.data["account"]).encode()
    )


def decisions(events: Events, trade_id: str) -> list[tuple[str, int]]:
    return [
        (e.type.removeprefix("compliance.trade_"), int(e.data["version"]))
        for e in events.about(trade_id, DECISIONS)
    ]


async def wait_for_decision(events: Events, trade_id: str, version: int) -> tuple[str, int]:
    return await events.wait_for(  # type: ignore[no-any-return]
        f"the decision on version {version} of {trade_id}",
        lambda: next((d for d in decisions(events, trade_id) if d[1] == version), None),
    )


async def get(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def blocking_alerts(client: httpx.AsyncClient, trade_id: str) -> list[dict[str, Any]]:
    """The trade's alerts from rules that hold (others, such as large-trade, may be raised
    alongside)."""
    page = await get(client, "/v1/alerts", trade_id=trade_id, blocking="true")
    return page["items"]  # type: ignore[no-any-return]


async def poll(
    client: httpx.AsyncClient, path: str, until: Callable[[Any], bool], **params: str
) -> Any:
    deadline = time.monotonic() + 15
    while True:
        body = await get(client, path, **params)
        if until(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_an_amendment_over_the_limit_is_held_and_one_back_within_it_clears_the_trade(
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    events: Events,
    producer: AIOKafkaProducer,
    compliance: httpx.AsyncClient,
) -> None:
    trade = await capture(gateway, keys, events)
    assert await wait_for_decision(events, trade.trade_id, 1) == ("cleared", 1)

    await publish(producer, amendment(trade, 2, OVER_THE_LIMIT))

    assert await wait_for_decision(events, trade.trade_id, 2) == ("held", 2)
    evaluation = await get(compliance, f"/v1/evaluations/{trade.trade_id}")
    assert (evaluation["version"], evaluation["outcome"]) == (2, "held")
    alerts = await blocking_alerts(compliance, trade.trade_id)
    assert [(a["rule"], a["version"], a["state"]) for a in alerts] == [
        ("notional-limit", 2, "open")
    ]
    assert "18925000" in alerts[0]["detail"]
    raised = events.about(trade.trade_id, {compliance_contract.ALERT_RAISED})
    assert alerts[0]["alert_id"] in [e.data["alert_id"] for e in raised]
    holds = await get(compliance, "/v1/holds", trade_id=trade.trade_id)
    assert [(h["version"], h["state"], h["rules"]) for h in holds] == [
        (2, "open", ["notional-limit"])
    ]

    await publish(producer, amendment(trade, 3, WITHIN_THE_LIMIT))

    assert await wait_for_decision(events, trade.trade_id, 3) == ("cleared", 3)
    holds = await get(compliance, "/v1/holds", trade_id=trade.trade_id)
    assert [(h["version"], h["state"], h["close_reason"]) for h in holds] == [
        (2, "closed", "superseded by amendment 3")
    ]
    # The alert of version 2 stays open: an analyst closes it.
    alerts = await blocking_alerts(compliance, trade.trade_id)
    assert [(a["version"], a["state"]) for a in alerts] == [(2, "open")]
    history = await get(compliance, f"/v1/evaluations/{trade.trade_id}/versions")
    assert [(e["version"], e["outcome"]) for e in history] == [
        (1, "cleared"),
        (2, "held"),
        (3, "cleared"),
    ]
    first = await get(compliance, f"/v1/evaluations/{trade.trade_id}", version="1")
    assert (first["version"], first["outcome"]) == (1, "cleared")
    await events.settle()
    assert decisions(events, trade.trade_id) == [("cleared", 1), ("held", 2), ("cleared", 3)]


async def test_a_cancellation_closes_the_hold_and_a_later_amendment_is_ignored(
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    events: Events,
    producer: AIOKafkaProducer,
    compliance: httpx.AsyncClient,
) -> None:
    trade = await capture(gateway, keys, events)
    await wait_for_decision(events, trade.trade_id, 1)
    await publish(producer, amendment(trade, 2, OVER_THE_LIMIT))
    assert await wait_for_decision(events, trade.trade_id, 2) == ("held", 2)

    await publish(producer, cancellation(trade, 2))

    holds = await poll(
        compliance,
        "/v1/holds",
        until=lambda holds: bool(holds) and holds[0]["state"] == "closed",
        trade_id=trade.trade_id,
    )
    assert [(h["version"], h["state"], h["close_reason"]) for h in holds] == [
        (2, "closed", "trade cancelled")
    ]

    # An amendment after the cancellation (it cannot come from the gateway, but a replay
    # could) decides nothing, opens no hold and raises no alert.
    await publish(producer, amendment(trade, 3, OVER_THE_LIMIT))
    await barrier(gateway, keys, events)
    await events.settle()

    assert decisions(events, trade.trade_id) == [("cleared", 1), ("held", 2)]
    evaluation = await get(compliance, f"/v1/evaluations/{trade.trade_id}")
    assert evaluation["version"] == 2
    holds = await get(compliance, "/v1/holds", trade_id=trade.trade_id)
    assert [(h["version"], h["state"]) for h in holds] == [(2, "closed")]
    alerts = await blocking_alerts(compliance, trade.trade_id)
    assert [(a["version"], a["state"]) for a in alerts] == [(2, "closed")]
    assert alerts[0]["closed_reason"] == "trade cancelled: booked in error"


async def test_a_redelivered_or_late_amendment_changes_nothing(
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    events: Events,
    producer: AIOKafkaProducer,
    compliance: httpx.AsyncClient,
) -> None:
    trade = await capture(gateway, keys, events)
    await wait_for_decision(events, trade.trade_id, 1)
    amended = amendment(trade, 2, OVER_THE_LIMIT)
    await publish(producer, amended)
    assert await wait_for_decision(events, trade.trade_id, 2) == ("held", 2)

    async def state() -> dict[str, Any]:
        return {
            "evaluations": await get(compliance, f"/v1/evaluations/{trade.trade_id}/versions"),
            "alerts": (await get(compliance, "/v1/alerts", trade_id=trade.trade_id))["items"],
            "holds": await get(compliance, "/v1/holds", trade_id=trade.trade_id),
        }

    before = await state()

    # The same message again (the inbox skips it) and the same amendment under a new event
    # id (as a gateway relay that republished it would send).
    await publish(producer, amended)
    await publish(producer, amended.model_copy(update={"id": uuid.uuid4()}))
    await barrier(gateway, keys, events)
    await events.settle()

    assert await state() == before
    assert decisions(events, trade.trade_id) == [("cleared", 1), ("held", 2)]
    assert len(events.about(trade.trade_id, {compliance_contract.ALERT_RAISED})) == len(
        before["alerts"]
    )

    # Version 4 before version 3: version 3, older than the latest evaluated, is ignored.
    await publish(producer, amendment(trade, 4, WITHIN_THE_LIMIT))
    await publish(producer, amendment(trade, 3, OVER_THE_LIMIT))
    assert await wait_for_decision(events, trade.trade_id, 4) == ("cleared", 4)
    await barrier(gateway, keys, events)
    await events.settle()

    assert decisions(events, trade.trade_id) == [("cleared", 1), ("held", 2), ("cleared", 4)]
    after = await state()
    assert [(e["version"], e["outcome"]) for e in after["evaluations"]] == [
        (1, "cleared"),
        (2, "held"),
        (4, "cleared"),
    ]
    # Version 4 may raise alerts of its own (none that hold); version 3 raised none.
    assert [a for a in after["alerts"] if a["version"] != 4] == before["alerts"]
    assert [(h["version"], h["state"], h["close_reason"]) for h in after["holds"]] == [
        (2, "closed", "superseded by amendment 4")
    ]


async def barrier(gateway: httpx.AsyncClient, keys: dict[str, str], events: Events) -> None:
    """A trade captured on the same account after what was published: its trade.captured
    follows them in the account's partition, so when compliance has decided it, compliance
    has applied everything published before it."""
    trade = await capture(gateway, keys, events)
    await wait_for_decision(events, trade.trade_id, 1)
