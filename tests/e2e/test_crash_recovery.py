"""kill -9 any consumer service while trades flow, restart it: every trade is applied
exactly once in every service."""

from __future__ import annotations

import asyncio
import signal
import time
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, scalar

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRADES = 500
CONSUMERS = ["settlement", "ledger", "compliance_monitor", "audit", "gateway_worker", "gateway"]


async def post_with_retries(client: httpx.AsyncClient, key: str, trade: dict[str, str]) -> str:
    """A front office retries on any failure with the same client_trade_id (idempotent)."""
    for _ in range(600):
        try:
            response = await client.post("/v1/trades", json=trade, headers=auth(key))
            if response.status_code in (200, 201):
                return str(response.json()["trade_id"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"could not post {trade['client_trade_id']}")


async def test_killed_consumers_apply_every_trade_exactly_once(
    stack: Stack, keys: dict[str, str], databases: dict[str, AsyncEngine]
) -> None:
    batch = f"K{time.time_ns()}"
    trades = [
        a_trade(
            client_trade_id=f"{batch}-{n:04d}",
            account=f"ACC-{n % 10 + 1:03d}",
            side="BUY" if n % 3 else "SELL",
            quantity=str(n + 1),
            price="10.5",
        )
        for n in range(TRADES)
    ]

    async def post_all() -> list[str]:
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=5) as client:
            semaphore = asyncio.Semaphore(8)

            async def one(trade: dict[str, str]) -> str:
                async with semaphore:
                    return await post_with_retries(client, keys["trader"], trade)

            return list(await asyncio.gather(*(one(t) for t in trades)))

    async def kill_each_in_turn() -> None:
        for name in CONSUMERS:
            await asyncio.sleep(0.7)
            await asyncio.to_thread(stack.kill, name, signal.SIGKILL)
            await asyncio.sleep(0.3)
            stack.start(name)
        await asyncio.to_thread(stack.wait_ready, CONSUMERS, 60)

    trade_ids, _ = await asyncio.gather(post_all(), kill_each_in_turn())
    assert len(set(trade_ids)) == TRADES

    ids = tuple(trade_ids)
    expected_quantity = sum(Decimal(t["quantity"]) for t in trades)

    async def applied_everywhere() -> dict[str, object]:
        return {
            "gateway settled": await scalar(
                databases["gateway"],
                "SELECT count(*) FROM trades WHERE trade_id = ANY(:ids) AND state = 'settled'",
                ids=list(ids),
            ),
            "obligations settled": await scalar(
                databases["settlement"],
                "SELECT count(*) FROM obligations WHERE trade_id = ANY(:ids) AND state = 'settled'",
                ids=list(ids),
            ),
            # Netting may cover several trades with one instruction: every trade is
            # covered by exactly one.
            "instructed trades": await scalar(
                databases["settlement"],
                "SELECT count(*) FROM instructions, unnest(trade_ids) AS t(trade_id) "
                "WHERE t.trade_id = ANY(:ids)",
                ids=list(ids),
            ),
            "journal entries": await scalar(
                databases["ledger"],
                "SELECT count(*) FROM journal_entries WHERE trade_id = ANY(:ids)",
                ids=list(ids),
            ),
            "evaluations": await scalar(
                databases["compliance_monitor"],
                "SELECT count(*) FROM evaluations WHERE trade_id = ANY(:ids)",
                ids=list(ids),
            ),
            "audited captures": await scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE correlation_id = ANY(:ids) "
                "AND event_type = 'trade.captured'",
                ids=list(ids),
            ),
            "audited settlements": await scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE correlation_id = ANY(:ids) "
                "AND event_type = 'settlement.settled'",
                ids=list(ids),
            ),
        }

    expected = {
        "gateway settled": TRADES,
        "obligations settled": TRADES,
        "instructed trades": TRADES,
        "journal entries": 2 * TRADES,
        "evaluations": TRADES,
        "audited captures": TRADES,
        "audited settlements": TRADES,
    }
    deadline = time.monotonic() + 120
    counts = await applied_everywhere()
    while counts != expected and time.monotonic() < deadline:
        await asyncio.sleep(1)
        counts = await applied_everywhere()
    assert counts == expected

    # Sums agree, not only counts: the ledger booked each quantity once.
    booked = await scalar(
        databases["ledger"],
        "SELECT sum(l.debit) FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE e.trade_id = ANY(:ids) AND e.kind = 'pending' AND l.unit = 'US0378331005'",
        ids=list(ids),
    )
    assert booked == expected_quantity
    obligated = await scalar(
        databases["settlement"],
        "SELECT sum(quantity) FROM obligations WHERE trade_id = ANY(:ids)",
        ids=list(ids),
    )
    assert obligated == expected_quantity
    # No event of these trades was recorded twice, and the chain still verifies.
    duplicates = await scalar(
        databases["audit"],
        "SELECT count(*) - count(DISTINCT payload_hash) FROM audit_records "
        "WHERE correlation_id = ANY(:ids)",
        ids=list(ids),
    )
    assert duplicates == 0
    async with httpx.AsyncClient(base_url=stack.url("audit"), timeout=30) as client:
        verification = (await client.get("/v1/verify", headers=auth(keys["compliance"]))).json()
    assert verification["valid"] is True, verification
