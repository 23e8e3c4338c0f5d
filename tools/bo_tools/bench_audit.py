"""The audit log's figures: how fast it appends consumed events and how far behind it runs
(at a fixed rate, then a burst), and how long a proof for a record of a 1,000,000-record
log takes to serve over HTTP.

    .venv/bin/python -m bo_tools.bench_audit [--events 20000] [--rate 1000] [--records 1000000]

Starts its own stack (databases bo_bench_audit_*, a broker, the audit service only) and
builds the large log in a database of its own with COPY, its tree computed in one pass
(the same `domain_merkle.append` the service uses). Writes var/bench/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa

from audit import domain
from audit import domain_merkle as merkle
from bo_common.auth import generate_key, hash_key
from bo_common.db import asyncpg_dsn, run_migrations
from bo_common.envelope import new_event
from bo_common.kafka import start_producer
from bo_common.settings import KafkaSettings
from bo_common.topics import EVENT_TOPICS
from bo_tools.stack import BY_NAME, ROOT, Stack, free_ports, isolated_config, log, write_json

_RECORD_COLUMNS = (
    "seq", "event_id", "topic", "partition", "offset", "event_type", "source", "subject",
    "correlation_id", "causation_id", "account", "actor", "occurred_at", "recorded_at",
    "payload", "payload_hash",
)  # fmt: skip


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _tree_size(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT size FROM merkle_head WHERE tree = 'events'"))


async def _produce(producer: Any, run: str, phase: str, count: int, rate: float | None) -> None:
    """`count` events spread over the event topics, keyed by account; open loop at `rate`
    per second (sent on schedule whether or not the audit keeps up), or as fast as the
    producer goes."""
    started = time.perf_counter()
    for n in range(count):
        if rate is not None:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        account = f"ACC-{n % 10 + 1:03d}"
        event = new_event(
            type="bench.event_recorded",
            source="bench",
            subject=f"BENCH-{run}-{phase}-{n}",
            correlation_id=f"BENCH-{run}-{phase}-{n // 10}",
            actor="bench",
            data={"account": account, "n": n, "phase": phase},
        )
        topic = EVENT_TOPICS[n % 4]
        await producer.send(topic, event.to_bytes(), key=account.encode())
    await producer.flush()


async def _wait_appended(connection: asyncpg.Connection, target: int, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while (size := await _tree_size(connection)) < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"audit appended {size} of {target} records")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def _lag_ms(connection: asyncpg.Connection, like: str) -> tuple[float, float, float]:
    row = await connection.fetchrow(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)
           FROM (SELECT extract(epoch FROM recorded_at - occurred_at) * 1000 AS lag
                 FROM audit_records WHERE correlation_id LIKE $1) AS lags""",
        like,
    )
    return float(row[0]), float(row[1]), float(row[2])


async def append_figures(
    stack: Stack, *, events: int, rate: float, rate_seconds: float
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url(BY_NAME["audit"])))
    producer = await start_producer(
        KafkaSettings(bootstrap_servers=stack.bootstrap, linger_ms=10), client_id="bench-audit"
    )
    try:
        # Warm-up: the consumer has joined its group and holds its partitions.
        base = await _tree_size(connection)
        await _produce(producer, run, "warm", 200, None)
        await _wait_appended(connection, base + 200, timeout_s=120)
        at_rate = int(rate * rate_seconds)
        base = await _tree_size(connection)
        await _produce(producer, run, "rate", at_rate, rate)
        await _wait_appended(connection, base + at_rate, timeout_s=120)
        rate_p50, rate_p99, rate_max = await _lag_ms(connection, f"BENCH-{run}-rate-%")
        log(f"audit at {rate:.0f}/s: lag p50 {rate_p50:.0f} ms, p99 {rate_p99:.0f} ms")

        base = await _tree_size(connection)
        started = time.perf_counter()
        await _produce(producer, run, "burst", events, None)
        produced = time.perf_counter()
        finished = await _wait_appended(connection, base + events, timeout_s=600)
        burst_p50, burst_p99, burst_max = await _lag_ms(connection, f"BENCH-{run}-burst-%")
        per_second = events / (finished - started)
        log(f"audit burst of {events}: {per_second:.0f} records/s, lag max {burst_max:.0f} ms")
        return {
            "rate_events_per_s": rate,
            "rate_lag_p50_ms": rate_p50,
            "rate_lag_p99_ms": rate_p99,
            "rate_lag_max_ms": rate_max,
            "burst_events": float(events),
            "burst_produce_per_s": events / (produced - started),
            "burst_appended_records_per_s": per_second,
            "burst_lag_p50_ms": burst_p50,
            "burst_lag_p99_ms": burst_p99,
            "burst_lag_max_ms": burst_max,
        }
    finally:
        await producer.stop()
        await connection.close()


