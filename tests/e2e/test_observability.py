"""What an operator sees of every service: the ops status route (lag, outbox, dead letters),
Prometheus metrics, trace context across the services, and JSON logs without secrets."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually

pytestmark = pytest.mark.e2e

SERVICES = ["gateway", "gateway_worker", "settlement", "ledger", "compliance_monitor", "audit"]


async def ops_status(stack: Stack, service: str, key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
        response = await client.get("/v1/ops/status", headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("service", SERVICES)
async def test_ops_status_needs_a_key_of_a_reading_role(
    stack: Stack, keys: dict[str, str], service: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
        missing = await client.get("/v1/ops/status")
        unknown = await client.get("/v1/ops/status", headers=auth("bo_not-a-real-key"))
        trader = await client.get("/v1/ops/status", headers=auth(keys["trader"]))
    assert missing.status_code == 401
    assert unknown.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert trader.status_code == 403
    assert trader.json()["title"] == "Forbidden"


@pytest.mark.parametrize("service", SERVICES)
async def test_ops_status_reports_group_lag_outbox_and_dead_letters(
    stack: Stack, keys: dict[str, str], service: str
) -> None:
    for role in ("ops", "admin", "compliance"):
        body = await ops_status(stack, service, keys[role])
    assert body["service"] == service.removesuffix("_worker")
    assert body["process_role"] == {"gateway": "api", "gateway_worker": "worker"}.get(
        service, "all"
    )
    assert body["ready"] is True
    assert body["version"]
    group = body["consumer"]
    assert group["error"] is None
    assert group["group"] == service.removesuffix("_worker")
    assert "access.events" in group["topics"]
    # Every topic the group reads, each with its 6 partitions.
    assert {(p["topic"], p["partition"]) for p in group["partitions"]} == {
        (topic, n) for topic in group["topics"] for n in range(6)
    }
    for partition in group["partitions"]:
        committed = partition["committed_offset"] or 0
        assert partition["lag"] == max(partition["high_water_mark"] - committed, 0)
    assert group["total_lag"] == sum(p["lag"] for p in group["partitions"])
    assert body["outbox"]["unsent"] >= 0
    assert set(body["dead_letters"]) == {"total", "by_topic"}


async def test_ops_status_counts_a_dead_letter_under_its_topic(
    stack: Stack, keys: dict[str, str], producer: AIOKafkaProducer
) -> None:
    before = await ops_status(stack, "ledger", keys["ops"])

    def on_trade_events(body: dict[str, Any]) -> int:
        counts = {c["topic"]: c["count"] for c in body["dead_letters"]["by_topic"]}
        return int(counts.get("trade.events", 0))

    await producer.send_and_wait(
        "trade.events", f"not an envelope {time.time_ns()}".encode(), key=b"ACC-003"
    )

    async def counted() -> dict[str, Any] | None:
        body = await ops_status(stack, "ledger", keys["ops"])
        return body if on_trade_events(body) == on_trade_events(before) + 1 else None

    after = await eventually(counted, "the ledger counts the dead letter")
    assert after["dead_letters"]["total"] == before["dead_letters"]["total"] + 1
    assert any(
        c["dead_letter_topic"] == "trade.events.dlq" for c in after["dead_letters"]["by_topic"]
    )
    # The dead letter is published from the outbox: nothing is left behind for long.
    await eventually(
        lambda: _outbox_empty(stack, "ledger", keys["ops"]), "the ledger's outbox drains"
    )


async def _outbox_empty(stack: Stack, service: str, key: str) -> bool:
    body = await ops_status(stack, service, key)
    return bool(body["outbox"]["unsent"] == 0 and body["last_published_at"] is not None)


async def test_lag_rises_while_the_consumer_is_stopped_and_falls_when_it_returns(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    """The gateway's API process reads its worker's group from the broker, so it shows the
    lag of a worker that is down: trades are relayed, the worker is killed, and the other
    services' answers (compliance, settlement after its netting cycle, ledger) pile up."""

    def downstream_lag(body: dict[str, Any]) -> int:
        return sum(p["lag"] for p in body["consumer"]["partitions"] if p["topic"] != "trade.events")

    for _ in range(5):
        response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
        assert response.status_code == 201
    await eventually(
        lambda: _outbox_empty(stack, "gateway", keys["ops"]), "the trades are relayed", 30
    )
    await asyncio.to_thread(stack.kill, "gateway_worker", signal.SIGKILL)
    try:

        async def lagging() -> dict[str, Any] | None:
            body = await ops_status(stack, "gateway", keys["ops"])
            return body if downstream_lag(body) >= 10 else None

        stopped = await eventually(lagging, "the stopped worker's lag rises", 30)
        assert stopped["consumer"]["error"] is None
        # Posted while the worker is down: the API process writes its outbox, nothing relays.
        response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
        assert response.status_code == 201
        backlog = await ops_status(stack, "gateway", keys["ops"])
        assert backlog["outbox"]["unsent"] >= 1
        assert backlog["outbox"]["oldest_unsent_age_seconds"] >= 0
    finally:
        stack.start("gateway_worker")
    await asyncio.to_thread(stack.wait_ready, ["gateway_worker"], 60)

    async def caught_up() -> dict[str, Any] | None:
        body = await ops_status(stack, "gateway", keys["ops"])
        return body if body["outbox"]["unsent"] == 0 and downstream_lag(body) == 0 else None

    await eventually(caught_up, "the worker relays and catches up", 60)


