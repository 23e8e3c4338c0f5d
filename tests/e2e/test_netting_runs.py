"""Netting runs end to end: trades of one counterparty, ISIN, currency, date and SSI are
netted into one instruction by the automatic cycle or by POST /v1/netting-runs; each trade
settles on its own terms in the ledger; a counterparty with netting off settles gross.
Every netted group is one instruction: a receive with payment (receive and be paid) and a
payment free of delivery (the same quantity both ways at different prices) settle too.

The stack runs the cycle every 2 s (the default). To see two trades netted together, and
to drive the manual route, a test holds the cycle's advisory lock (as another replica
running a cycle would): the cycle skips while it is held, so the trades wait, ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import Stack
from settlement.runs import CYCLE_LOCK
from tests.conftest import a_trade, auth
from tests.e2e.test_pipeline import wait_for_state
from tests.e2e.test_settlement_changes import fresh_lei

pytestmark = pytest.mark.e2e

# ISINs no other test trades, so that only this file's trades net together.
IBM = "US4592001014"
COCA_COLA = "US1912161007"
PFIZER = "US7170811035"
WALMART = "US9311421039"
INTEL = "US4581401001"
PRICE = "10.125"


@pytest.fixture
async def settlement(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("settlement"), timeout=10, headers=auth(keys["ops"])
    ) as client:
        yield client


@asynccontextmanager
async def cycle_paused(db: AsyncEngine) -> AsyncIterator[None]:
    async with db.connect() as connection:
        # Blocks while a cycle runs, then keeps the cycle from starting another.
        await connection.execute(sa.select(sa.func.pg_advisory_lock(CYCLE_LOCK)))
        await connection.commit()
        try:
            yield
        finally:
            await connection.execute(sa.select(sa.func.pg_advisory_unlock(CYCLE_LOCK)))
            await connection.commit()


async def post_trade(gateway: httpx.AsyncClient, keys: dict[str, str], **overrides: str) -> str:
    response = await gateway.post(
        "/v1/trades",
        json=a_trade(**{"price": PRICE, **overrides}),
        headers=auth(keys["trader"]),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["trade_id"])


async def obligation(settlement: httpx.AsyncClient, trade_id: str) -> dict[str, Any]:
    response = await settlement.get("/v1/obligations", params={"trade_id": trade_id})
    assert response.status_code == 200, response.text
    rows = response.json()
    return dict(rows[0]) if rows else {"trade_id": trade_id, "state": None, "instruction_id": None}


async def wait_ready(settlement: httpx.AsyncClient, *trade_ids: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        rows = [await obligation(settlement, t) for t in trade_ids]
        if all(r["state"] == "ready" for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"not all ready: {[(r['trade_id'], r['state']) for r in rows]}")
        await asyncio.sleep(0.1)


async def wait_instructed(settlement: httpx.AsyncClient, trade_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        row = await obligation(settlement, trade_id)
        if row["instruction_id"] is not None:
            response = await settlement.get(f"/v1/instructions/{row['instruction_id']}")
            assert response.status_code == 200, response.text
            return dict(response.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"trade {trade_id} was not instructed: {row}")
        await asyncio.sleep(0.1)


async def settled_entry(stack: Stack, key: str, trade_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=stack.url("ledger"), timeout=10, headers=auth(key)
    ) as ledger:
        deadline = time.monotonic() + 30
        journal: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = await ledger.get("/v1/journal", params={"trade_id": trade_id})
            assert response.status_code == 200, response.text
            journal = response.json()
            settled = [e for e in journal if e["kind"] == "settled"]
            if settled:
                [entry] = settled
                return dict(entry)
            await asyncio.sleep(0.1)
    raise AssertionError(f"journal of {trade_id}: {[e['kind'] for e in journal]}")


def moved(entry: dict[str, Any], unit: str) -> set[Decimal]:
    """The non-zero amounts the entry's lines move in the unit."""
    return {
        Decimal(line[side])
        for line in entry["lines"]
        if line["unit"] == unit
        for side in ("debit", "credit")
        if Decimal(line[side]) != 0
    }


