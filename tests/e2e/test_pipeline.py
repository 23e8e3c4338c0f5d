"""A trade travels the whole pipeline: gateway → compliance → settlement → CSD → ledger,
with every event in the audit trail."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, scalar

pytestmark = pytest.mark.e2e


async def wait_for_state(
    client: httpx.AsyncClient, key: str, trade_id: str, state: str, timeout_s: float = 10
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = (await client.get(f"/v1/trades/{trade_id}", headers=auth(key))).json()
        if body.get("state") == state:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"trade {trade_id} did not reach {state}: {body}")


async def test_posted_trade_settles_and_is_booked_evaluated_and_audited(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]

    view = await wait_for_state(gateway, keys["trader"], trade_id, "settled", timeout_s=10)
    types = {entry["type"] for entry in view["timeline"]}  # type: ignore[union-attr]
    assert {
        "trade.captured",
        "compliance.trade_cleared",
        "settlement.instructed",
        "settlement.matched",
        "settlement.settled",
    } <= types

    async with httpx.AsyncClient(timeout=10) as client:
        reader = auth(keys["compliance"])
        journal = (
            await client.get(
                f"{stack.url('ledger')}/v1/journal", params={"trade_id": trade_id}, headers=reader
            )
        ).json()
        assert {entry["kind"] for entry in journal} == {"pending", "settled"}
        for entry in journal:
            by_unit: dict[str, Decimal] = {}
            for line in entry["lines"]:
                by_unit[line["unit"]] = (
                    by_unit.get(line["unit"], Decimal(0))
                    + Decimal(line["debit"])
                    - Decimal(line["credit"])
                )
            assert all(total == 0 for total in by_unit.values()), entry
        cash = [line for line in journal[0]["lines"] if line["unit"] == "USD"]
        assert {Decimal(line["debit"]) + Decimal(line["credit"]) for line in cash} == {
            Decimal("18925")
        }

        evaluation = await client.get(
            f"{stack.url('compliance_monitor')}/v1/evaluations/{trade_id}", headers=reader
        )
        assert evaluation.status_code == 200
        assert evaluation.json()["outcome"] == "cleared"

        obligation = (
            await client.get(
                f"{stack.url('settlement')}/v1/obligations",
                params={"trade_id": trade_id},
                headers=reader,
            )
        ).json()
        assert obligation[0]["state"] == "settled"
        assert obligation[0]["cycle_days"] == 1  # US equities settle T+1 since 2024-05-28

        deadline = time.monotonic() + 10
        while True:
            audited = (
                await client.get(
                    f"{stack.url('audit')}/v1/events",
                    params={"trade_id": trade_id, "limit": 100},
                    headers=reader,
                )
            ).json()["items"]
            audited_types = {item["event"]["type"] for item in audited}
            if {"ledger.posted", "settlement.settled"} <= audited_types or (
                time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(0.1)
        timeline_ids = {entry["event_id"] for entry in view["timeline"]}  # type: ignore[union-attr]
        assert timeline_ids <= {item["event"]["id"] for item in audited}
        assert {
            "trade.captured",
            "ledger.posted",
            "settlement.settled",
            "compliance.trade_cleared",
        } <= audited_types
        verification = (await client.get(f"{stack.url('audit')}/v1/verify", headers=reader)).json()
        assert verification["valid"] is True, verification
        assert verification["records_checked"] >= len(audited)


async def test_trade_over_the_notional_limit_is_held_not_instructed(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trade = a_trade(quantity="1000000", price="20")  # 20,000,000 USD > the 10,000,000 limit
    response = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    trade_id = response.json()["trade_id"]
    await wait_for_state(gateway, keys["trader"], trade_id, "held")
    async with httpx.AsyncClient(timeout=10) as client:
        alerts = (
            await client.get(
                f"{stack.url('compliance_monitor')}/v1/alerts",
                params={"trade_id": trade_id, "blocking": "true"},
                headers=auth(keys["compliance"]),
            )
        ).json()["items"]
        assert [a["rule"] for a in alerts] == ["notional-limit"]
        await asyncio.sleep(0.5)
        obligation = (
            await client.get(
                f"{stack.url('settlement')}/v1/obligations",
                params={"trade_id": trade_id},
                headers=auth(keys["ops"]),
            )
        ).json()
        assert obligation[0]["state"] == "held"
        assert obligation[0]["instruction_id"] is None


async def test_trade_without_an_ssi_waits_in_exceptions_until_one_is_added(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient, databases: dict
) -> None:
    no_ssi_lei = "W22LROWP2IHZNBB6K528"
    response = await gateway.post(
        "/v1/trades",
        json=a_trade(
            counterparty_lei=no_ssi_lei, isin="GB0002634946", currency="GBP", venue="XLON"
        ),
        headers=auth(keys["trader"]),
    )
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]
    ops = auth(keys["ops"])
    async with httpx.AsyncClient(base_url=stack.url("settlement"), timeout=10) as client:
        deadline = time.monotonic() + 10
        while True:
            exceptions = (await client.get("/v1/exceptions", headers=ops)).json()
            if trade_id in {e["trade_id"] for e in exceptions} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert trade_id in {e["trade_id"] for e in exceptions}
        assert next(e for e in exceptions if e["trade_id"] == trade_id)["cycle_days"] == 2
        added = await client.post(
            "/v1/ssis",
            headers=ops,
            json={
                "counterparty_lei": no_ssi_lei,
                "market": "UK",
                "depository": "CREST",
                "custodian_bic": "CITIGB2LXXX",
                "safekeeping_account": "SAFE-UK-C-001",
                "cash_account": "CASH-UK-C-001",
                "effective_from": "2020-01-01",
            },
        )
        assert added.status_code == 201, added.text
    await wait_for_state(gateway, keys["trader"], trade_id, "settled")


async def test_settlement_dates_count_business_days_of_the_market(
    databases: dict, stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trade = a_trade(trade_date="2026-11-25", trade_time="2026-11-25T15:00:00Z")
    response = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    trade_id = response.json()["trade_id"]
    deadline = time.monotonic() + 10
    settle_on = None
    while settle_on is None and time.monotonic() < deadline:
        settle_on = await scalar(
            databases["settlement"],
            "SELECT settlement_date FROM obligations WHERE trade_id = :t",
            t=trade_id,
        )
        await asyncio.sleep(0.1)
    # T+1 from Wednesday 25 Nov 2026 skips Thanksgiving (Thursday 26 Nov) on the NYSE.
    assert str(settle_on) == "2026-11-27"
