"""The ledger's two figures: journal lines applied per second from the topics, and the p99
of an as-of balance query on a client account with a long history.

`python -m bo_tools.bench_ledger` starts a stack of its own (databases bo_bench_ledger_*,
a fresh broker) with only the ledger running, so that the figure is the ledger's own. `run`
can also be given a running stack (e.g. by `bo bench`): the events it puts on the topics
are then read by the other services too.

1. Throughput: `trades` synthetic trades, each a trade.captured on trade.events and a
   settlement.settled on settlement.events (12 journal lines a trade: 4 pending, 8
   settled), produced as fast as the broker takes them. The rate is the lines the ledger
   wrote divided by the time between its first and its last posting (`posted_at`), so it
   does not count the time the events took to reach the broker. On a shared machine the
   rate follows the load (the services run at nice 10); `journal_lines_per_cpu_second`
   (CPU of the ledger process and its PostgreSQL backends, from /proc) does not.
2. As-of latency: a client account is given `history_lines` lines (half that many
   entries, spread over 500 days of effective time) in one statement, then `queries`
   GET /v1/accounts/{account}/balances?as_of=<a random instant of that history> are timed
   one after the other, then the same query without HTTP (`balances_as_of`, the route's
   own function, on one connection), then GET /healthz of the same process as a baseline
   of what HTTP and the process's CPU share cost (the services run at nice 10).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bo_common.auth import hash_key
from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.envelope import new_event
from bo_common.kafka import start_producer
from bo_common.settings import KafkaSettings
from bo_common.topics import SETTLEMENT_EVENTS, TRADE_EVENTS
from bo_tools.stack import BY_NAME, ROOT, Stack, isolated_config, log, write_json

LEI = "784F5XWPLTWKTBV3E584"
ISIN = "US0378331005"
LINES_PER_TRADE = 12  # pending: 4 (securities and cash, both sides); settled: 8


def _events(run: str, trades: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(key, value) of each trade.captured and each settlement.settled of the run."""
    captures, settlements = [], []
    for n in range(trades):
        trade_id = f"bl-{run}-{n:07d}"
        account = f"BL-{run}-{n % 200:03d}"
        side = "BUY" if n % 2 else "SELL"
        quantity = Decimal(n % 500 + 1)
        price = Decimal("10.005")
        gross = quantity * price
        captured = gateway_contract.TradeCaptured(
            trade_id=trade_id,
            client_trade_id=f"FO-{trade_id}",
            account=account,
            side=side,
            isin=ISIN,
            quantity=quantity,
            price=price,
            currency="USD",
            gross_amount=gross,
            trade_date=date.today(),
            trade_time=datetime.now(UTC),
            venue="XNYS",
            counterparty_lei=LEI,
            settlement_type="DVP",
        )
        settled = settlement_contract.SettlementSettled(
            trade_id=trade_id,
            instruction_id=f"I-{trade_id}",
            account=account,
            side=side,
            isin=ISIN,
            quantity=quantity,
            amount=gross.quantize(Decimal("0.01")),
            currency="USD",
            settlement_date=date.today(),
            counterparty_lei=LEI,
            # Where it settled, as settlement states it (the demo SSI of LEI in the US).
            depository="DTCYUS33XXX",
            custodian_bic="IRVTUS3NXXX",
            safekeeping_account="SAFE-US-A-001",
        )
        for type_, data, out in (
            (gateway_contract.TRADE_CAPTURED, captured, captures),
            (settlement_contract.SETTLED, settled, settlements),
        ):
            envelope = new_event(
                type=type_,
                source="bench",
                subject=trade_id,
                actor="bench:ledger",
                data=data.model_dump(mode="json"),
            )
            out.append((account, envelope.to_bytes()))
    return captures, settlements


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cpu_of_ledger(stack: Stack, engine: Any) -> float:
    """CPU seconds used so far by the ledger's process and by the PostgreSQL backends
    serving its database (0 for a ledger this bench did not start)."""
    process = stack.processes.get("ledger")
    total = _cpu_seconds(process.pid) if process is not None else 0.0
    async with engine.connect() as connection:
        pids = (
            await connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        ).scalars()
        total += sum(_cpu_seconds(pid) for pid in pids)
    return total


