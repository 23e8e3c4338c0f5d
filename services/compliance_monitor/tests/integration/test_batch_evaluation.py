"""A run of trade versions evaluated together (handlers.evaluate_versions, what the consume
loop does) stores and publishes exactly what evaluating them one at a time does, where each
event reads the projection back from the tables: the same evaluations, alerts, holds,
positions, last prices and events. So the run's in-memory slice (domain_projection) and
what it stores follow the stored projection. Against the real PostgreSQL, two databases of
the monitor built by its migrations, every default rule on, the demo lists.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bo_common.contracts import gateway as gateway_contract
from bo_common.db import make_engine, make_sessionmaker
from bo_common.envelope import Envelope, new_event
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import ROOT, migrated_database
from compliance_monitor import casework, handlers
from compliance_monitor.reference import ReferenceCache

pytestmark = pytest.mark.slow

ACCOUNTS = ["ACC-001", "ACC-002", "ACC-003"]
# The last is on the demo restricted list.
ISINS = ["US0378331005", "US5949181045", "US88160R1014", "US36467W1099"]
LEIS = ["784F5XWPLTWKTBV3E584", "984500DEM0NAMEMATC09", "984500DEM0WATCH0LE78"]
T0 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def _terms(rng: random.Random, n: int) -> dict[str, Any]:
    quantity = Decimal(rng.choice([rng.randint(1, 400), rng.randint(20_000, 60_000)]))
    price = Decimal(rng.randint(9_000, 11_000)) / 100
    return {
        "side": rng.choice(["BUY", "SELL"]),
        "isin": rng.choice(ISINS),
        "quantity": str(quantity),
        "price": str(price),
        "currency": "USD",
        "gross_amount": str(quantity * price),
        "trade_date": T0.date().isoformat(),
        # Close together (wash trade windows) and now and then out of the session.
        "trade_time": (T0 + timedelta(seconds=n * 7 + rng.choice([0, 0, 0, 30_000]))).isoformat(),
        "venue": "XNYS",
        "settlement_type": "DVP",
        "counterparty_lei": rng.choice(LEIS * 6 + ["W22LROWP2IHZNBB6K528"]),
    }


def events(seed: int, count: int, at: datetime) -> list[Envelope]:
    """Captures, amendments (new terms, sometimes another ISIN), cancellations and stale
    redeliveries of earlier versions, interleaved."""
    rng = random.Random(seed)
    current: dict[str, dict[str, Any]] = {}
    cancelled: set[str] = set()
    out: list[Envelope] = []
    for n in range(count):
        roll = rng.random()
        live = [t for t in current if t not in cancelled]
        if live and roll < 0.15:
            trade_id = rng.choice(live)
            data = {
                **current[trade_id],
                **_terms(rng, n),
                "version": current[trade_id]["version"] + 1,
                "reason": "test",
                "changed_fields": ["quantity"],
            }
            data["trade_time"] = current[trade_id]["trade_time"]
            current[trade_id] = data
            kind = gateway_contract.TRADE_AMENDED
        elif live and roll < 0.22:
            trade_id = rng.choice(live)
            cancelled.add(trade_id)
            data = {
                key: current[trade_id][key]
                for key in ("trade_id", "client_trade_id", "account", "version")
            } | {"reason": "test"}
            kind = gateway_contract.TRADE_CANCELLED
        elif out and roll < 0.25:
            out.append(rng.choice(out))  # a redelivery of an earlier event
            continue
        else:
            trade_id = str(uuid.UUID(int=rng.getrandbits(128)))
            data = {
                "trade_id": trade_id,
                "client_trade_id": f"T-{seed}-{n}",
                "account": rng.choice(ACCOUNTS),
                "version": 1,
                **_terms(rng, n),
            }
            current[trade_id] = data
            kind = gateway_contract.TRADE_CAPTURED
        out.append(
            new_event(
                type=kind,
                source="gateway",
                subject=data["trade_id"],
                actor="test",
                data=data,
                time=at,
            )
        )
    return out


async def _monitor_database(name: str) -> AsyncEngine:
    url = await asyncio.to_thread(migrated_database, name, "compliance_monitor")
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    lists = json.loads((ROOT / "services/compliance_monitor/demo/lists.json").read_text())
    for entry in lists["restricted"]:
        async with UnitOfWork(sessions) as uow:
            await casework.add_list_entry(
                uow, list_="restricted", value=entry["isin"], reason="test", actor="test"
            )
            await uow.commit()
    for entry in lists["watch"]:
        list_, value = (
            ("watch_lei", entry["lei"]) if "lei" in entry else ("watch_name", entry["name"])
        )
        async with UnitOfWork(sessions) as uow:
            await casework.add_list_entry(uow, list_=list_, value=value, reason="t", actor="t")
            await uow.commit()
    for party in lists["counterparties"]:
        async with UnitOfWork(sessions) as uow:
            await casework.name_counterparty(uow, lei=party["lei"], name=party["name"], actor="t")
            await uow.commit()
    return engine


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    one = await _monitor_database("compliance_one_by_one")
    runs = await _monitor_database("compliance_runs")
    yield one, runs
    await one.dispose()
    await runs.dispose()


ONE_AT_A_TIME = {
    gateway_contract.TRADE_CAPTURED: handlers.evaluate_trade,
    gateway_contract.TRADE_AMENDED: handlers.evaluate_amendment,
    gateway_contract.TRADE_CANCELLED: handlers.cancel_trade,
}


async def apply(
    sessions: async_sessionmaker[Any], chunks: list[list[Envelope]], *, in_runs: bool
) -> None:
    """Each chunk in one transaction, as a consumed batch: event by event, or runs of
    versions together with each cancellation on its own (as the consume loop groups them)."""
    for chunk in chunks:
        async with sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            run: list[Envelope] = []
            for event in chunk:
                if in_runs and event.type != gateway_contract.TRADE_CANCELLED:
                    run.append(event)
                    continue
                if run:
                    await handlers.evaluate_versions(run, uow)
                    run = []
                await ONE_AT_A_TIME[event.type](event, uow)
            if run:
                await handlers.evaluate_versions(run, uow)
            await uow.flush()


STATE = {
    "evaluations": "SELECT trade_id, version, account, outcome, results FROM evaluations "
    "ORDER BY trade_id, version",
    "alerts": "SELECT alert_id, trade_id, version, rule, rule_version, severity, blocking, "
    "detail, evidence, state, closed_reason FROM alerts ORDER BY alert_id",
    "holds": "SELECT trade_id, version, state, rules, close_reason FROM holds "
    "ORDER BY trade_id, version",
    "positions": "SELECT account, isin, quantity FROM positions ORDER BY account, isin",
    "last_prices": "SELECT isin, currency, price, trade_time, trade_id FROM last_prices "
    "ORDER BY isin, currency",
    "trades": "SELECT trade_id, account, version, cancelled_at IS NOT NULL, side, isin, "
    "quantity, price, currency, trade_time FROM trades ORDER BY trade_id",
}


async def state(engine: AsyncEngine) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with engine.connect() as connection:
        for name, sql in STATE.items():
            found[name] = [tuple(row) for row in await connection.execute(sa.text(sql))]
        published = await connection.execute(
            sa.text("SELECT event_type, payload FROM outbox ORDER BY seq")
        )
        # What the trades caused (the lists and names set up before are not the same twice).
        found["events"] = [
            (event_type, data)
            for event_type, payload in published
            if "trade_id" in (data := json.loads(payload)["data"])
        ]
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_runs_decide_as_one_at_a_time(
    engines: tuple[AsyncEngine, AsyncEngine], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, runs = engines
    at = datetime.now(UTC) + timedelta(seconds=2)
    sequence = events(seed, 160, at)
    rng = random.Random(seed)
    chunks: list[list[Envelope]] = []
    rest = list(sequence)
    while rest:
        size = rng.choice([1, 3, 17, 60])
        chunks.append(rest[:size])
        rest = rest[size:]
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
    monkeypatch.setattr(handlers, "REFERENCE", ReferenceCache())
    await apply(make_sessionmaker(one), chunks, in_runs=False)
    monkeypatch.setattr(handlers, "REFERENCE", ReferenceCache())
    await apply(make_sessionmaker(runs), chunks, in_runs=True)
    expected, got = await state(one), await state(runs)
    # The sequence gives every rule and path work.
    rules = {row[3] for row in expected["alerts"]}
    assert {"wash-trade", "restricted-list", "price-deviation", "large-trade"} <= rules
    assert any(row[2] != "open" for row in expected["holds"])
    assert any(row[3] for row in expected["trades"])  # cancellations
    for name in expected:
        assert got[name] == expected[name], name