async def test_the_ops_status_schema_is_in_the_openapi_document(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ledger"), timeout=10) as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/ops/status"]["get"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["OpsStatus"]
    assert {
        "service",
        "version",
        "ready",
        "consumer",
        "outbox",
        "dead_letters",
        "last_consumed_at",
        "last_published_at",
    } <= set(schema["required"])


async def wait_settled(gateway: httpx.AsyncClient, key: str, trade_id: str) -> None:
    async def settled() -> bool:
        view = (await gateway.get(f"/v1/trades/{trade_id}", headers=auth(key))).json()
        return bool(view.get("state") == "settled")

    await eventually(settled, f"trade {trade_id} settles", 30)


async def test_one_trade_is_one_trace_across_the_five_services(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = await gateway.post(
        "/v1/trades",
        json=a_trade(),
        headers={**auth(keys["trader"]), "traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]
    # The answer names the request's span, in the caller's trace.
    assert response.headers["traceparent"].split("-")[1] == trace_id
    await wait_settled(gateway, keys["trader"], trade_id)

    # Every event each service wrote about the trade is in the trace (its outbox row keeps
    # the context and the relay sends it as the Kafka header)...
    published: dict[str, set[str]] = {}
    for service in ("gateway", "compliance_monitor", "settlement", "ledger"):

        async def rows(service: str = service) -> list[Any] | None:
            async with databases[service].connect() as connection:
                found = (
                    await connection.execute(
                        sa.text(
                            "SELECT event_id, event_type, traceparent FROM outbox "
                            "WHERE correlation_id = :trade_id"
                        ),
                        {"trade_id": trade_id},
                    )
                ).all()
            return found or None

        found = await eventually(rows, f"{service} wrote events of the trade", 10)
        published[service] = {str(row.event_id) for row in found}
        traces = {row.event_type: (row.traceparent or "").split("-")[1:2] for row in found}
        assert all(t == [trace_id] for t in traces.values()), (service, traces)
    assert any("settled" in t for t in await _types(databases["settlement"], trade_id))

    # ...and every service received them with it (the inbox keeps the delivered context),
    # the audit trail included (its records are its inbox).
    event_ids = list(set().union(*published.values()))
    for service in ("gateway", "compliance_monitor", "settlement", "ledger", "audit"):
        table = "audit_records" if service == "audit" else "inbox"
        async with databases[service].connect() as connection:
            delivered = (
                await connection.execute(
                    sa.text(
                        f"SELECT event_id, traceparent FROM {table} WHERE event_id = ANY(:ids)"
                    ),
                    {"ids": event_ids},
                )
            ).all()
        assert delivered, service
        assert {(row.traceparent or "").split("-")[1] for row in delivered} == {trace_id}, service


async def _types(engine: AsyncEngine, trade_id: str) -> set[str]:
    async with engine.connect() as connection:
        return set(
            (
                await connection.execute(
                    sa.text("SELECT event_type FROM outbox WHERE correlation_id = :t"),
                    {"t": trade_id},
                )
            ).scalars()
        )


def _log_offsets(stack: Stack) -> dict[Path, int]:
    return {path: path.stat().st_size for path in stack.config.log_dir.glob("*.log")}


def _new_log_lines(stack: Stack, offsets: dict[Path, int]) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for path in stack.config.log_dir.glob("*.log"):
        if path.name == "broker.log":
            continue
        with path.open("rb") as file:
            file.seek(offsets.get(path, 0))
            lines[path.stem] = file.read().decode("utf-8", "replace").splitlines()
    return lines


async def test_logs_are_json_lines_with_ids_and_never_an_api_key(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    offsets = _log_offsets(stack)
    unknown_key = "bo_" + secrets.token_urlsafe(32)
    trace_id = secrets.token_hex(16)
    response = await gateway.post(
        "/v1/trades",
        json=a_trade(),
        headers={**auth(keys["trader"]), "traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    trade_id = response.json()["trade_id"]
    for service in SERVICES:
        async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
            await client.get("/v1/ops/status", headers=auth(unknown_key))
            await client.get("/v1/ops/status", headers=auth(keys["ops"]))
    await wait_settled(gateway, keys["trader"], trade_id)

    lines = _new_log_lines(stack, offsets)
    assert sum(len(v) for v in lines.values()) > 0
    secrets_seen = [*keys.values(), unknown_key]
    for name, written in lines.items():
        for line in written:
            assert not any(key in line for key in secrets_seen), (name, line)
            record = json.loads(line)
            assert {"service", "level", "event", "event_id", "correlation_id", "trace_id"} <= set(
                record
            ), (name, record)
    # Nothing under the stack's var directory holds a key either.
    for path in stack.config.var_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            content = path.read_bytes()
            assert not any(key.encode() in content for key in secrets_seen), path


METRICS = (
    "bo_http_requests_total",
    "bo_http_request_seconds_bucket",
    "bo_messages_consumed_total",
    "bo_events_applied_total",
    "bo_event_processing_seconds_bucket",
    "bo_event_delivery_seconds_bucket",
    "bo_consumer_batch_seconds_bucket",
    "bo_consumer_lag_messages",
    "bo_outbox_published_total",
    "bo_outbox_pending",
    "bo_outbox_oldest_unsent_age_seconds",
    "bo_db_pool_size",
    "bo_db_pool_limit",
    "bo_db_pool_connections",
)


@pytest.mark.parametrize("service", ["settlement", "ledger", "compliance_monitor", "audit"])
async def test_every_service_exposes_the_conventional_metrics(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient, service: str
) -> None:
    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
    await wait_settled(gateway, keys["trader"], response.json()["trade_id"])
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
        await client.get("/v1/ops/status", headers=auth("bo_not-a-real-key"))

        async def exposition() -> str | None:
            text = (await client.get("/metrics")).text
            return text if all(f"\n{name}{{" in text for name in METRICS) else None

        text = await eventually(exposition, f"{service} exposes every metric", 30)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    # Applied events per topic; request counts per route template and status.
    assert any(
        line.startswith("bo_events_applied_total{") and 'topic="trade.events"' in line
        for line in samples
    )
    assert any(
        'route="/v1/ops/status"' in line and 'status="401"' in line
        for line in samples
        if line.startswith("bo_http_requests_total{")
    )
    assert any(
        line.startswith("bo_db_pool_connections{") and 'state="checked_out"' in line
        for line in samples
    )
