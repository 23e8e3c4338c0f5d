"""`make bench`: intake rate, end-to-end throughput and latency of the whole pipeline, with
the broker's and PostgreSQL's raw rates measured in the same run on the same machine.

Starts its own cluster (databases bo_bench_*, free ports) so that figures do not depend on
what `make run` holds. Writes var/bench/latest.json and prints a table.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bo_common.db import asyncpg_dsn
from bo_common.kafka import create_topics
from bo_common.settings import KafkaSettings
from bo_tools.demo import sample_trade, set_up_demo
from bo_tools.stack import BY_NAME, ROOT, Stack, isolated_config, log, write_json


def _trade(n: int, run: str) -> dict[str, str]:
    return sample_trade(
        client_trade_id=f"BENCH-{run}-{n:06d}",
        account=f"ACC-{n % 10 + 1:03d}",
        side="BUY" if n % 2 else "SELL",
        quantity=str(n % 500 + 1),
    )


async def broker_baseline(bootstrap: str, messages: int, size: int) -> dict[str, float]:
    """Produce (acks=all) and consume `messages` of `size` bytes through one fresh topic."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await create_topics(KafkaSettings(bootstrap_servers=bootstrap), [topic])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    payload = b"x" * size
    try:
        started = time.perf_counter()

        async def produce() -> None:
            futures = [
                await producer.send(topic, payload, key=str(i % 64).encode())
                for i in range(messages)
            ]
            await asyncio.gather(*futures)

        async def consume() -> None:
            seen = 0
            while seen < messages:
                batches = await consumer.getmany(timeout_ms=200)
                seen += sum(len(records) for records in batches.values())

        await asyncio.gather(produce(), consume())
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    return {
        "messages": messages,
        "message_bytes": size,
        "seconds": elapsed,
        "messages_per_second": messages / elapsed,
    }