async def measure_throughput(stack: Stack, database_url: str, trades: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    captures, settlements = _events(run, trades)
    producer = await start_producer(
        KafkaSettings(bootstrap_servers=stack.bootstrap, enable_idempotence=False),
        client_id="bench-ledger",
    )
    engine = create_async_engine(database_url, pool_size=1)
    try:
        cpu_before = await _cpu_of_ledger(stack, engine)
        started = time.monotonic()
        for topic, events in ((TRADE_EVENTS, captures), (SETTLEMENT_EVENTS, settlements)):
            for key, value in events:
                await producer.send(topic, value, key=key.encode())
        await producer.flush()
        produced_s = time.monotonic() - started
        expected = trades * LINES_PER_TRADE
        deadline = time.monotonic() + max(120.0, trades / 50)
        query = sa.text(
            "SELECT count(*), min(e.posted_at), max(e.posted_at) FROM journal_entries e "
            "JOIN journal_lines l USING (entry_id) WHERE e.trade_id LIKE :prefix"
        )
        while True:
            async with engine.connect() as connection:
                lines, first, last = (
                    await connection.execute(query, {"prefix": f"bl-{run}-%"})
                ).one()
            if lines >= expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ledger applied {lines} of {expected} lines")
            await asyncio.sleep(0.25)
        wall_s = time.monotonic() - started
        cpu_s = await _cpu_of_ledger(stack, engine) - cpu_before
    finally:
        await producer.stop()
        await engine.dispose()
    apply_s = max((last - first).total_seconds(), 1e-6)
    return {
        "trades": float(trades),
        "journal_lines": float(lines),
        "produce_seconds": produced_s,
        "apply_seconds": apply_s,
        "journal_lines_per_second": lines / apply_s,
        "wall_seconds": wall_s,
        "wall_journal_lines_per_second": lines / wall_s,
        # Independent of how loaded the machine is: lines per CPU second spent by the
        # ledger process and its PostgreSQL backends (the broker's share not counted).
        "ledger_and_database_cpu_seconds": cpu_s,
        "journal_lines_per_cpu_second": lines / cpu_s if cpu_s else 0.0,
        "load_average_1m": os.getloadavg()[0],
    }


async def seed_history(database_url: str, account: str, lines: int) -> tuple[datetime, datetime]:
    """`lines` lines on the client account (cash and securities), half as many entries
    over 500 days of effective time, in one statement each for entries and lines. Returns
    the first and last effective time."""
    entries = max(lines // 2, 1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = timedelta(days=500)
    step_s = span.total_seconds() / entries
    engine = create_async_engine(database_url, pool_size=1)
    prefix = f"hist-{account}-"
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO journal_entries (entry_id, trade_id, account, kind, event_id, "
                    "event_type, posted_at, effective_at, version) "
                    "SELECT :p || i, :p || i, :a, 'settled', 'bench', 'bench.seed', now(), "
                    "CAST(:start_at AS timestamptz) "
                    "+ make_interval(secs => i * CAST(:step AS float8)), 1 "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"p": prefix, "a": account, "start_at": start, "step": step_s, "n": entries},
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO journal_lines (entry_id, line_no, ledger_account, unit, debit, "
                    "credit, effective_at) "
                    "SELECT :p || i, v.line_no, v.account, v.unit, "
                    "CASE WHEN v.debit THEN (i % 97 + 1) * v.scale ELSE 0 END, "
                    "CASE WHEN v.debit THEN 0 ELSE (i % 97 + 1) * v.scale END, "
                    "CAST(:start_at AS timestamptz) "
                    "+ make_interval(secs => i * CAST(:step AS float8)) "
                    "FROM generate_series(1, :n) AS i, (VALUES "
                    "(1, :client_securities, :isin, true, 1.0), "
                    "(2, :street_securities, :isin, false, 1.0), "
                    "(3, :street_cash, 'USD', true, 10.01), "
                    "(4, :client_cash, 'USD', false, 10.01)"
                    ") AS v(line_no, account, unit, debit, scale)"
                ),
                {"p": prefix, "isin": ISIN, "start_at": start, "step": step_s, "n": entries,
                 "client_securities": f"client:{account}:securities",
                 "client_cash": f"client:{account}:cash",
                 "street_securities": f"street:{LEI}:securities",
                 "street_cash": f"street:{LEI}:cash"},
            )  # fmt: skip
            await connection.execute(
                sa.text(
                    "INSERT INTO ledger_accounts (ledger_account, unit, account_type, "
                    "normal_side, owner, asset_class, phase, created_at) VALUES "
                    "(:client_securities, :isin, 'client', 'debit', :a, "
                    "'securities', 'settled', now()), "
                    "(:client_cash, 'USD', 'client', 'debit', :a, 'cash', "
                    "'settled', now()) ON CONFLICT DO NOTHING"
                ),
                {
                    "a": account,
                    "isin": ISIN,
                    "client_securities": f"client:{account}:securities",
                    "client_cash": f"client:{account}:cash",
                },
            )
        async with engine.connect() as connection:
            await connection.execute(sa.text("COMMIT"))
            await connection.execute(sa.text("VACUUM ANALYZE journal_lines"))
            await connection.execute(sa.text("VACUUM ANALYZE balance_days"))
    finally:
        await engine.dispose()
    return start + timedelta(seconds=step_s), start + span


def _percentiles(name: str, values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        f"{name}_p50_ms": statistics.median(ordered),
        f"{name}_p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        f"{name}_max_ms": ordered[-1],
    }


async def measure_as_of(
    stack: Stack, database_url: str, key: str, history_lines: int, queries: int
) -> dict[str, float]:
    from bo_common.db import make_engine, make_sessionmaker
    from ledger.api import balances_as_of
    from ledger.domain_accounts import client_account_names

    account = f"HIST-{uuid.uuid4().hex[:8]}"
    seeded = time.monotonic()
    first, last = await seed_history(database_url, account, history_lines)
    seed_s = time.monotonic() - seeded
    span = (last - first).total_seconds()
    randomness = random.Random(7)
    instants = [first + timedelta(seconds=randomness.random() * span) for _ in range(queries)]

    http_ms: list[float] = []
    healthz_ms: list[float] = []
    async with httpx.AsyncClient(
        base_url=stack.url("ledger"), headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        for instant in instants[:20]:  # warm-up: connections, plans, caches
            (
                await client.get(
                    f"/v1/accounts/{account}/balances", params={"as_of": instant.isoformat()}
                )
            ).raise_for_status()
        for instant in instants:
            started = time.perf_counter()
            response = await client.get(
                f"/v1/accounts/{account}/balances", params={"as_of": instant.isoformat()}
            )
            http_ms.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        # The same process answering GET /healthz (no database): what HTTP and the
        # process's share of the CPU cost on their own, to read the figure above against.
        for _ in instants:
            started = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            healthz_ms.append((time.perf_counter() - started) * 1000)

    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    sql_ms: list[float] = []
    try:
        names = client_account_names(account)
        async with sessions() as session:
            for instant in instants[:20]:
                await balances_as_of(session, names, instant)
            for instant in instants:
                started = time.perf_counter()
                await balances_as_of(session, names, instant)
                sql_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await engine.dispose()
    return {
        "history_lines": float(history_lines),
        "seed_seconds": seed_s,
        "queries": float(queries),
        **_percentiles("as_of_http", http_ms),
        **_percentiles("healthz_http", healthz_ms),
        **_percentiles("as_of_sql", sql_ms),
    }


async def _ops_key(database_url: str) -> str:
    """An ops key written straight into the ledger's key table (no gateway runs here)."""
    key = f"bo_{secrets.token_urlsafe(32)}"
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO api_keys (key_hash, key_id, name, role, desk, created_at) "
                    "VALUES (:h, :id, :n, 'ops', NULL, now())"
                ),
                {"h": hash_key(key), "id": uuid.uuid4(), "n": f"bench-ledger-{key[-6:]}"},
            )
    finally:
        await engine.dispose()
    return key