def located(entry: dict[str, Any]) -> set[str]:
    """The account types the entry's settled (not pending) lines book on, other than the
    client's: where each trade settled, its SSI's depository and custodian."""
    return {
        line["ledger_account"].split(":")[0]
        for line in entry["lines"]
        if not line["ledger_account"].endswith("_pending")
        and not line["ledger_account"].startswith("client:")
    }


async def test_a_buy_and_a_sell_net_into_one_receive_and_each_settles_its_own_terms(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    async with cycle_paused(databases["settlement"]):
        buy = await post_trade(gateway, keys, isin=IBM, side="BUY", quantity="100")
        sell = await post_trade(gateway, keys, isin=IBM, side="SELL", quantity="60")
        await wait_ready(settlement, buy, sell)
    # The cycle picks them up once released.
    instruction = await wait_instructed(settlement, buy)
    assert sorted(instruction["trade_ids"]) == sorted([buy, sell])
    assert (instruction["direction"], instruction["payment"]) == ("RECEIVE", "APMT")
    assert Decimal(instruction["quantity"]) == 40
    assert Decimal(instruction["amount"]) == Decimal("405.00")  # 40 x 10.125
    assert (instruction["kind"], instruction["gross"]) == ("securities", False)
    assert instruction["run_id"] is not None

    run = await settlement.get(f"/v1/netting-runs/{instruction['run_id']}")
    assert run.status_code == 200, run.text
    assert run.json()["trigger"] == "cycle"
    assert instruction["instruction_id"] in {
        i["instruction_id"] for i in run.json()["instructions"]
    }

    for trade_id in (buy, sell):
        await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    buy_entry = await settled_entry(stack, keys["ops"], buy)
    sell_entry = await settled_entry(stack, keys["ops"], sell)
    assert moved(buy_entry, IBM) == {Decimal(100)}
    assert moved(buy_entry, "USD") == {Decimal("1012.50")}
    assert moved(sell_entry, IBM) == {Decimal(60)}
    assert moved(sell_entry, "USD") == {Decimal("607.50")}
    # Each trade of the netted instruction settled at its SSI's depository and custodian.
    assert located(buy_entry) == located(sell_entry) == {"depository", "custodian"}


async def test_a_counterparty_with_netting_off_settles_gross(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    lei = fresh_lei()
    ssi = await settlement.post(
        "/v1/ssis",
        json={
            "counterparty_lei": lei,
            "market": "US",
            "depository": "DTC",
            "custodian_bic": "CHASUS33XXX",
            "safekeeping_account": "SAFE-NET-OFF",
            "cash_account": "CASH-NET-OFF",
            "effective_from": "2020-01-01",
        },
    )
    assert ssi.status_code == 201, ssi.text
    off = await settlement.put(f"/v1/counterparties/{lei}/netting", json={"enabled": False})
    assert off.status_code == 200, off.text
    assert off.json()["enabled"] is False

    async with cycle_paused(databases["settlement"]):
        buy = await post_trade(
            gateway, keys, isin=COCA_COLA, side="BUY", quantity="100", counterparty_lei=lei
        )
        sell = await post_trade(
            gateway, keys, isin=COCA_COLA, side="SELL", quantity="60", counterparty_lei=lei
        )
        await wait_ready(settlement, buy, sell)
    bought = await wait_instructed(settlement, buy)
    sold = await wait_instructed(settlement, sell)
    assert bought["trade_ids"] == [buy] and sold["trade_ids"] == [sell]
    assert (bought["direction"], Decimal(bought["quantity"]), bought["gross"]) == (
        "RECEIVE",
        100,
        True,
    )
    assert (sold["direction"], Decimal(sold["quantity"]), sold["gross"]) == ("DELIVER", 60, True)
    for trade_id in (buy, sell):
        await wait_for_state(gateway, keys["trader"], trade_id, "settled")


async def test_a_manual_netting_run_instructs_what_is_ready_once(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    async with cycle_paused(databases["settlement"]):
        buy = await post_trade(gateway, keys, isin=PFIZER, side="BUY", quantity="30")
        sell = await post_trade(gateway, keys, isin=PFIZER, side="SELL", quantity="30")
        [row, _] = await wait_ready(settlement, buy, sell)
        date = row["settlement_date"]
        response = await settlement.post(
            "/v1/netting-runs", json={"settlement_date": date, "cutoff_note": "test cut-off"}
        )
        assert response.status_code == 201, response.text
        run = response.json()
        assert (run["trigger"], run["cutoff_note"], run["settlement_date"]) == (
            "manual",
            "test cut-off",
            date,
        )
        ours = [i for i in run["instructions"] if buy in i["trade_ids"]]
        [instruction] = ours
        # Same quantity and cash both ways: netted out, nothing sent, settled by netting.
        assert sorted(instruction["trade_ids"]) == sorted([buy, sell])
        assert (instruction["kind"], instruction["state"]) == ("netted_out", "settled")
        assert instruction["status_reason"] == "netted out"
        assert Decimal(instruction["quantity"]) == 0

        again = await settlement.post("/v1/netting-runs", json={"settlement_date": date})
        assert again.status_code == 201, again.text
        assert all(
            buy not in i["trade_ids"] and sell not in i["trade_ids"]
            for i in again.json()["instructions"]
        )
        fetched = await settlement.get(f"/v1/netting-runs/{run['run_id']}")
        assert fetched.status_code == 200
        assert fetched.json() == run
    for trade_id in (buy, sell):
        await wait_for_state(gateway, keys["trader"], trade_id, "settled")
        entry = await settled_entry(stack, keys["ops"], trade_id)
        assert located(entry) == {"depository", "custodian"}


async def test_netting_routes_refuse_what_they_must(
    keys: dict[str, str], settlement: httpx.AsyncClient
) -> None:
    missing = await settlement.get("/v1/netting-runs/no-such-run")
    assert missing.status_code == 404
    anonymous = await settlement.post(
        "/v1/netting-runs", json={"settlement_date": "2026-01-05"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401
    trader = auth(keys["trader"])
    for response in (
        await settlement.post(
            "/v1/netting-runs", json={"settlement_date": "2026-01-05"}, headers=trader
        ),
        await settlement.get("/v1/netting-runs/no-such-run", headers=trader),
        await settlement.put(
            "/v1/counterparties/784F5XWPLTWKTBV3E584/netting",
            json={"enabled": True},
            headers=trader,
        ),
    ):
        assert response.status_code == 403, response.text
    for body in ({}, {"settlement_date": "not a date"}, {"settlement_date": "2026-01-05", "x": 1}):
        response = await settlement.post("/v1/netting-runs", json=body)
        assert response.status_code == 422, response.text
    bad_lei = await settlement.put("/v1/counterparties/NOT-A-LEI/netting", json={"enabled": False})
    assert bad_lei.status_code == 422, bad_lei.text
    no_flag = await settlement.put("/v1/counterparties/784F5XWPLTWKTBV3E584/netting", json={})
    assert no_flag.status_code == 422


async def trial_balance_is_zero(stack: Stack, key: str) -> None:
    async with httpx.AsyncClient(
        base_url=stack.url("ledger"), timeout=10, headers=auth(key)
    ) as ledger:
        trial = (await ledger.get("/v1/trial-balance")).json()
    assert trial["balanced"] is True and trial["non_zero_units"] == [], trial
    assert all(Decimal(total) == 0 for total in trial["totals_by_unit"].values())


async def wait_instruction_state(
    settlement: httpx.AsyncClient, instruction_id: str, state: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = await settlement.get(f"/v1/instructions/{instruction_id}")
        assert response.status_code == 200, response.text
        if response.json()["state"] == state:
            return dict(response.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"instruction {instruction_id}: {response.json()}")
        await asyncio.sleep(0.1)


async def test_the_same_quantity_at_different_prices_is_one_payment_free_of_delivery(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    async with cycle_paused(databases["settlement"]):
        buy = await post_trade(
            gateway, keys, isin=WALMART, side="BUY", quantity="100", price="10.125"
        )
        sell = await post_trade(
            gateway, keys, isin=WALMART, side="SELL", quantity="100", price="10.375"
        )
        await wait_ready(settlement, buy, sell)
    instruction = await wait_instructed(settlement, buy)
    # Paid 1037.50, paying 1012.50: the firm is paid 25.00 and no securities move. Sent as
    # a PFOD (APMT, quantity 0, CRDT), whose movement is DELIVER as the firm is paid.
    assert sorted(instruction["trade_ids"]) == sorted([buy, sell])
    assert (instruction["kind"], instruction["gross"]) == ("payment_only", False)
    assert (instruction["direction"], instruction["payment"], instruction["credit_debit"]) == (
        "DELIVER",
        "APMT",
        "CRDT",
    )
    assert Decimal(instruction["quantity"]) == 0
    assert Decimal(instruction["amount"]) == Decimal("25.00")

    settled = await wait_instruction_state(settlement, instruction["instruction_id"], "settled")
    assert Decimal(settled["quantity"]) == 0
    for trade_id in (buy, sell):
        await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    buy_entry = await settled_entry(stack, keys["ops"], buy)
    sell_entry = await settled_entry(stack, keys["ops"], sell)
    # Each trade settled on its own terms, at its SSI's depository and custodian.
    assert moved(buy_entry, WALMART) == {Decimal(100)}
    assert moved(buy_entry, "USD") == {Decimal("1012.50")}
    assert moved(sell_entry, WALMART) == {Decimal(100)}
    assert moved(sell_entry, "USD") == {Decimal("1037.50")}
    assert located(buy_entry) == located(sell_entry) == {"depository", "custodian"}
    await trial_balance_is_zero(stack, keys["ops"])


async def test_receive_and_be_paid_is_one_receive_with_payment(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    async with cycle_paused(databases["settlement"]):
        buy = await post_trade(gateway, keys, isin=INTEL, side="BUY", quantity="100", price="5")
        sell = await post_trade(gateway, keys, isin=INTEL, side="SELL", quantity="60", price="20")
        await wait_ready(settlement, buy, sell)
    instruction = await wait_instructed(settlement, buy)
    # Receive 40 and be paid 1200.00 - 500.00 = 700.00: RECE with CdtDbtInd CRDT (T2S RWP).
    assert sorted(instruction["trade_ids"]) == sorted([buy, sell])
    assert (instruction["kind"], instruction["gross"]) == ("securities", False)
    assert (instruction["direction"], instruction["payment"], instruction["credit_debit"]) == (
        "RECEIVE",
        "APMT",
        "CRDT",
    )
    assert Decimal(instruction["quantity"]) == 40
    assert Decimal(instruction["amount"]) == Decimal("700.00")

    await wait_instruction_state(settlement, instruction["instruction_id"], "settled")
    for trade_id in (buy, sell):
        await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    buy_entry = await settled_entry(stack, keys["ops"], buy)
    sell_entry = await settled_entry(stack, keys["ops"], sell)
    assert moved(buy_entry, INTEL) == {Decimal(100)}
    assert moved(buy_entry, "USD") == {Decimal("500.00")}
    assert moved(sell_entry, INTEL) == {Decimal(60)}
    assert moved(sell_entry, "USD") == {Decimal("1200.00")}
    await trial_balance_is_zero(stack, keys["ops"])
