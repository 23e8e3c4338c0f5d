"""Stopping a service: SIGTERM under load drains within the bound (the batch under way is
applied and committed, the outbox flushed) and nothing is lost or doubled once it is back;
a consume loop that stops making progress turns /readyz false within its bound."""

from __future__ import annotations

import asyncio
import signal
import time
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.settings import ServiceSettings
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, scalar

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRADES = 300
# Each in turn; the gateway's worker is the gateway's consumer and relay.
STOPPED = ["settlement", "ledger", "compliance_monitor", "audit", "gateway_worker"]
DATABASE_OF = {"gateway_worker": "gateway"}
# The runtime's own bound, plus the time Python takes to tear down after it.
BOUND_S = ServiceSettings().shutdown_timeout_s + 5


async def post(client: httpx.AsyncClient, key: str, trade: dict[str, str]) -> str:
    for _ in range(300):
        try:
            response = await client.post("/v1/trades", json=trade, headers=auth(key))
            if response.status_code in (200, 201):
                return str(response.json()["trade_id"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"could not post {trade['client_trade_id']}")


def terminate(stack: Stack, name: str) -> float:
    """SIGTERM, and the seconds until the process has exited."""
    started = time.monotonic()
    stack.kill(name, signal.SIGTERM)
    return time.monotonic() - started


async def test_sigterm_under_load_drains_in_bound_and_loses_or_doubles_nothing(
    stack: Stack, keys: dict[str, str], databases: dict[str, AsyncEngine]
) -> None:
    batch = f"S{time.time_ns()}"
    trades = [
        a_trade(
            client_trade_id=f"{batch}-{n:04d}",
            account=f"ACC-{n % 10 + 1:03d}",
            quantity=str(n + 1),
            price="12.5",
        )
        for n in range(TRADES)
    ]

    async def post_all() -> list[str]:
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=5) as client:
            semaphore = asyncio.Semaphore(8)

            async def one(trade: dict[str, str]) -> str:
                async with semaphore:
                    return await post(client, keys["trader"], trade)

            return list(await asyncio.gather(*(one(t) for t in trades)))

    stops: dict[str, float] = {}
    unsent_after_stop: dict[str, int] = {}

    async def terminate_each_in_turn() -> None:
        for name in STOPPED:
            await asyncio.sleep(1.0)
            stops[name] = await asyncio.to_thread(terminate, stack, name)
            # Flushed on the way out: nothing of this process is left unsent. (The
            # gateway's API process writes to the same outbox, so it is not counted.)
            if name != "gateway_worker":
                unsent_after_stop[name] = await scalar(
                    databases[DATABASE_OF.get(name, name)],
                    "SELECT count(*) FROM outbox_pending",
                )
            stack.start(name)
        await asyncio.to_thread(stack.wait_ready, STOPPED, 90)

    trade_ids, _ = await asyncio.gather(post_all(), terminate_each_in_turn())
    assert len(set(trade_ids)) == TRADES
    assert all(seconds < BOUND_S for seconds in stops.values()), stops
    assert unsent_after_stop == dict.fromkeys(unsent_after_stop, 0)

    ids = list(trade_ids)

    async def counts() -> dict[str, int]:
        return {
            "gateway settled": await scalar(
                databases["gateway"],
                "SELECT count(*) FROM trades WHERE trade_id = ANY(:ids) AND state = 'settled'",
                ids=ids,
            ),
            "obligations": await scalar(
                databases["settlement"],
                "SELECT count(*) FROM obligations WHERE trade_id = ANY(:ids) AND state = 'settled'",
                ids=ids,
            ),
            "journal entries": await scalar(
                databases["ledger"],
                "SELECT count(*) FROM journal_entries WHERE trade_id = ANY(:ids)",
                ids=ids,
            ),
            "evaluations": await scalar(
                databases["compliance_monitor"],
                "SELECT count(*) FROM evaluations WHERE trade_id = ANY(:ids)",
                ids=ids,
            ),
            "audited settlements": await scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE correlation_id = ANY(:ids) "
                "AND event_type = 'settlement.settled'",
                ids=ids,
            ),
        }

    expected = {
        "gateway settled": TRADES,
        "obligations": TRADES,
        "journal entries": 2 * TRADES,
        "evaluations": TRADES,
        "audited settlements": TRADES,
    }

    async def all_applied() -> bool:
        return await counts() == expected

    try:
        await eventually(all_applied, "every trade applied once everywhere", 180)
    except AssertionError:
        assert await counts() == expected
    booked = await scalar(
        databases["ledger"],
        "SELECT sum(l.debit) FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE e.trade_id = ANY(:ids) AND e.kind = 'pending' AND l.unit = 'US0378331005'",
        ids=ids,
    )
    assert booked == sum(Decimal(t["quantity"]) for t in trades)
    duplicates = await scalar(
        databases["audit"],
        "SELECT count(*) - count(DISTINCT payload_hash) FROM audit_records "
        "WHERE correlation_id = ANY(:ids)",
        ids=ids,
    )
    assert duplicates == 0


async def test_a_consumer_that_stops_making_progress_is_not_ready_within_its_bound(
    stack: Stack, keys: dict[str, str], databases: dict[str, AsyncEngine]
) -> None:
    bound_s = 3
    await asyncio.to_thread(
        _restart_with, stack, "ledger", {"LEDGER_CONSUMER_STALL_TIMEOUT_S": str(bound_s)}
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            ledger = stack.url("ledger")
            assert (await client.get(f"{ledger}/readyz")).status_code == 200
            # The ledger's handlers insert into its inbox: holding the table's lock keeps
            # its consume loop waiting inside the batch.
            async with databases["ledger"].connect() as blocker:
                await blocker.execute(sa.text("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"))
                response = await client.post(
                    f"{stack.url('gateway')}/v1/trades",
                    json=a_trade(),
                    headers=auth(keys["trader"]),
                )
                trade_id = response.json()["trade_id"]
                blocked_at = time.monotonic()

                async def not_ready() -> dict[str, object] | None:
                    answer = await client.get(f"{ledger}/readyz")
                    return answer.json() if answer.status_code == 503 else None

                body = await eventually(not_ready, "the stalled ledger is not ready", 30)
                # Within the bound, plus the time the trade takes to reach the ledger.
                assert time.monotonic() - blocked_at < bound_s + 10
                assert str(body["checks"]["consumer"]).startswith("stalled")  # type: ignore[index]
                await blocker.rollback()

            async def ready() -> bool:
                return (await client.get(f"{ledger}/readyz")).status_code == 200

            await eventually(ready, "the ledger is ready again once it progresses", 30)

            async def booked() -> bool:
                count = await scalar(
                    databases["ledger"],
                    "SELECT count(*) FROM journal_entries WHERE trade_id = :t",
                    t=trade_id,
                )
                return bool(count)

            await eventually(booked, "the held trade is booked", 30)
    finally:
        await asyncio.to_thread(_restart_with, stack, "ledger", {})


def _restart_with(stack: Stack, name: str, env: dict[str, str]) -> None:
    stack.kill(name, signal.SIGTERM)
    stack.config.extra_env.update(env)
    try:
        stack.start(name)
    finally:
        for key in env:
            stack.config.extra_env.pop(key, None)
    stack.wait_ready([name], 60)
