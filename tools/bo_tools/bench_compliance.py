"""The compliance monitor under the bench's intake rate, with every default rule on.

`python -m bo_tools.bench_compliance [--trades 2000] [--rate 200]` starts its own cluster
(databases bo_bench_compliance_*), sends single trades open loop at the rate, waits until
the monitor has evaluated each, and reports:
- the evaluation time per trade (the service's `bo_compliance_evaluation_seconds`: rules,
  lists and projection read, every rule run, results stored; inside the consumed batch's
  transaction, before its commit), and the pure rule CPU time alone;
- the monitor's lag per trade: from the gateway capturing the trade to compliance having
  evaluated it (relay, broker and consume included), and the consumer lag in messages
  sampled from its /metrics while trades arrive.

`run()` does the measuring on a cluster that is already up (`bo bench` calls it).
Figures go to var/bench/compliance.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
import timeit
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families
from stdnum import isin as stdnum_isin

from bo_common.contracts import gateway as gateway_contract
from bo_common.db import asyncpg_dsn
from bo_common.envelope import Envelope, new_event
from bo_tools.bench import batch_intake, demo_stack, percentile, single_trades_at_rate
from bo_tools.demo import sample_trade
from bo_tools.stack import BY_NAME, ROOT, Stack, log, migrated_database, write_json

# Counterparties with SSIs in the US (so trades go on through settlement, as in `make
# bench`), and now and then the demo's name-matched one, which the watch list holds.
COUNTERPARTIES = ["784F5XWPLTWKTBV3E584"] * 10 + ["8I5DZWZKVSZI1NUHU748"] * 9
WATCHED_BY_NAME = "984500DEM0NAMEMATC09"


def _isins(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    bodies = ["US" + "".join(rng.choice(alphabet) for _ in range(9)) for _ in range(count)]
    return [body + stdnum_isin.calc_check_digit(body) for body in bodies]


def bench_trades(count: int, run: str, seed: int = 7) -> list[dict[str, str]]:
    """Trades that give every rule work: 20 ISINs over 10 accounts, both sides (wash
    candidates), prices within ±12 % (price deviations), a few large ones, now and then a
    watched counterparty."""
    rng = random.Random(seed)
    isins = _isins(20, seed)
    trades = []
    for n in range(count):
        large = n % 50 == 0
        trades.append(
            sample_trade(
                client_trade_id=f"BENCH-C-{run}-{n:06d}",
                account=f"ACC-{n % 10 + 1:03d}",
                side="BUY" if rng.random() < 0.5 else "SELL",
                isin=rng.choice(isins),
                quantity=str(rng.randint(20_000, 60_000) if large else rng.randint(1, 500)),
                price=str(Decimal(rng.randint(8_800, 11_200)) / 100),
                counterparty_lei=WATCHED_BY_NAME if n % 200 == 199 else rng.choice(COUNTERPARTIES),
            )
        )
    return trades


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """The monitor's evaluation histogram (sum, count, buckets) and consumer lag."""
    text = (await client.get("/metrics")).text
    found: dict[str, float] = {"consumer_lag_messages": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("bo_compliance_evaluation_seconds"):
                suffix = sample.name.removeprefix("bo_compliance_evaluation_seconds")
                key = f"le={sample.labels['le']}" if suffix == "_bucket" else suffix
                found[key] = sample.value
            elif (
                sample.name == "bo_consumer_lag_messages"
                and sample.labels.get("topic") == "trade.events"
            ):
                found["consumer_lag_messages"] += sample.value
    return found


def _histogram_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """The upper bound of the bucket holding quantile q of the observations in between."""
    buckets = sorted(
        (float(key[3:]), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith("le=")
    )
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


def rules_only_microseconds() -> float:
    """The pure evaluation of one trade with every default rule on, in this process: what
    the rules cost without the database (50 watched names, 20 recent trades, 20 holdings)."""
    from compliance_monitor import domain_rules
    from compliance_monitor.sessions import ExchangeSessions

    defaults = {
        "restricted_list": ("hold", {}),
        "watch_list": ("hold", {}),
        "large_trade": ("alert", {"default_threshold": "1000000"}),
        "wash_trade": ("alert", {}),
        "position_limit": ("alert", {"default_max_quantity": "1000000"}),
        "concentration_limit": ("alert", {}),
        "trading_session": ("alert", {}),
        "price_deviation": ("alert", {}),
    }
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    rules = [
        domain_rules.RuleVersion(
            name=kind,
            version=1,
            kind=kind,
            enabled=True,
            action=action,  # type: ignore[arg-type]
            severity="medium",
            parameters=domain_rules.parse_parameters(kind, parameters),
            effective_from=epoch,
        )
        for kind, (action, parameters) in defaults.items()
    ]
    now = datetime.now(UTC)
    trade = domain_rules.TradeFacts(
        "T",
        1,
        "ACC-001",
        "BUY",
        "US0378331005",
        Decimal(100),
        Decimal("189.25"),
        Decimal("18925"),
        "USD",
        "784F5XWPLTWKTBV3E584",
        "XNYS",
        now,
    )
    rng = random.Random(1)
    context = domain_rules.Context(
        watched_names=[
            domain_rules.ListEntry(f"Listed Entity {n} Holdings Limited", "list") for n in range(50)
        ],
        counterparty_name="Demo Clearing Broker A",
        recent_trades=[
            domain_rules.SeenTrade(
                f"S-{n}",
                "ACC-001",
                rng.choice(["BUY", "SELL"]),
                "US0378331005",
                Decimal("189") + n,
                now - timedelta(seconds=n * 10),
            )
            for n in range(20)
        ],
        other_holdings={f"ISIN{n}": (Decimal(100), Decimal(50)) for n in range(20)},
        last_price=domain_rules.PricePoint(Decimal("189"), now, "S-0"),
        sessions=ExchangeSessions(),
    )
    domain_rules.evaluate(trade, rules, context)  # calendars loaded
    loops = 2000
    seconds = timeit.timeit(lambda: domain_rules.evaluate(trade, rules, context), number=loops)
    return seconds / loops * 1e6


def _captured(order: dict[str, str], at: datetime) -> Envelope:
    """The trade.captured event the gateway would publish for this order."""
    quantity, price = Decimal(order["quantity"]), Decimal(order["price"])
    trade_id = str(uuid.uuid4())
    data = gateway_contract.TradeCaptured.model_validate(
        {**order, "trade_id": trade_id, "gross_amount": quantity * price, "desk": "DEMO"}
    )
    return new_event(
        type=gateway_contract.TRADE_CAPTURED,
        source="gateway",
        subject=trade_id,
        actor="bench",
        data=data.model_dump(mode="json"),
        time=at,
    )


async def handler_benchmark(trades: int = 2000, batch: int = 100) -> dict[str, float]:
    """The monitor's evaluation alone, in this process, on a database of its own built by
    its migrations with the default rules and the demo lists: trade.captured events applied
    `batch` to a transaction as the consume loop does (no broker, no other service). Wall
    and CPU time per trade: what a replica of the monitor can sustain."""
    from bo_common.auth import Principal, Role
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from compliance_monitor import casework, handlers

    # In a thread: creating the databases runs an event loop of its own.
    url = await asyncio.to_thread(
        migrated_database, "bench_compliance_handler", "compliance_monitor"
    )
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    officer = Principal(uuid.uuid4(), "bench-officer", Role.COMPLIANCE, None)
    try:
        lists = json.loads((ROOT / "services/compliance_monitor/demo/lists.json").read_text())
        for entry in lists["restricted"]:
            async with UnitOfWork(sessions) as uow:
                await casework.add_list_entry(
                    uow, list_="restricted", value=entry["isin"], reason="bench", actor="bench"
                )
        for entry in lists["watch"]:
            list_, value = (
                ("watch_lei", entry["lei"]) if "lei" in entry else ("watch_name", entry["name"])
            )
            async with UnitOfWork(sessions) as uow:
                await casework.add_list_entry(
                    uow, list_=list_, value=value, reason="bench", actor="bench"
                )
        for party in lists["counterparties"]:
            async with UnitOfWork(sessions) as uow:
                await casework.name_counterparty(
                    uow, lei=party["lei"], name=party["name"], actor=officer.actor
                )
        # Every event after the lists are in force.
        at = datetime.now(UTC) + timedelta(seconds=3)
        events = [_captured(order, at) for order in bench_trades(trades + 200, "handler")]

        async def apply(chunk: list[Envelope]) -> None:
            async with sessions() as session, session.begin():
                uow = UnitOfWork.bound(session)
                # As the consume loop applies a batch of trade.captured: one run.
                await handlers.evaluate_versions(chunk, uow)
                await uow.flush()

        for start in range(0, 200, batch):  # warm-up: calendars, statement caches
            await apply(events[start : start + batch])
        measured = events[200:]
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(measured), batch):
            await apply(measured[start : start + batch])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await engine.dispose()
    return {
        "handler_trades": float(len(measured)),
        "handler_batch": float(batch),
        "handler_ms_per_trade": wall / len(measured) * 1000,
        "handler_cpu_ms_per_trade": cpu / len(measured) * 1000,
        "handler_trades_per_s": len(measured) / wall,
    }


async def _sample_lag(client: httpx.AsyncClient, stop: asyncio.Event, peaks: list[float]) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            peaks.append((await _metrics(client))["consumer_lag_messages"])
        await asyncio.sleep(0.5)


async def _evaluated(
    stack: Stack, trade_ids: list[str], timeout_s: float
) -> tuple[dict[str, datetime], dict[str, datetime], dict[str, str]]:
    """When the gateway received each trade and when the monitor evaluated it."""
    compliance = await asyncpg.connect(
        asyncpg_dsn(stack.database_url(BY_NAME["compliance_monitor"]))
    )
    gateway = await asyncpg.connect(asyncpg_dsn(stack.database_url(BY_NAME["gateway"])))
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await compliance.fetch(
                "SELECT trade_id, evaluated_at, outcome FROM evaluations "
                "WHERE trade_id = ANY($1) AND version = 1",
                trade_ids,
            )
            if len(rows) == len(trade_ids):
                break
            if time.monotonic() > deadline:  # the figures say how many were not evaluated
                log(f"compliance: {len(rows)} of {len(trade_ids)} evaluated in {timeout_s}s")
                break
            await asyncio.sleep(0.25)
        received = await gateway.fetch(
            "SELECT trade_id, received_at FROM trades WHERE trade_id = ANY($1)", trade_ids
        )
    finally:
        await compliance.close()
        await gateway.close()
    return (
        {r["trade_id"]: r["received_at"] for r in received},
        {r["trade_id"]: r["evaluated_at"] for r in rows},
        {r["trade_id"]: r["outcome"] for r in rows},
    )


async def run(
    stack: Stack, keys: dict[str, str], *, trades: int = 2000, rate: float = 200
) -> dict[str, float]:
    """Send `trades` at `rate` to a running cluster (every default rule on) and measure the
    compliance monitor: evaluation time per trade and its lag behind intake."""
    tag = f"{int(time.time())}"
    orders = bench_trades(trades, tag)
    async with httpx.AsyncClient(base_url=stack.url("compliance_monitor"), timeout=10) as client:
        before = await _metrics(client)
        stop, peaks = asyncio.Event(), [0.0]
        sampler = asyncio.create_task(_sample_lag(client, stop, peaks))
        sent = await single_trades_at_rate(stack, keys["trader"], orders, rate)
        trade_ids: list[str] = sent["trade_ids"]
        sent_done = datetime.now(UTC)
        received, evaluated, outcomes = await _evaluated(
            stack, trade_ids, timeout_s=max(120, trades / 5)
        )
        stop.set()
        await sampler
        after = await _metrics(client)
    lags_ms = [
        (evaluated[t] - received[t]).total_seconds() * 1000
        for t in trade_ids
        if t in received and t in evaluated
    ]
    count = after.get("_count", 0.0) - before.get("_count", 0.0)
    total_s = after.get("_sum", 0.0) - before.get("_sum", 0.0)
    first, last = min(evaluated.values()), max(evaluated.values())
    span_s = max((last - first).total_seconds(), 1e-9)
    return {
        "trades": float(len(trade_ids)),
        "target_rate_per_s": rate,
        "achieved_rate_per_s": float(sent["achieved_rate"]),
        "intake_errors": float(sent["errors"]),
        "evaluations": count,
        "evaluation_ms_mean": total_s / count * 1000 if count else float("nan"),
        "evaluation_ms_p50_bucket": _histogram_quantile(before, after, 0.5) * 1000,
        "evaluation_ms_p99_bucket": _histogram_quantile(before, after, 0.99) * 1000,
        "rules_only_us_per_trade": rules_only_microseconds(),
        "evaluations_per_s": len(evaluated) / span_s,
        "lag_ms_p50": statistics.median(lags_ms),
        "lag_ms_p95": percentile(lags_ms, 0.95),
        "lag_ms_p99": percentile(lags_ms, 0.99),
        "lag_ms_max": max(lags_ms),
        "consumer_lag_messages_max": max(peaks),
        "drain_after_last_trade_s": max((last - sent_done).total_seconds(), 0.0),
        "held": float(sum(1 for o in outcomes.values() if o == "held")),
        "not_evaluated_in_time": float(len(trade_ids) - len(evaluated)),
    }


async def burst(stack: Stack, keys: dict[str, str], *, trades: int) -> dict[str, float]:
    """The monitor behind the batch route's full intake: `trades` through POST
    /v1/trades/batch (1,000 a batch, 2 clients) as fast as the gateway takes them, then
    until the monitor has evaluated each. Its rate with a backlog is what it can sustain."""
    orders = bench_trades(trades, f"{int(time.time())}-burst", seed=11)
    started = datetime.now(UTC)
    intake = await batch_intake(stack, keys["trader"], orders, batch_size=1000, clients=2)
    accepted = datetime.now(UTC)
    compliance = await asyncpg.connect(
        asyncpg_dsn(stack.database_url(BY_NAME["compliance_monitor"]))
    )
    gateway = await asyncpg.connect(asyncpg_dsn(stack.database_url(BY_NAME["gateway"])))
    try:
        rows = await gateway.fetch(
            "SELECT trade_id, received_at FROM trades WHERE received_at >= $1", started
        )
        received = {r["trade_id"]: r["received_at"] for r in rows}
        trade_ids = list(received)
        deadline = time.monotonic() + max(120.0, trades / 20)
        while True:
            done = await compliance.fetch(
                "SELECT trade_id, evaluated_at FROM evaluations "
                "WHERE trade_id = ANY($1) AND version = 1",
                trade_ids,
            )
            if len(done) == len(trade_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    finally:
        await compliance.close()
        await gateway.close()
    evaluated = {r["trade_id"]: r["evaluated_at"] for r in done}
    lags_ms = [(evaluated[t] - received[t]).total_seconds() * 1000 for t in evaluated]
    last = max(evaluated.values())
    return {
        "burst_trades": float(len(trade_ids)),
        "burst_intake_per_s": float(intake["trades_per_second"]),
        "burst_evaluations_per_s": len(evaluated) / max((last - started).total_seconds(), 1e-9),
        "burst_drain_after_intake_s": max((last - accepted).total_seconds(), 0.0),
        "burst_lag_ms_p50": statistics.median(lags_ms),
        "burst_lag_ms_p99": percentile(lags_ms, 0.99),
        "burst_not_evaluated_in_time": float(len(trade_ids) - len(evaluated)),
    }


def main(*, trades: int, rate: float) -> int:
    log(f"the evaluation alone: {trades} trade.captured events, 100 a transaction")
    alone = asyncio.run(handler_benchmark(trades))
    with demo_stack("bench_compliance") as (stack, keys):

        async def measure() -> dict[str, float]:
            log("warm-up: 300 trades at 100/s")
            await run(stack, keys, trades=300, rate=100)
            log(f"compliance: {trades} trades at {rate:.0f}/s, every default rule on")
            return await run(stack, keys, trades=trades, rate=rate)

        result = {**alone, **asyncio.run(measure())}
    write_json(
        ROOT / "var" / "bench" / "compliance.json",
        {"when": datetime.now(UTC).isoformat(), **result},
    )
    width = max(len(k) for k in result)
    for name, value in result.items():
        print(f"  {name:<{width}}  {value:>12.2f}")
    log(f"figures written to {ROOT / 'var' / 'bench' / 'compliance.json'}")
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    raise SystemExit(main(trades=arguments.trades, rate=arguments.rate))


__all__ = ["main", "run"]
