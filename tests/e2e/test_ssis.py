"""SSIs per (counterparty, market, asset class), with versions in force from a date: an
update is a new version, and an obligation takes the version in force on its intended
settlement date. A bond trade needs a bond SSI (no fallback to the equity one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import bo_iso20022
from bo_tools.stack import Stack
from tests.conftest import auth
from tests.e2e.test_iso20022_settlement import instruction_of, post_trade, sese023_payloads
from tests.e2e.test_settlement_changes import fresh_lei, obligation_where

pytestmark = pytest.mark.e2e


@pytest.fixture
async def settlement(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("settlement"), timeout=10, headers=auth(keys["ops"])
    ) as client:
        yield client


def an_ssi(lei: str, **overrides: str) -> dict[str, str]:
    return {
        "counterparty_lei": lei,
        "market": "US",
        "depository": "DTC",
        "custodian_bic": "IRVTUS3NXXX",
        "safekeeping_account": "SAFE-OLD",
        "cash_account": "CASH-OLD",
        "effective_from": "2020-01-01",
        **overrides,
    }


async def sese023_of(db: AsyncEngine, trade_id: str) -> Any:
    row = await instruction_of(db, trade_id)
    [message] = [
        m
        for m in (bo_iso20022.parse_sese023(p) for p in await sese023_payloads(db))
        if m.instruction_id == row["instruction_id"]
    ]
    return message


async def test_an_update_takes_effect_for_trades_settling_on_or_after_its_date(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    lei = fresh_lei()
    created = await settlement.post("/v1/ssis", json=an_ssi(lei))
    assert created.status_code == 201, created.text
    v1 = created.json()
    assert (v1["version"], v1["asset_class"]) == (1, "equity")

    updated = await settlement.put(
        f"/v1/ssis/{v1['ssi_id']}",
        json={
            "safekeeping_account": "SAFE-NEW",
            "cash_account": "CASH-NEW",
            "effective_from": "2026-11-27",
        },
    )
    assert updated.status_code == 201, updated.text
    v2 = updated.json()
    assert (v2["version"], v2["counterparty_lei"], v2["market"]) == (2, lei, "US")
    assert (v2["custodian_bic"], v2["safekeeping_account"]) == ("IRVTUS3NXXX", "SAFE-NEW")

    # Listing: the version in force on a date, or every version.
    def listed(**params: str) -> Any:
        return settlement.get("/v1/ssis", params={"counterparty_lei": lei, **params})

    assert [s["version"] for s in (await listed(as_of="2026-11-26")).json()] == [1]
    assert [s["version"] for s in (await listed(as_of="2026-11-27")).json()] == [2]
    assert [s["version"] for s in (await listed()).json()] == [2]
    assert [s["version"] for s in (await listed(all_versions="true")).json()] == [1, 2]
    assert (await listed(asset_class="bond", all_versions="true")).json() == []

    # Trade on Monday 23 November settles (T+1) on the 24th: version 1. Trade on Monday
    # 30 November settles on 1 December: version 2.
    before = await post_trade(
        gateway,
        keys,
        counterparty_lei=lei,
        trade_date="2026-11-23",
        trade_time="2026-11-23T15:00:00Z",
    )
    after = await post_trade(
        gateway,
        keys,
        counterparty_lei=lei,
        trade_date="2026-11-30",
        trade_time="2026-11-30T15:00:00Z",
    )
    old = await sese023_of(db, before)
    new = await sese023_of(db, after)
    assert (old.safekeeping_account, old.cash_account) == ("SAFE-OLD", "CASH-OLD")
    assert (new.safekeeping_account, new.cash_account) == ("SAFE-NEW", "CASH-NEW")


async def test_update_errors(
    stack: Stack, settlement: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    lei = fresh_lei()
    v1 = (await settlement.post("/v1/ssis", json=an_ssi(lei, effective_from="2026-01-05"))).json()
    url = f"/v1/ssis/{v1['ssi_id']}"

    too_early = await settlement.put(url, json={"effective_from": "2026-01-04"})
    assert too_early.status_code == 422
    assert "effective_from" in too_early.text
    same_day = await settlement.put(url, json={"effective_from": "2026-01-05"})
    assert same_day.status_code == 201, same_day.text
    assert same_day.json()["version"] == 2

    missing = await settlement.put("/v1/ssis/999999999", json={"effective_from": "2026-01-05"})
    assert missing.status_code == 404
    for field, value in (
        ("custodian_bic", "NOTABIC"),
        ("depository", "Nowhere CSD"),
        ("safekeeping_account", "S" * 36),
        ("cash_account", "C" * 35),
    ):
        bad = await settlement.put(url, json={field: value, "effective_from": "2026-02-01"})
        assert bad.status_code == 422, (field, bad.text)
        assert field in bad.text
    assert (
        await settlement.post("/v1/ssis", json=an_ssi(lei, asset_class="fx"))
    ).status_code == 422

    async with httpx.AsyncClient(base_url=stack.url("settlement"), timeout=10) as anonymous:
        body = {"effective_from": "2026-02-01"}
        assert (await anonymous.put(url, json=body)).status_code == 401
        forbidden = await anonymous.put(url, json=body, headers=auth(keys["compliance"]))
        assert forbidden.status_code == 403


async def test_a_bond_trade_waits_for_a_bond_ssi(
    gateway: httpx.AsyncClient,
    settlement: httpx.AsyncClient,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
) -> None:
    db = databases["settlement"]
    lei = fresh_lei()
    equity = an_ssi(lei, market="DE", depository="Clearstream Banking Frankfurt")
    equity["custodian_bic"] = "DEUTDEFFXXX"
    assert (await settlement.post("/v1/ssis", json=equity)).status_code == 201
    # A German federal bond (Finanzagentur prefix DE000110): a bond, not covered by equity.
    trade_id = await post_trade(
        gateway,
        keys,
        counterparty_lei=lei,
        isin="DE0001102580",
        currency="EUR",
        venue="XETR",
        quantity="1000",
        price="98.5",
    )
    await obligation_where(db, trade_id, lambda o: o["state"] == "needs_ssi", "needs a bond SSI")
    bond = {**equity, "asset_class": "bond", "safekeeping_account": "SAFE-BOND"}
    assert (await settlement.post("/v1/ssis", json=bond)).status_code == 201
    message = await sese023_of(db, trade_id)
    assert message.safekeeping_account == "SAFE-BOND"
