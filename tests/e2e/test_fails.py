"""Fails management end to end: an EU instruction the depository fails with LACK, its intended
settlement date already past, shows in GET /v1/fails with its reason, its age in business
days of the Paris calendar and its accrued CSDR penalty, and in the per-counterparty list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import exchange_calendars
import httpx
import pandas as pd
import pytest

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth
from tests.e2e.test_pipeline import wait_for_state

pytestmark = pytest.mark.e2e

TOTAL = "FR0000120271"  # TotalEnergies, Euronext Paris: no other test trades it.
LEI = "784F5XWPLTWKTBV3E584"  # has a FR SSI in deploy/demo/ssis.json
SAFEKEEPING = "SAFE-FR-A-001"  # that SSI's safekeeping account
OTHER_LEI = "8I5DZWZKVSZI1NUHU748"
SANOFI = "FR0000120578"  # Euronext Paris: only the partial-fail test trades it.


@pytest.fixture
async def simulator(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator, with the rules in force before the test put back afterwards."""
    async with httpx.AsyncClient(base_url=stack.url("csd_simulator"), timeout=10) as client:
        previous = (await client.get("/v1/rules")).raise_for_status().json()
        client.previous_rules = previous  # type: ignore[attr-defined]
        yield client
        restored = await client.put("/v1/rules", json=previous)
        if restored.status_code != 200 and isinstance(previous, dict):
            restored = await client.put("/v1/rules", json=previous.get("rules", []))
        restored.raise_for_status()


@pytest.fixture
async def settlement(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("settlement"), timeout=10) as client:
        yield client


def rules_of(document: Any) -> list[dict[str, Any]]:
    return list(document["rules"] if isinstance(document, dict) else document)


