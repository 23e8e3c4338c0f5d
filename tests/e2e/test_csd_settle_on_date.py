"""The CSD simulator settling on the intended settlement date, as a real depository does:
switched at runtime through its rules document, it matches a trade at once and settles it
only when its (simulated) date has come; the matched instructions it keeps survive its
restart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth
from tests.e2e.test_iso20022_settlement import instruction_of
from tests.e2e.test_pipeline import wait_for_state

pytestmark = pytest.mark.e2e

# ISINs no other e2e test trades, so that netting leaves each trade on its own.
TESLA = "US88160R1014"
ALPHABET = "US02079K3059"
DEFAULT_DOCUMENT: dict[str, Any] = {"rules": []}


@pytest.fixture
async def simulator(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("csd_simulator"), timeout=10) as client:
        yield client
        # Back to the configured default (settle on receipt, the real date, no rules).
        (await client.put("/v1/rules", json=DEFAULT_DOCUMENT)).raise_for_status()


async def post_trade(gateway: httpx.AsyncClient, keys: dict[str, str], isin: str) -> str:
    response = await gateway.post(
        "/v1/trades", json=a_trade(isin=isin), headers=auth(keys["trader"])
    )
    assert response.status_code == 201, response.text
    trade_id: str = response.json()["trade_id"]
    return trade_id


async def kept_trades(simulator: httpx.AsyncClient) -> set[str]:
    response = await simulator.get("/v1/pending")
    response.raise_for_status()
    return {t for instruction in response.json() for t in instruction["trade_ids"]}


async def stays_matched(
    gateway: httpx.AsyncClient, key: str, trade_id: str, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = (await gateway.get(f"/v1/trades/{trade_id}", headers=auth(key))).json()
        assert view["state"] == "matched", view
        await asyncio.sleep(0.25)


async def test_on_intended_date_a_trade_is_matched_at_once_and_settles_on_its_date(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
    simulator: httpx.AsyncClient,
) -> None:
    switched = await simulator.put("/v1/rules", json={"settle_on": "intended_date"})
    assert switched.status_code == 200, switched.text
    assert switched.json() == {"rules": [], "settle_on": "intended_date", "as_of": None}

    # Traded today in the US: T+1, so due on a later date than the simulator's today.
    trade_id = await post_trade(gateway, keys, TESLA)
    await wait_for_state(gateway, keys["trader"], trade_id, "matched")
    instruction = await instruction_of(databases["settlement"], trade_id)
    settlement_date = instruction["settlement_date"]
    assert settlement_date > datetime.now(UTC).date()
    await stays_matched(gateway, keys["trader"], trade_id, seconds=3)
    assert trade_id in await kept_trades(simulator)

    # The day before: still not due.
    day_before = (settlement_date - timedelta(days=1)).isoformat()
    document = {"settle_on": "intended_date", "as_of": day_before}
    assert (await simulator.put("/v1/rules", json=document)).status_code == 200
    await stays_matched(gateway, keys["trader"], trade_id, seconds=2)

    # The intended settlement date comes: settled within the check interval (1 s).
    document = {"settle_on": "intended_date", "as_of": settlement_date.isoformat()}
    assert (await simulator.put("/v1/rules", json=document)).status_code == 200
    view = await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    types = [entry["type"] for entry in view["timeline"]]  # type: ignore[union-attr]
    assert types.index("settlement.matched") < types.index("settlement.settled")
    assert trade_id not in await kept_trades(simulator)
    settled = await instruction_of(databases["settlement"], trade_id)
    assert settled["state"] == "settled"


async def test_a_kept_instruction_survives_the_simulators_restart(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
) -> None:
    assert (
        await simulator.put("/v1/rules", json={"settle_on": "intended_date"})
    ).status_code == 200
    trade_id = await post_trade(gateway, keys, ALPHABET)
    await wait_for_state(gateway, keys["trader"], trade_id, "matched")
    assert trade_id in await kept_trades(simulator)

    # Killed without warning; it comes back with the configured default (settle on
    # receipt) and the instruction it kept, which is now due and settles.
    await asyncio.to_thread(stack.kill, "csd_simulator", signal.SIGKILL)
    stack.start("csd_simulator")
    await asyncio.to_thread(stack.wait_ready, ["csd_simulator"], 60)
    await wait_for_state(gateway, keys["trader"], trade_id, "settled", timeout_s=20)
    assert trade_id not in await kept_trades(simulator)
