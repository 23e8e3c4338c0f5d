"""`make bench`: intake rate, end-to-end throughput and latency of the whole pipeline, with
the broker's and PostgreSQL's raw rates measured in the same run on the same machine.

Starts its own cluster (databases bo_bench_*, free ports) so that figures do not depend on
what `make run` holds. Writes var/bench/latest.json and prints a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import platform
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bo_common.db import asyncpg_dsn
from bo_common.kafka import create_topics
from bo_common.settings import KafkaSettings
from bo_tools.cli import BENCH_PARTS
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


def _client(stack: Stack, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60, limits=limits)


async def single_trades_at_rate(
    stack: Stack, key: str, trades: list[dict[str, str]], rate: float
) -> dict[str, Any]:
    """Open loop: trade n is sent at start + n / rate whatever the answers before it, so a
    slow answer cannot hide later ones (no coordinated omission). Latency per request.

    The client is aiohttp with bodies serialised beforehand: on 2 cores shared with the
    whole stack, a heavier client (httpx) spent a full core and its own scheduling delay
    showed up as server latency. For the same reason each request's task is made when it
    is due, not all at the start (making 2,000 tasks at once stalled the client for tens of
    milliseconds, and the requests due meanwhile went out as one burst), and the client's
    keep-alive connections are opened before the clock starts, as a front-office system
    keeps its pool open: the first second measured connection set-up, not intake. The
    client's garbage collector is off while it sends: this process holds every module of the
    project, and a full collection paused it for up to 100 ms, which the requests in flight
    then showed as server latency (p99 71 -> 19 ms in the same run of the same stack)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    host_before = host_cpu_ticks()
    try:
        result = await _send_at_rate(stack, key, trades, rate)
    finally:
        gc.enable()
        gc.unfreeze()
    result["host_stolen_pct"] = stolen_pct(host_before, host_cpu_ticks())
    return result


def host_cpu_ticks() -> list[int]:
    """The machine's CPU time by kind (/proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal, ...); empty where there is no /proc."""
    try:
        with open("/proc/stat") as stat:
            return [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return []


def stolen_pct(before: list[int], after: list[int]) -> float | None:
    """Of the CPU time between two readings, the share the hypervisor gave to others: on a
    virtual machine the same code runs slower while it is high, whatever it does."""
    if len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent[:8])
    return 100 * spent[7] / total if total else None


