"""A message that cannot be applied goes to <topic>.dlq with the error; consumers go on."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth

pytestmark = pytest.mark.e2e


async def test_malformed_message_lands_in_the_dead_letters_and_the_next_one_is_applied(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        marker = f"not json {time.time_ns()}".encode()
        await producer.send_and_wait("trade.events", marker, key=b"ACC-001")
        # A valid envelope whose data breaks the trade.captured contract.
        bad_contract = json.dumps(
            {
                "id": "5f0c6a4e-8d0f-4d43-9a59-0b5d2d0c1a01",
                "type": "trade.captured",
                "version": 1,
                "source": "test",
                "subject": "T-bad",
                "time": "2026-11-20T10:00:00Z",
                "correlation_id": "T-bad",
                "causation_id": None,
                "actor": "test",
                "data": {"trade_id": "T-bad", "quantity": "lots"},
            }
        ).encode()
        await producer.send_and_wait("trade.events", bad_contract, key=b"ACC-001")
    finally:
        await producer.stop()

    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
    trade_id = response.json()["trade_id"]

    consumer = AIOKafkaConsumer(
        "trade.events.dlq",
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    dead: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                dead += [json.loads(r.value) for r in records]
            invalid_envelope = {d["consumer"] for d in dead if d.get("value") == marker.decode()}
            bad_data = {d["consumer"] for d in dead if "T-bad" in str(d.get("value"))}
            if {"settlement", "ledger", "compliance_monitor"} <= bad_data and len(
                invalid_envelope
            ) >= 5:
                break
    finally:
        await consumer.stop()
    # Every consumer of trade.events dead-letters the unreadable message with its error...
    assert invalid_envelope >= {"gateway", "settlement", "ledger", "compliance_monitor", "audit"}
    assert all(
        "invalid envelope" in str(d["error"]) for d in dead if d.get("value") == marker.decode()
    )
    # ...and those whose handler cannot apply the bad trade do so after bounded retries.
    assert {"settlement", "ledger", "compliance_monitor"} <= bad_data
    assert all(
        d["attempts"] == 3
        for d in dead
        if "T-bad" in str(d.get("value")) and d["consumer"] == "ledger"
    )

    # The message after them is applied as normal.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = (await gateway.get(f"/v1/trades/{trade_id}", headers=auth(keys["trader"]))).json()
        if view["state"] == "settled":
            break
        await asyncio.sleep(0.1)
    assert view["state"] == "settled"
