"""Development keys and the demo data (desk DEMO, SSIs), loaded from deploy/demo/."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bo_common.auth import Role
from bo_common.db import make_engine, make_sessionmaker
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import ROOT, Stack, log, write_json
from gateway import admin

DEMO_DIR = ROOT / "deploy" / "demo"
DEV_KEYS = {
    "trader": Role.TRADER,
    "compliance": Role.COMPLIANCE,
    # A second compliance officer: releasing or rejecting a held trade takes two (four eyes).
    "compliance2": Role.COMPLIANCE,
    "ops": Role.OPS,
    "admin": Role.ADMIN,
}


async def _with_gateway_uow(database_url: str, work):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url, pool_size=2)
    try:
        return await work(UnitOfWork(make_sessionmaker(engine)))
    finally:
        await engine.dispose()


def load_desks(stack: Stack) -> None:
    desks: dict[str, list[str]] = json.loads((DEMO_DIR / "desks.json").read_text())

    async def work(uow: UnitOfWork) -> None:
        for name, accounts in desks.items():
            await admin.create_desk(uow, name=name, accounts=accounts)

    asyncio.run(_with_gateway_uow(stack.database_url(_gateway()), work))


def create_dev_keys(stack: Stack, prefix: str = "dev") -> dict[str, str]:
    async def work(uow: UnitOfWork) -> dict[str, str]:
        keys = {}
        for label, role in DEV_KEYS.items():
            keys[label] = await admin.create_key(
                uow,
                role=role,
                name=f"{prefix}-{label}",
                desk="DEMO" if role is Role.TRADER else None,
            )
        return keys

    keys: dict[str, str] = asyncio.run(_with_gateway_uow(stack.database_url(_gateway()), work))
    return keys


def sample_trade(**overrides: str) -> dict[str, str]:
    """A valid trade for the demo desk, traded now; the tests and the bench start from it."""
    now = datetime.now(UTC)
    trade = {
        "client_trade_id": f"FO-{uuid.uuid4().hex[:12]}",
        "account": "ACC-001",
        "side": "BUY",
        "isin": "US0378331005",
        "quantity": "100",
        "price": "189.25",
        "currency": "USD",
        "trade_date": now.date().isoformat(),
        "trade_time": now.isoformat().replace("+00:00", "Z"),
        "venue": "XNYS",
        "counterparty_lei": "784F5XWPLTWKTBV3E584",
        "settlement_type": "DVP",
    }
    trade.update(overrides)
    return trade


def load_ssis(stack: Stack, ops_key: str) -> int:
    ssis = json.loads((DEMO_DIR / "ssis.json").read_text())
    with httpx.Client(
        base_url=stack.url("settlement"), timeout=10, headers={"Authorization": f"Bearer {ops_key}"}
    ) as client:
        existing = client.get("/v1/ssis").raise_for_status().json()
        have = {(s["counterparty_lei"], s["market"]) for s in existing}
        added = 0
        for ssi in ssis:
            if (ssi["counterparty_lei"], ssi["market"]) in have:
                continue
            client.post("/v1/ssis", json=ssi).raise_for_status()
            added += 1
    return added


def load_compliance_lists(stack: Stack, compliance_key: str) -> None:
    """The demo restricted and watch lists and counterparty names, through the public API
    (each change an event in the audit trail); adding what is listed changes nothing."""
    lists = json.loads((ROOT / "services/compliance_monitor/demo/lists.json").read_text())
    with httpx.Client(
        base_url=stack.url("compliance_monitor"),
        timeout=10,
        headers={"Authorization": f"Bearer {compliance_key}"},
    ) as client:
        for entry in lists["restricted"]:
            client.put(
                f"/v1/restricted-list/{entry['isin']}", json={"reason": entry["reason"]}
            ).raise_for_status()
        for entry in lists["watch"]:
            client.post("/v1/watch-list", json=entry).raise_for_status()
        for party in lists["counterparties"]:
            client.put(
                f"/v1/counterparties/{party['lei']}", json={"name": party["name"]}
            ).raise_for_status()


def _gateway():  # type: ignore[no-untyped-def]
    from bo_tools.stack import BY_NAME

    return BY_NAME["gateway"]


def set_up_demo(stack: Stack, keys_file: Path | None) -> dict[str, str]:
    """Desks before keys (a trader key names its desk); SSIs through the public API."""
    load_desks(stack)
    keys = create_dev_keys(stack)
    stack.wait_keys_known(keys)
    added = load_ssis(stack, keys["ops"])
    load_compliance_lists(stack, keys["compliance"])
    if keys_file is not None:
        write_json(keys_file, keys)
        log(f"development keys written to {keys_file}")
    log(f"demo data: desk DEMO (ACC-001..ACC-010), {added} SSIs added")
    return keys