async def _send_at_rate(
    stack: Stack, key: str, trades: list[dict[str, str]], rate: float
) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [json.dumps(trade).encode() for trade in trades]
    latencies_ms: list[float] = []
    late_ms: list[float] = []  # how late the client sent each request
    trade_ids: list[str] = []
    errors: list[str] = []
    url = stack.url("gateway") + "/v1/trades"
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def warm() -> None:
            async with client.get(stack.url("gateway") + "/healthz") as response:
                await response.read()

        await asyncio.gather(*(warm() for _ in range(32)))

        async def one(body: bytes, due: float) -> None:
            sent = time.perf_counter()
            late_ms.append((sent - due) * 1000)
            try:
                async with client.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
                    status = response.status
            except aiohttp.ClientError as error:
                errors.append(repr(error))
                return
            latencies_ms.append((time.perf_counter() - sent) * 1000)
            if status != 201:
                errors.append(f"{status}: {answer[:200]!r}")
                return
            trade_ids.append(json.loads(answer)["trade_id"])

        started = time.perf_counter()
        started_wall = time.time()
        pending: set[asyncio.Task[None]] = set()
        for n, body in enumerate(bodies):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(body, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        seconds = time.perf_counter() - started
    return {
        "trade_ids": trade_ids,
        "started_wall": started_wall,
        "requests": len(trades),
        "target_rate": rate,
        "achieved_rate": len(trades) / seconds,
        "latency_ms": _percentiles(latencies_ms),
        "client_late_ms": _percentiles(late_ms),
        "errors": len(errors),
        "first_errors": errors[:5],
    }


async def batch_intake(
    stack: Stack, key: str, trades: list[dict[str, str]], batch_size: int, clients: int
) -> dict[str, Any]:
    """Trades through POST /v1/trades/batch, `clients` batches in flight at a time."""
    headers = {"Authorization": f"Bearer {key}"}
    batches = [trades[i : i + batch_size] for i in range(0, len(trades), batch_size)]
    queue: asyncio.Queue[list[dict[str, str]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    created = 0
    latencies_ms: list[float] = []
    async with _client(stack, clients) as client:

        async def worker() -> None:
            nonlocal created
            while not queue.empty():
                batch = queue.get_nowait()
                sent = time.perf_counter()
                response = await client.post(
                    "/v1/trades/batch", json={"trades": batch}, headers=headers
                )
                latencies_ms.append((time.perf_counter() - sent) * 1000)
                response.raise_for_status()
                created += response.json()["created"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    if created != len(trades):
        raise RuntimeError(f"batch intake created {created} of {len(trades)} trades")
    return {
        "trades": len(trades),
        "batch_size": batch_size,
        "clients": clients,
        "seconds": seconds,
        "trades_per_second": len(trades) / seconds,
        "batch_latency_ms": _percentiles(latencies_ms),
    }


# Trades of the compliance monitor's burst: the batch route's full speed for about 2 s.
COMPLIANCE_BURST = 5000


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


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


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process of the stack, the broker
    and PostgreSQL (every server process, so on a shared server also others' work)."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    seconds = {name: used(psutil.Process(p.pid)) for name, p in stack.processes.items()}
    if stack.broker_pid is not None:
        seconds["broker"] = used(psutil.Process(stack.broker_pid))
    seconds["postgres"] = sum(
        used(process)
        for process in psutil.process_iter(["name"])
        if (process.info["name"] or "").startswith("postgres")
    )
    return seconds


def cpu_ms_per_trade(
    before: dict[str, float], after: dict[str, float], trades: int
) -> dict[str, float]:
    """Where the machine's CPU went for each trade, by process, highest first."""
    spent = {name: (after[name] - before.get(name, 0.0)) * 1000 / trades for name in after}
    spent["total"] = sum(spent.values())
    return dict(sorted(spent.items(), key=lambda item: -item[1]))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def warm_up(stack: Stack, keys: dict[str, str], run: str) -> None:
    """300 trades at 100/s, then until every service has applied them: pools, caches and
    consumer groups are warm before anything is measured."""
    log("warm-up: 300 trades at 100/s, then until every service has applied them")
    warm = await single_trades_at_rate(
        stack, keys["trader"], [_trade(n, f"warm-{run}") for n in range(300)], 100
    )
    await wait_applied(stack, warm["trade_ids"], timeout_s=120)


async def measure(
    stack: Stack,
    keys: dict[str, str],
    *,
    trades: int,
    rate: float,
    batch_trades: int,
    compliance: bool = False,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    envelope_size = 900  # a trade.captured envelope with this trade is about this size
    await warm_up(stack, keys, run)
    log(f"single trades: {trades} at {rate:.0f}/s (open loop), everything else running")
    cpu_before = cpu_seconds(stack)
    singles = await single_trades_at_rate(
        stack, keys["trader"], [_trade(n, run) for n in range(trades)], rate
    )
    trade_ids = singles.pop("trade_ids")
    started_wall = singles.pop("started_wall")
    log("end to end: waiting for every service to apply those trades")
    applied = await wait_applied(stack, trade_ids, timeout_s=max(120, trades / 5))
    cpu = cpu_ms_per_trade(cpu_before, cpu_seconds(stack), len(trade_ids))
    finished = max(max(v.values()) for k, v in applied.items() if k != "gateway")
    end_to_end_seconds = finished.timestamp() - started_wall
    latencies_ms = []
    for trade_id in trade_ids:
        received = applied["gateway"][trade_id]
        done = max(applied[name][trade_id] for name in APPLIED_SQL)
        latencies_ms.append((done - received).total_seconds() * 1000)
    throughput = len(trade_ids) / end_to_end_seconds
    # Where the time goes: when each service had applied the trade, after its capture; and
    # how far the audit log is behind the last event it records (the ledger's settled
    # posting), which says whether the log keeps up with the services it records.
    per_service = {
        name: _percentiles(
            [(applied[name][t] - applied["gateway"][t]).total_seconds() * 1000 for t in trade_ids]
        )
        for name in APPLIED_SQL
    }
    audit_behind_ms = [
        (applied["audit"][t] - applied["ledger"][t]).total_seconds() * 1000 for t in trade_ids
    ]
    monitor: dict[str, Any] = {}
    if compliance:
        from bo_tools import bench_compliance

        # Before the batch intake, whose 20,000 trades take the cluster minutes to work off.
        log(f"compliance: {trades} trades at {rate:.0f}/s, every default rule on")
        monitor["compliance"] = await bench_compliance.run(stack, keys, trades=trades, rate=rate)
        log(f"compliance: a burst of {COMPLIANCE_BURST} trades through the batch route")
        monitor["compliance"] |= await bench_compliance.burst(stack, keys, trades=COMPLIANCE_BURST)

    log(f"batch intake: {batch_trades} trades in batches of 1,000, 2 clients")
    batch_orders = [_trade(trades + n, run) for n in range(batch_trades)]
    batches = await batch_intake(stack, keys["trader"], batch_orders, 1000, clients=2)
    intake_rate = batches["trades_per_second"]
    # The raw rates last, so that their load does not linger into the measures above.
    log("baseline: broker produce+consume")
    broker = await broker_baseline(stack.bootstrap, max(trades * 4, 20000), envelope_size)
    log("baseline: PostgreSQL single-row insert commits")
    postgres = await postgres_baseline(stack.database_url(BY_NAME["gateway"]), 3000)
    return {
        "trades": trades,
        "single_trades": singles,
        "batch_intake": batches,
        "end_to_end": {
            "seconds": end_to_end_seconds,
            "trades_per_second": throughput,
            "latency_ms": _percentiles(latencies_ms),
            "applied_after_capture_ms": per_service,
            "audit_behind_ledger_ms": _percentiles(audit_behind_ms),
        },
        "cpu_ms_per_trade": cpu,
        "baselines": {"broker": broker, "postgres_single_row_commits": postgres},
        "ratios": {
            "batch_intake_per_postgres_commit": intake_rate / postgres["commits_per_second"],
            "end_to_end_per_postgres_commit": throughput / postgres["commits_per_second"],
            "end_to_end_per_broker_message": throughput / broker["messages_per_second"],
        },
        **monitor,
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def print_table(result: dict[str, Any]) -> None:
    e2e = result["end_to_end"]
    single = result["single_trades"]
    batch = result["batch_intake"]
    rows = [
        ("single trades (POST /v1/trades)", f"{single['requests']}"),
        (
            "  offered rate / achieved",
            f"{single['target_rate']:.0f} / {single['achieved_rate']:.0f}/s",
        ),
        (
            "  latency p50 / p95",
            f"{single['latency_ms']['p50']:.1f} / {single['latency_ms']['p95']:.1f} ms",
        ),
        (
            "  latency p99 / max",
            f"{single['latency_ms']['p99']:.1f} / {single['latency_ms']['max']:.1f} ms",
        ),
        (
            "  client sent late p99 / max",
            f"{single['client_late_ms']['p99']:.1f} / {single['client_late_ms']['max']:.1f} ms",
        ),
        (
            "  host CPU stolen meanwhile (hypervisor)",
            "n/a"
            if single.get("host_stolen_pct") is None
            else f"{single['host_stolen_pct']:.1f} %",
        ),
        ("end-to-end throughput", f"{e2e['trades_per_second']:.0f} trades/s"),
        ("end-to-end latency p50", f"{e2e['latency_ms']['p50']:.0f} ms"),
        ("end-to-end latency p95", f"{e2e['latency_ms']['p95']:.0f} ms"),
        ("end-to-end latency p99", f"{e2e['latency_ms']['p99']:.0f} ms"),
        *(
            (f"  {name} applied p50 / p99", f"{q['p50']:.0f} / {q['p99']:.0f} ms")
            for name, q in e2e["applied_after_capture_ms"].items()
        ),
        (
            "  audit record behind the ledger p50 / p99",
            f"{e2e['audit_behind_ledger_ms']['p50']:.0f} / "
            f"{e2e['audit_behind_ledger_ms']['p99']:.0f} ms",
        ),
        ("batch intake (1,000 a batch)", f"{batch['trades_per_second']:.0f} trades/s"),
        (
            "  batch latency p50 / p99",
            f"{batch['batch_latency_ms']['p50']:.0f} / {batch['batch_latency_ms']['p99']:.0f} ms",
        ),
        (
            "broker raw produce+consume",
            f"{result['baselines']['broker']['messages_per_second']:.0f} msg/s",
        ),
        (
            "PostgreSQL single-row commits",
            f"{result['baselines']['postgres_single_row_commits']['commits_per_second']:.0f}/s",
        ),
        (
            "batch intake / PostgreSQL commit rate",
            f"{result['ratios']['batch_intake_per_postgres_commit']:.4f}",
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


PARTS = BENCH_PARTS


def main(*, trades: int, rate: float, batch_trades: int, parts: tuple[str, ...] = PARTS) -> int:
    """The pipeline's figures (and the compliance monitor's, measured in the same cluster),
    then the ledger's and the audit log's, each on a stack of its own (see their modules)."""
    from bo_tools import bench_audit, bench_compliance, bench_ledger

    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
    }
    if "pipeline" in parts or "compliance" in parts:
        with demo_stack("bench") as (stack, keys):
            result["machine"]["intake_cpu_group"] = intake_group_figures(stack)
            if "pipeline" in parts:
                result |= asyncio.run(
                    measure(
                        stack,
                        keys,
                        trades=trades,
                        rate=rate,
                        batch_trades=batch_trades,
                        compliance="compliance" in parts,
                    )
                )
            else:
                log(f"compliance: {trades} trades at {rate:.0f}/s, every default rule on")
                result["compliance"] = asyncio.run(
                    bench_compliance.run(stack, keys, trades=trades, rate=rate)
                )
                log(f"compliance: a burst of {COMPLIANCE_BURST} trades through the batch route")
                result["compliance"] |= asyncio.run(
                    bench_compliance.burst(stack, keys, trades=COMPLIANCE_BURST)
                )
    if "series" in parts:
        with demo_stack("bench") as (stack, keys):
            result["machine"]["intake_cpu_group"] = intake_group_figures(stack)
            result["series"] = asyncio.run(series(stack, keys, trades=trades, rate=rate))
        print_series(result["series"])
    if "ledger" in parts:
        result["ledger"] = asyncio.run(bench_ledger.run())
    if "audit" in parts:
        result["audit"] = asyncio.run(bench_audit.run())
    write_json(ROOT / "var" / "bench" / "latest.json", result)
    if "pipeline" in parts:
        print_table(result)
    for part in ("cpu_ms_per_trade", "compliance", "ledger", "audit"):
        if part in result:
            print(f"  {part}")
            width = max(len(k) for k in result[part])
            for name, value in result[part].items():
                print(f"    {name:<{width}}  {value:>14,.2f}")
            print()
    log(f"figures written to {ROOT / 'var' / 'bench' / 'latest.json'}")
    return 0


def intake_group_figures(stack: Stack) -> dict[str, Any] | None:
    """Whether the intake ran in its CPU group (bo_tools.cpu_group), and with how many
    database sessions: figures from a machine where it could not be made differ."""
    group = stack.intake_group
    if group is None:
        return None
    return {"path": str(group.path), "database_sessions": len(stack.intake_sessions)}


SERIES_RUNS = 5


async def series(
    stack: Stack, keys: dict[str, str], *, trades: int, rate: float, runs: int = SERIES_RUNS
) -> list[dict[str, Any]]:
    """The single-trade stream of the pipeline part, `runs` times back to back, with the
    CPU each process spent per trade in each run: the backlog behind the intake grows from
    run to run, and a slow run shows whether the machine or a process got slower (the
    same code spends more CPU per trade in a virtual machine's slow hours)."""
    run = uuid.uuid4().hex[:6]
    await warm_up(stack, keys, run)
    figures = []
    for index in range(runs):
        log(f"series: run {index + 1} of {runs}, {trades} trades at {rate:.0f}/s")
        before = cpu_seconds(stack)
        singles = await single_trades_at_rate(
            stack, keys["trader"], [_trade(n, f"{run}-{index}") for n in range(trades)], rate
        )
        figures.append(
            {
                "latency_ms": singles["latency_ms"],
                "client_late_ms": singles["client_late_ms"],
                "errors": singles["errors"],
                "host_stolen_pct": singles["host_stolen_pct"],
                "cpu_ms_per_trade": cpu_ms_per_trade(before, cpu_seconds(stack), trades),
            }
        )
    return figures


def series_lines(figures: list[dict[str, Any]]) -> list[str]:
    """One line per run: latency, the client's lateness, errors, the hypervisor's share, and
    the CPU per trade of the API, of everything, and of the three largest others."""
    lines = ["  run  p50 ms  p99 ms  max ms  late p99  errors  stolen  API cpu  all cpu  largest"]
    for index, run in enumerate(figures, start=1):
        cpu = run["cpu_ms_per_trade"]
        others = [(k, v) for k, v in cpu.items() if k not in ("total", "gateway")][:3]
        stolen = run["host_stolen_pct"]
        lines.append(
            f"  {index:>3}  {run['latency_ms']['p50']:>6.1f}  {run['latency_ms']['p99']:>6.1f}"
            f"  {run['latency_ms']['max']:>6.1f}  {run['client_late_ms']['p99']:>8.1f}"
            f"  {run['errors']:>6}  {'n/a' if stolen is None else f'{stolen:.1f} %':>6}"
            f"  {cpu.get('gateway', 0.0):>7.2f}  {cpu['total']:>7.2f}  "
            + ", ".join(f"{name} {value:.2f}" for name, value in others)
        )
    return lines


def print_series(figures: list[dict[str, Any]]) -> None:
    print()
    print("  single trades, runs back to back (CPU in ms per trade)")
    for line in series_lines(figures):
        print(line)
    print()


@contextlib.contextmanager
def demo_stack(name: str) -> Iterator[tuple[Stack, dict[str, str]]]:
    """Every process on ports and databases of its own, with the demo data and the bench's
    client unlimited; stopped afterwards. Yields the stack and the demo keys."""
    stack = Stack(isolated_config(name, extra_env={"LOG_LEVEL": "WARNING"}))
    try:
        stack.prepare()
        stack.start_all()
        stack.wait_ready(timeout_s=90)
        keys = set_up_demo(stack, keys_file=None)
        asyncio.run(_unlimited(stack, "dev-trader"))
        yield stack, keys
    finally:
        stack.stop_all()


async def _unlimited(stack: Stack, client: str) -> None:
    """The bench's client gets a rate limit far above what it offers."""
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from gateway import admin

    engine = make_engine(stack.database_url(BY_NAME["gateway"]), pool_size=1)
    try:
        await admin.set_client_limit(
            UnitOfWork(make_sessionmaker(engine)), client=client, per_second=100_000
        )
    finally:
        await engine.dispose()


__all__ = ["json", "main"]