async def build_large_log(database_url: str, records: int, *, chunk: int = 100_000) -> float:
    """A log of `records` records and its complete Merkle tree, by COPY; seconds taken."""
    started = time.perf_counter()
    await asyncio.to_thread(run_migrations, ROOT / "services" / "audit", database_url)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    frontier = merkle.Frontier()
    now = datetime.now(UTC)
    try:
        for first in range(1, records + 1, chunk):
            rows: list[tuple[Any, ...]] = []
            leaves: list[bytes] = []
            for seq in range(first, min(first + chunk, records + 1)):
                account = f"ACC-{seq % 10 + 1:03d}"
                event_id = uuid.uuid4()
                body = {
                    "id": str(event_id), "type": "trade.captured", "version": 1,
                    "source": "gateway", "subject": f"T-{seq}", "time": now.isoformat(),
                    "correlation_id": f"T-{seq}", "causation_id": None, "actor": "key:bench",
                    "data": {"account": account, "quantity": "100", "price": "189.25"},
                }  # fmt: skip
                leaf = domain.record_document(
                    seq=seq, topic="trade.events", partition=seq % 6, offset=seq // 6,
                    received_at=now, event=body,
                )  # fmt: skip
                leaves.append(merkle.leaf_hash(leaf))
                rows.append(
                    (seq, event_id, "trade.events", seq % 6, seq // 6, "trade.captured",
                     "gateway", f"T-{seq}", f"T-{seq}", None, account, "key:bench", now, now,
                     leaf, hashlib.sha256(domain.canonical_json(body)).hexdigest())
                )  # fmt: skip
            appended = merkle.append(frontier, leaves)
            frontier = appended.frontier
            await connection.copy_records_to_table(
                "audit_records", records=rows, columns=list(_RECORD_COLUMNS)
            )
            await connection.copy_records_to_table(
                "merkle_nodes", records=appended.nodes, columns=["level", "index", "hash"]
            )
            log(f"large log: {frontier.size:,} records")
        await connection.execute(
            "UPDATE merkle_head SET size = $1, frontier = $2 WHERE tree = 'events'",
            frontier.size,
            b"".join(frontier.hashes),
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started


def _start_process(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "audit"], env=env, cwd=ROOT, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


async def proof_figures(stack: Stack, *, records: int, proofs: int) -> dict[str, float]:
    name = f"{stack.config.database_prefix}proofs_{records}"
    server = sa.make_url(stack.server_url)
    admin = await asyncpg.connect(
        asyncpg_dsn(server.set(database="postgres").render_as_string(False))
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database_url = server.set(database=name).render_as_string(hide_password=False)
    build_s = await build_large_log(database_url, records)
    log(f"large log of {records:,} records built in {build_s:.0f} s")

    key = generate_key()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "INSERT INTO api_keys (key_hash, key_id, name, role, created_at) "
            "VALUES ($1, $2, 'bench', 'compliance', now())",
            hash_key(key),
            uuid.uuid4(),
        )
    finally:
        await connection.close()

    # A second audit process on that database, HTTP only (no consumer, no relay).
    port = free_ports(1, besides=[*stack.config.ports.values(), stack.config.broker_port])[0]
    env = {
        **stack.env_for(BY_NAME["audit"]),
        "AUDIT_DATABASE_URL": database_url,
        "AUDIT_PORT": str(port),
        "AUDIT_ROLE": "api",
    }
    process = _start_process(env, stack.config.log_dir / "audit-proofs.log")
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the audit process for the large log did not start")
                await asyncio.sleep(0.2)
            for _ in range(10):  # warm-up: connections, caches
                await client.get(f"/v1/proofs/{random.randint(1, records)}")
            checked = 0
            for _ in range(proofs):
                seq = random.randint(1, records)
                started = time.perf_counter()
                response = await client.get(f"/v1/proofs/{seq}")
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                body = response.json()
                # Every proof must be right, not just fast.
                assert merkle.verify_inclusion(
                    seq - 1,
                    body["tree_size"],
                    bytes.fromhex(body["leaf_hash"]),
                    [bytes.fromhex(h) for h in body["proof"]],
                    bytes.fromhex(body["signed_tree_head"]["root_hash"]),
                ), f"proof of {seq} does not verify"
                checked += 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    figures = {
        "proof_log_records": float(records),
        "proof_log_build_s": build_s,
        "proofs_served": float(checked),
        "proof_p50_ms": statistics.median(latencies),
        "proof_p99_ms": _percentile(latencies, 0.99),
        "proof_max_ms": max(latencies),
    }
    log(
        f"proofs on {records:,} records: p50 {figures['proof_p50_ms']:.1f} ms, "
        f"p99 {figures['proof_p99_ms']:.1f} ms, max {figures['proof_max_ms']:.1f} ms"
    )
    return figures


async def run(
    *,
    events: int = 20_000,
    rate: float = 1000.0,
    rate_seconds: float = 10.0,
    records: int = 1_000_000,
    proofs: int = 200,
    name: str = "bench_audit",
) -> dict[str, float]:
    """Append and proof figures on a stack of its own; the stack is stopped afterwards."""
    stack = Stack(isolated_config(name, extra_env={"LOG_LEVEL": "WARNING"}))
    try:
        await asyncio.to_thread(stack.prepare)
        stack.start("audit")
        await asyncio.to_thread(stack.wait_ready, ["audit"], 90)
        figures = await append_figures(stack, events=events, rate=rate, rate_seconds=rate_seconds)
        figures.update(await proof_figures(stack, records=records, proofs=proofs))
        return figures
    finally:
        await asyncio.to_thread(stack.stop_all)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bo_tools.bench_audit", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="burst size")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s, fixed-rate phase")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--records", type=int, default=1_000_000, help="size of the large log")
    parser.add_argument("--proofs", type=int, default=200)
    args = parser.parse_args(argv)
    figures = asyncio.run(
        run(
            events=args.events,
            rate=args.rate,
            rate_seconds=args.rate_seconds,
            records=args.records,
            proofs=args.proofs,
        )
    )
    result = {"measured_at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(), **figures}
    write_json(ROOT / "var" / "bench" / "audit.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