async def postgres_baseline(database_url: str, inserts: int) -> dict[str, float]:
    """Single-row INSERT transactions, one connection, each committed on its own."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "CREATE TEMP TABLE bench_insert (id bigserial primary key, payload text)"
        )
        started = time.perf_counter()
        for n in range(inserts):
            await connection.execute("INSERT INTO bench_insert (payload) VALUES ($1)", str(n))
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return {"inserts": inserts, "seconds": elapsed, "commits_per_second": inserts / elapsed}


async def intake(
    stack: Stack, key: str, trades: list[dict[str, str]], concurrency: int
) -> tuple[list[str], float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=60, limits=limits
    ) as client:
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        for trade in trades:
            queue.put_nowait(trade)
        trade_ids: list[str] = []

        async def worker() -> None:
            while not queue.empty():
                trade = queue.get_nowait()
                response = await client.post(
                    "/v1/trades", json=trade, headers={"Authorization": f"Bearer {key}"}
                )
                response.raise_for_status()
                trade_ids.append(response.json()["trade_id"])

        started = time.perf_counter()
        started_wall = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return trade_ids, time.perf_counter() - started, started_wall


APPLIED_SQL = {
    "settlement": "SELECT trade_id, updated_at FROM obligations "
    "WHERE trade_id = ANY($1) AND state = 'settled'",
    "ledger": "SELECT trade_id, posted_at FROM journal_entries "
    "WHERE trade_id = ANY($1) AND kind = 'settled'",
    "compliance_monitor": "SELECT trade_id, evaluated_at FROM evaluations WHERE trade_id = ANY($1)",
    "audit": "SELECT correlation_id, max(recorded_at) FROM audit_records "
    "WHERE correlation_id = ANY($1) GROUP BY correlation_id "
    "HAVING bool_or(event_type = 'ledger.posted' AND payload LIKE '%\"settled\"%')",
}


async def wait_applied(
    stack: Stack, trade_ids: list[str], timeout_s: float
) -> dict[str, dict[str, datetime]]:
    connections = {
        name: await asyncpg.connect(asyncpg_dsn(stack.database_url(BY_NAME[name])))
        for name in [*APPLIED_SQL, "gateway"]
    }
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            applied: dict[str, dict[str, datetime]] = {}
            for name, sql in APPLIED_SQL.items():
                query = sql.replace("payload LIKE", "convert_from(payload, 'UTF8') LIKE")
                rows = await connections[name].fetch(query, trade_ids)
                applied[name] = {row[0]: row[1] for row in rows}
            if all(len(v) == len(trade_ids) for v in applied.values()):
                rows = await connections["gateway"].fetch(
                    "SELECT trade_id, received_at FROM trades WHERE trade_id = ANY($1)", trade_ids
                )
                applied["gateway"] = {row[0]: row[1] for row in rows}
                return applied
            if time.monotonic() > deadline:
                counts = {k: len(v) for k, v in applied.items()}
                raise TimeoutError(f"not all applied after {timeout_s}s: {counts}")
            await asyncio.sleep(0.25)
    finally:
        for connection in connections.values():
            await connection.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    stack: Stack, keys: dict[str, str], trades: int, concurrency: int
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sample = _trade(0, run)
    envelope_size = 900  # a trade.captured envelope with this trade is about this size
    log("baseline: broker produce+consume")
    broker = await broker_baseline(stack.bootstrap, max(trades * 4, 20000), envelope_size)
    log("baseline: PostgreSQL single-row insert commits")
    postgres = await postgres_baseline(stack.database_url(BY_NAME["gateway"]), 3000)
    log(f"posting {trades} trades with {concurrency} concurrent clients")
    orders = [_trade(n, run) for n in range(trades)]
    trade_ids, intake_seconds, started_wall = await intake(
        stack, keys["trader"], orders, concurrency
    )
    applied = await wait_applied(stack, trade_ids, timeout_s=max(120, trades / 5))
    finished = max(max(v.values()) for k, v in applied.items() if k != "gateway")
    end_to_end_seconds = finished.timestamp() - started_wall
    latencies_ms = []
    for trade_id in trade_ids:
        received = applied["gateway"][trade_id]
        done = max(applied[name][trade_id] for name in APPLIED_SQL)
        latencies_ms.append((done - received).total_seconds() * 1000)
    intake_rate = trades / intake_seconds
    throughput = trades / end_to_end_seconds
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "trades": trades,
        "concurrency": concurrency,
        "sample_trade": sample,
        "intake": {"seconds": intake_seconds, "trades_per_second": intake_rate},
        "end_to_end": {
            "seconds": end_to_end_seconds,
            "trades_per_second": throughput,
            "latency_ms": {
                "p50": statistics.median(latencies_ms),
                "p95": percentile(latencies_ms, 0.95),
                "p99": percentile(latencies_ms, 0.99),
                "max": max(latencies_ms),
            },
        },
        "baselines": {"broker": broker, "postgres_single_row_commits": postgres},
        "ratios": {
            "intake_per_postgres_commit": intake_rate / postgres["commits_per_second"],
            "end_to_end_per_postgres_commit": throughput / postgres["commits_per_second"],
            "end_to_end_per_broker_message": throughput / broker["messages_per_second"],
        },
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def print_table(result: dict[str, Any]) -> None:
    e2e = result["end_to_end"]
    rows = [
        ("trades", f"{result['trades']}"),
        ("intake (POST /v1/trades)", f"{result['intake']['trades_per_second']:.0f} trades/s"),
        ("end-to-end throughput", f"{e2e['trades_per_second']:.0f} trades/s"),
        ("end-to-end latency p50", f"{e2e['latency_ms']['p50']:.0f} ms"),
        ("end-to-end latency p95", f"{e2e['latency_ms']['p95']:.0f} ms"),
        ("end-to-end latency p99", f"{e2e['latency_ms']['p99']:.0f} ms"),
        (
            "broker raw produce+consume",
            f"{result['baselines']['broker']['messages_per_second']:.0f} msg/s",
        ),
        (
            "PostgreSQL single-row commits",
            f"{result['baselines']['postgres_single_row_commits']['commits_per_second']:.0f}/s",
        ),
        (
            "intake / PostgreSQL commit rate",
            f"{result['ratios']['intake_per_postgres_commit']:.4f}",
        ),
        (
            "end-to-end / PostgreSQL commit rate",
            f"{result['ratios']['end_to_end_per_postgres_commit']:.4f}",
        ),
        (
            "end-to-end / broker message rate",
            f"{result['ratios']['end_to_end_per_broker_message']:.4f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>16}")
    print()


def main(*, trades: int, concurrency: int) -> int:
    stack = Stack(isolated_config("bench", extra_env={"LOG_LEVEL": "WARNING"}))
    try:
        stack.prepare()
        stack.start_all()
        stack.wait_ready(timeout_s=90)
        keys = set_up_demo(stack, keys_file=None)
        result = asyncio.run(measure(stack, keys, trades, concurrency))
    finally:
        stack.stop_all()
    write_json(ROOT / "var" / "bench" / "latest.json", result)
    print_table(result)
    log(f"figures written to {ROOT / 'var' / 'bench' / 'latest.json'}")
    return 0


__all__ = ["json", "main"]