async def run(
    *,
    stack: Stack | None = None,
    key: str | None = None,
    trades: int = 5000,
    history_lines: int = 100_000,
    queries: int = 500,
) -> dict[str, float]:
    """Both measures against `stack` (a running one, whose ledger knows `key`, a reader's
    key), or against a stack of its own with only the ledger running."""
    own = stack is None
    if stack is None:
        stack = Stack(isolated_config("bench_ledger", extra_env={"LOG_LEVEL": "WARNING"}))
        await asyncio.to_thread(stack.prepare)
        stack.start("ledger")
        await asyncio.to_thread(stack.wait_ready, ["ledger"], 90)
    try:
        database_url = stack.database_url(BY_NAME["ledger"])
        if key is None:
            key = await _ops_key(database_url)
        log(f"ledger throughput: {trades} trades (capture + settlement) through the topics")
        result = await measure_throughput(stack, database_url, trades)
        log(f"  {result['journal_lines_per_second']:,.0f} journal lines/s")
        log(f"as-of balances: {history_lines} lines on one account, {queries} queries")
        result |= await measure_as_of(stack, database_url, key, history_lines, queries)
    finally:
        if own:
            await asyncio.to_thread(stack.stop_all)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=5000)
    parser.add_argument("--history-lines", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args(argv)
    result: dict[str, Any] = asyncio.run(
        run(trades=args.trades, history_lines=args.history_lines, queries=args.queries)
    )
    result = {"when": datetime.now(UTC).isoformat(), **result}
    write_json(ROOT / "var" / "bench" / "ledger.json", result)
    width = max(len(name) for name in result)
    for name, value in result.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {name:<{width}}  {shown:>20}")
    log(f"figures written to {ROOT / 'var' / 'bench' / 'ledger.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
