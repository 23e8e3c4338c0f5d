"""Keys and roles on every service; invalid input answered with problem+json naming the field."""

from __future__ import annotations

import httpx
import pytest

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth

pytestmark = pytest.mark.e2e

READ_ROUTES = {
    "gateway": "/v1/trades",
    "settlement": "/v1/obligations",
    "ledger": "/v1/trial-balance",
    "compliance_monitor": "/v1/alerts",
    "audit": "/v1/events",
}


@pytest.mark.parametrize("service", sorted(READ_ROUTES))
async def test_a_request_without_a_valid_key_is_401(stack: Stack, service: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service)) as client:
        missing = await client.get(READ_ROUTES[service])
        wrong = await client.get(READ_ROUTES[service], headers=auth("bo_not-a-real-key"))
        basic = await client.get(READ_ROUTES[service], headers={"Authorization": "Basic eDp5"})
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("service", ["settlement", "ledger", "compliance_monitor", "audit"])
async def test_a_trader_key_reads_nothing_outside_the_gateway(
    stack: Stack, keys: dict[str, str], service: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service)) as client:
        response = await client.get(READ_ROUTES[service], headers=auth(keys["trader"]))
    assert response.status_code == 403
    assert response.json()["title"] == "Forbidden"


async def test_a_compliance_key_may_not_post_trades(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["compliance"]))
    assert response.status_code == 403


async def test_only_ops_and_admin_add_ssis(stack: Stack, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=stack.url("settlement")) as client:
        response = await client.post("/v1/ssis", json={}, headers=auth(keys["compliance"]))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("isin", "US0378331006", "ISIN"),
        ("counterparty_lei", "784F5XWPLTWKTBV3E585", "LEI"),
        ("currency", "XXY", "ISO 4217"),
        ("quantity", "-5", "greater than 0"),
        ("side", "HOLD", "BUY"),
    ],
)
async def test_an_invalid_trade_is_422_naming_the_field(
    keys: dict[str, str], gateway: httpx.AsyncClient, field: str, value: str, reason: str
) -> None:
    response = await gateway.post(
        "/v1/trades", json=a_trade(**{field: value}), headers=auth(keys["trader"])
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert reason in problem["errors"][0]["reason"]
    assert problem["detail"].startswith(f"{field}:")


async def test_an_unknown_field_is_rejected(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    response = await gateway.post(
        "/v1/trades", json=a_trade(colour="blue"), headers=auth(keys["trader"])
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "colour"


async def test_a_trader_may_not_post_for_another_desks_account(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    response = await gateway.post(
        "/v1/trades", json=a_trade(account="ACC-999"), headers=auth(keys["trader"])
    )
    assert response.status_code == 403
    assert response.json()["field"] == "account"


async def test_the_same_trade_again_returns_the_original_and_a_changed_one_is_409(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trade = a_trade()
    first = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    again = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    changed = await gateway.post(
        "/v1/trades", json={**trade, "quantity": "101"}, headers=auth(keys["trader"])
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["trade_id"] == first.json()["trade_id"]
    assert changed.status_code == 409
    assert changed.json()["field"] == "quantity"


async def test_health_readiness_and_metrics_answer_without_a_key(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for service in READ_ROUTES:
            assert (await client.get(stack.url(service) + "/healthz")).status_code == 200
            ready = await client.get(stack.url(service) + "/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["database"] == "ok"
            metrics = await client.get(stack.url(service) + "/metrics")
            assert "bo_events_applied_total" in metrics.text
