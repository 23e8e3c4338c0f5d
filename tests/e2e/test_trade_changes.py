"""Amend and cancel through the gateway's routes, end to end: compliance re-evaluates,
settlement recomputes or cancels the obligation, the ledger reverses and re-posts, the
audit trail holds every step; and both are refused once settlement has instructed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, fresh_lei

pytestmark = pytest.mark.e2e


@pytest.fixture
async def services(
    stack: Stack, keys: dict[str, str]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {
        name: httpx.AsyncClient(
            base_url=stack.url(name), timeout=10, headers=auth(keys["compliance"])
        )
        for name in ("ledger", "settlement", "compliance_monitor", "audit")
    }
    yield clients
    for client in clients.values():
        await client.aclose()


def net_by_account(journal: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = {}
    for entry in journal:
        for line in entry["lines"]:
            key = (line["ledger_account"], line["unit"])
            totals[key] = (
                totals.get(key, Decimal(0)) + Decimal(line["debit"]) - Decimal(line["credit"])
            )
    return {k: v for k, v in totals.items() if v != 0}


async def audited_types(audit: httpx.AsyncClient, trade_id: str) -> set[str]:
    items = (await audit.get("/v1/events", params={"trade_id": trade_id, "limit": 200})).json()
    return {item["event"]["type"] for item in items["items"]}


async def test_an_amendment_reaches_every_service(
    keys: dict[str, str], gateway: httpx.AsyncClient, services: dict[str, httpx.AsyncClient]
) -> None:
    trader = auth(keys["trader"])
    trade = a_trade(counterparty_lei=fresh_lei(), quantity="100", price="10")
    trade_id = (await gateway.post("/v1/trades", json=trade, headers=trader)).json()["trade_id"]
    ledger, settlement = services["ledger"], services["settlement"]
    await eventually(
        lambda: _journal_kinds(ledger, trade_id, {"pending"}), "pending entry of the capture"
    )

    response = await gateway.post(
        f"/v1/trades/{trade_id}/amend",
        json={"quantity": "150", "price": "10.5", "reason": "allocation corrected"},
        headers=trader,
    )
    assert response.status_code == 200, response.text
    amended = response.json()
    assert (amended["version"], amended["quantity"], amended["price"]) == (2, "150", "10.5")
    again = await gateway.post(
        f"/v1/trades/{trade_id}/amend",
        json={"quantity": "150", "reason": "retry of the same amendment"},
        headers=trader,
    )
    assert again.status_code == 200
    assert again.json()["version"] == 2  # nothing changed: no new version

    journal = await eventually(
        lambda: _journal_kinds(ledger, trade_id, {"pending", "reversal"}, count=3),
        "reversal and the amended pending entry",
    )
    reversal = next(e for e in journal if e["kind"] == "reversal")
    first = next(e for e in journal if e["kind"] == "pending" and e["version"] == 1)
    assert reversal["reverses"] == first["entry_id"]
    amended_only = [e for e in journal if e["kind"] == "pending" and e["version"] == 2]
    assert net_by_account(journal) == net_by_account(amended_only)
    assert Decimal("1575") in {abs(v) for v in net_by_account(journal).values()}

    async def obligation_v2() -> dict[str, Any] | None:
        rows = (await settlement.get("/v1/obligations", params={"trade_id": trade_id})).json()
        return next((r for r in rows if r.get("version") == 2), None)

    obligation = await eventually(obligation_v2, "obligation recomputed at version 2")
    assert Decimal(obligation["quantity"]) == 150
    assert Decimal(obligation["amount"]) == Decimal("1575")

    evaluation = await eventually(
        lambda: _evaluation(services["compliance_monitor"], trade_id, 2),
        "compliance evaluation of version 2",
    )
    assert evaluation["version"] == 2

    types = await eventually(
        lambda: _audited(
            services["audit"],
            trade_id,
            {"trade.amended", "ledger.posted", "settlement.obligation_amended"},
        ),
        "the amendment in the audit trail",
    )
    assert {"trade.captured", "trade.amended", "settlement.obligation_amended"} <= types
    view = (await gateway.get(f"/v1/trades/{trade_id}", headers=trader)).json()
    assert "trade.amended" in {e["type"] for e in view["timeline"]}


async def test_a_cancellation_reaches_every_service_and_is_final(
    keys: dict[str, str], gateway: httpx.AsyncClient, services: dict[str, httpx.AsyncClient]
) -> None:
    trader = auth(keys["trader"])
    trade = a_trade(counterparty_lei=fresh_lei())
    trade_id = (await gateway.post("/v1/trades", json=trade, headers=trader)).json()["trade_id"]
    ledger = services["ledger"]
    await eventually(lambda: _journal_kinds(ledger, trade_id, {"pending"}), "pending entry")

    response = await gateway.post(
        f"/v1/trades/{trade_id}/cancel", json={"reason": "booked twice"}, headers=trader
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    repeated = await gateway.post(
        f"/v1/trades/{trade_id}/cancel", json={"reason": "booked twice"}, headers=trader
    )
    assert repeated.status_code == 200
    refused = await gateway.post(
        f"/v1/trades/{trade_id}/amend", json={"quantity": "1", "reason": "too late"}, headers=trader
    )
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["detail"]

    journal = await eventually(
        lambda: _journal_kinds(ledger, trade_id, {"pending", "reversal"}, count=2),
        "the pending entry reversed",
    )
    assert net_by_account(journal) == {}

    async def cancelled_obligation() -> bool:
        rows = (
            await services["settlement"].get("/v1/obligations", params={"trade_id": trade_id})
        ).json()
        return bool(rows) and rows[0]["state"] == "cancelled"

    await eventually(cancelled_obligation, "obligation cancelled")
    await eventually(
        lambda: _audited(
            services["audit"], trade_id, {"trade.cancelled", "settlement.obligation_cancelled"}
        ),
        "the cancellation in the audit trail",
    )
    view = (await gateway.get(f"/v1/trades/{trade_id}", headers=trader)).json()
    assert view["state"] == "cancelled"


async def test_amend_and_cancel_are_refused_once_settlement_has_instructed(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trader = auth(keys["trader"])
    trade_id = (await gateway.post("/v1/trades", json=a_trade(), headers=trader)).json()["trade_id"]

    async def instructed() -> bool:
        view = (await gateway.get(f"/v1/trades/{trade_id}", headers=trader)).json()
        return view["state"] in ("instructed", "matched", "settled")

    await eventually(instructed, "the trade instructed")
    amend = await gateway.post(
        f"/v1/trades/{trade_id}/amend", json={"quantity": "1", "reason": "too late"}, headers=trader
    )
    cancel = await gateway.post(
        f"/v1/trades/{trade_id}/cancel", json={"reason": "too late"}, headers=trader
    )
    for response in (amend, cancel):
        assert response.status_code == 409, response.text
        assert (
            "instructed" in response.json()["detail"] or "settlement" in response.json()["detail"]
        )
    view = (await gateway.get(f"/v1/trades/{trade_id}", headers=trader)).json()
    assert view["version"] == 1


async def test_amend_and_cancel_refuse_bad_input_with_422(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trader = auth(keys["trader"])
    trade_id = (
        await gateway.post("/v1/trades", json=a_trade(counterparty_lei=fresh_lei()), headers=trader)
    ).json()["trade_id"]
    cases = [
        ({"quantity": "5"}, "reason"),
        ({"account": "ACC-002", "reason": "move it"}, "account"),
        ({"isin": "US0378331006", "reason": "wrong isin"}, "isin"),
        ({"venue": "ZZZZ", "reason": "wrong venue"}, "venue"),
        ({"trade_date": "2020-01-02", "reason": "wrong date"}, "trade_date"),
    ]
    for body, field in cases:
        response = await gateway.post(f"/v1/trades/{trade_id}/amend", json=body, headers=trader)
        assert response.status_code == 422, (body, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, response.text
    cancel = await gateway.post(f"/v1/trades/{trade_id}/cancel", json={}, headers=trader)
    assert cancel.status_code == 422
    view = (await gateway.get(f"/v1/trades/{trade_id}", headers=trader)).json()
    assert view["version"] == 1


async def _journal_kinds(
    ledger: httpx.AsyncClient, trade_id: str, kinds: set[str], count: int = 1
) -> list[dict[str, Any]] | None:
    journal: list[dict[str, Any]] = (
        await ledger.get("/v1/journal", params={"trade_id": trade_id})
    ).json()
    if {e["kind"] for e in journal} >= kinds and len(journal) >= count:
        return journal
    return None


async def _evaluation(
    compliance: httpx.AsyncClient, trade_id: str, version: int
) -> dict[str, Any] | None:
    response = await compliance.get(f"/v1/evaluations/{trade_id}", params={"version": version})
    return response.json() if response.status_code == 200 else None


async def _audited(audit: httpx.AsyncClient, trade_id: str, wanted: set[str]) -> set[str] | None:
    types = await audited_types(audit, trade_id)
    return types if wanted <= types else None