async def wait_for_fail(
    settlement: httpx.AsyncClient, key: str, trade_id: str, timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await settlement.get(
            "/v1/fails", params={"counterparty_lei": LEI}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        ours = [f for f in response.json() if trade_id in f["trade_ids"]]
        if ours and ours[0]["state"] == "failed":
            return dict(ours[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"trade {trade_id} is not in the fails: {response.json()}")
        await asyncio.sleep(0.1)


async def test_a_failed_eu_instruction_shows_in_fails_with_age_and_penalty(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
) -> None:
    rule = {"isin": TOTAL, "account": SAFEKEEPING, "outcome": "fail", "reason": "LACK"}
    previous = simulator.previous_rules  # type: ignore[attr-defined]
    response = await simulator.put("/v1/rules", json=[rule, *rules_of(previous)])
    assert response.status_code == 200, response.text

    # A trade done six Paris sessions ago: T+2, so its intended settlement date is past.
    paris = exchange_calendars.get_calendar("XPAR")
    today = datetime.now(UTC).date()
    last = paris.date_to_session(pd.Timestamp(today), direction="previous")
    trade_date: date = paris.session_offset(last, -6).date()
    intended: date = paris.session_offset(pd.Timestamp(trade_date), 2).date()
    expected_age = len(paris.sessions_in_range(pd.Timestamp(intended), pd.Timestamp(today))) - (
        1 if paris.is_session(pd.Timestamp(today)) else 0
    )
    assert expected_age >= 3

    trade = a_trade(
        isin=TOTAL,
        venue="XPAR",
        currency="EUR",
        quantity="1000",
        price="61.255",
        counterparty_lei=LEI,
        trade_date=trade_date.isoformat(),
        trade_time=f"{trade_date.isoformat()}T10:15:00Z",
    )
    posted = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    assert posted.status_code == 201, posted.text
    trade_id = posted.json()["trade_id"]
    await wait_for_state(gateway, keys["trader"], trade_id, "failed", timeout_s=15)

    fail = await wait_for_fail(settlement, keys["ops"], trade_id)
    assert fail["reason_code"] == "LACK" and fail["status_reason"].startswith("LACK")
    assert fail["intended_settlement_date"] == intended.isoformat()
    assert fail["age_business_days"] == expected_age
    assert (fail["isin"], fail["currency"], fail["market"]) == (TOTAL, "EUR", "FR")
    assert fail["counterparty_lei"] == LEI
    assert Decimal(fail["quantity"]) == 1000
    assert Decimal(fail["amount"]) == Decimal("61255.00")
    assert (fail["csdr"], fail["asset_class"], fail["penalty_basis"]) == (
        True,
        "liquid_shares",
        "securities",
    )
    # Reference value 61255.00 x 1 bp = 6.1255 -> 6.13 (half even at cents) per day of fail.
    assert Decimal(fail["reference_value"]) == Decimal("61255")
    daily = (Decimal("61255") * Decimal("0.0001")).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )
    assert daily == Decimal("6.13")
    assert Decimal(fail["penalty"]) == daily * expected_age
    assert fail["liable"] == "counterparty"  # we receive; the deliverer lacks the securities

    # The trader sees none of it; other readers do.
    for role in ("compliance", "admin"):
        seen = await settlement.get("/v1/fails", headers=auth(keys[role]))
        assert seen.status_code == 200
        assert any(trade_id in f["trade_ids"] for f in seen.json())

    # Per counterparty: this fail's penalty is in the counterparty's EUR total.
    summary = await settlement.get(
        "/v1/fails/penalties", params={"counterparty_lei": LEI}, headers=auth(keys["ops"])
    )
    assert summary.status_code == 200, summary.text
    eur = [s for s in summary.json() if s["currency"] == "EUR"]
    assert len(eur) == 1 and eur[0]["counterparty_lei"] == LEI
    assert eur[0]["fail_count"] >= 1
    assert Decimal(eur[0]["penalty"]) >= Decimal(fail["penalty"])
    assert Decimal(eur[0]["penalty_counterparty_liable"]) >= Decimal(fail["penalty"])

    # Filtered by another counterparty, it is not there.
    others = await settlement.get(
        "/v1/fails", params={"counterparty_lei": OTHER_LEI}, headers=auth(keys["ops"])
    )
    assert others.status_code == 200
    assert all(trade_id not in f["trade_ids"] for f in others.json())
    assert all(f["counterparty_lei"] == OTHER_LEI for f in others.json())

    # As of the intended settlement date itself: listed (failed), age 0, nothing accrued.
    then = await settlement.get(
        "/v1/fails",
        params={"counterparty_lei": LEI, "as_of": intended.isoformat()},
        headers=auth(keys["ops"]),
    )
    ours = [f for f in then.json() if trade_id in f["trade_ids"]]
    assert ours and ours[0]["age_business_days"] == 0
    assert Decimal(ours[0]["penalty"]) == 0


async def test_a_partial_settlements_open_remainder_is_a_fail_penalised_on_the_remainder(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
) -> None:
    rule = {"isin": SANOFI, "outcome": "partial", "settled_fraction": "0.4"}
    previous = simulator.previous_rules  # type: ignore[attr-defined]
    response = await simulator.put("/v1/rules", json=[rule, *rules_of(previous)])
    assert response.status_code == 200, response.text

    paris = exchange_calendars.get_calendar("XPAR")
    today = datetime.now(UTC).date()
    last = paris.date_to_session(pd.Timestamp(today), direction="previous")
    trade_date: date = paris.session_offset(last, -5).date()
    trade = a_trade(
        isin=SANOFI,
        venue="XPAR",
        currency="EUR",
        quantity="1000",
        price="90.10",
        counterparty_lei=LEI,
        trade_date=trade_date.isoformat(),
        trade_time=f"{trade_date.isoformat()}T10:15:00Z",
    )
    posted = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    assert posted.status_code == 201, posted.text
    trade_id = posted.json()["trade_id"]
    await wait_for_state(gateway, keys["trader"], trade_id, "partially_settled", timeout_s=15)

    listed = await settlement.get(
        "/v1/fails", params={"counterparty_lei": LEI}, headers=auth(keys["ops"])
    )
    assert listed.status_code == 200, listed.text
    ours = [f for f in listed.json() if trade_id in f["trade_ids"]]
    assert len(ours) == 1, listed.json()
    fail = ours[0]
    assert fail["state"] == "partially_settled"
    assert Decimal(fail["quantity"]) == 1000
    assert (Decimal(fail["settled_quantity"]), Decimal(fail["remaining_quantity"])) == (400, 600)
    # The penalty is on the open 600 only: 600 x 90.10 = 54060, 1 bp a day = 5.406 -> 5.41.
    assert Decimal(fail["reference_value"]) == Decimal("54060")
    assert fail["age_business_days"] >= 2
    daily = Decimal("5.41")
    assert Decimal(fail["penalty"]) == daily * fail["age_business_days"]


@pytest.mark.parametrize("path", ["/v1/fails", "/v1/fails/penalties"])
async def test_fails_access_and_validation(
    path: str, keys: dict[str, str], settlement: httpx.AsyncClient
) -> None:
    assert (await settlement.get(path)).status_code == 401
    assert (await settlement.get(path, headers=auth("not-a-key"))).status_code == 401
    assert (await settlement.get(path, headers=auth(keys["trader"]))).status_code == 403
    bad_lei = await settlement.get(
        path, params={"counterparty_lei": "NOT-A-LEI"}, headers=auth(keys["ops"])
    )
    assert bad_lei.status_code == 422
    assert bad_lei.headers["content-type"].startswith("application/problem+json")
    assert "counterparty_lei" in bad_lei.text
    bad_date = await settlement.get(path, params={"as_of": "yesterday"}, headers=auth(keys["ops"]))
    assert bad_date.status_code == 422
