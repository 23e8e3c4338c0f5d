"""The gateway across its process boundary: idempotency under concurrent retries, the batch
route, the paged list, desk scoping, revocation, and the 401/403/429/413 of every route."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.auth import Principal, Role
from bo_common.db import make_engine, make_sessionmaker
from bo_common.envelope import Envelope
from bo_common.outbox import PlumbingSchema
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import BY_NAME, Stack
from gateway import admin, handlers
from gateway.schemas import TradeIn
from tests.conftest import a_trade, auth, rows, scalar

pytestmark = pytest.mark.e2e


class Admin:
    """`bo keys` and `bo desks` against the test gateway's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = make_sessionmaker(engine)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    async def desk(self, accounts: list[str]) -> str:
        name = f"D{uuid.uuid4().hex[:8]}"
        await admin.create_desk(self.uow(), name=name, accounts=accounts)
        return name

    async def key(self, role: Role, desk: str | None = None, name: str | None = None) -> str:
        name = name or f"k-{uuid.uuid4().hex[:8]}"
        return await admin.create_key(self.uow(), role=role, name=name, desk=desk)


@pytest.fixture(scope="module")
async def gateway_admin(stack: Stack) -> AsyncIterator[Admin]:
    engine = make_engine(stack.database_url(BY_NAME["gateway"]), pool_size=2)
    yield Admin(engine)
    await engine.dispose()


async def test_twenty_concurrent_retries_capture_one_trade(
    keys: dict[str, str], gateway: httpx.AsyncClient, databases: dict[str, AsyncEngine]
) -> None:
    trade = a_trade()
    responses = await asyncio.gather(
        *(gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"])) for _ in range(20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 400]
    assert len({r.json()["trade_id"] for r in responses}) == 1
    count = await scalar(
        databases["gateway"],
        "SELECT count(*) FROM trades WHERE client_trade_id = :id",
        id=trade["client_trade_id"],
    )
    assert count == 1
    events = await scalar(
        databases["gateway"],
        "SELECT count(*) FROM outbox WHERE event_type = 'trade.captured' "
        "AND convert_from(payload, 'UTF8') LIKE :pattern",
        pattern=f"%{trade['client_trade_id']}%",
    )
    assert events == 1


async def test_a_capture_stores_the_trade_and_its_event_exactly_as_sent(
    keys: dict[str, str], gateway: httpx.AsyncClient, databases: dict[str, AsyncEngine]
) -> None:
    # The capture is one statement fed with JSON: every digit, the microseconds and the
    # optional CUSIP must come back as they were sent, and the event as it was answered.
    trade = a_trade(
        quantity="1234567890.12345678",
        price="12345678.1234567891",
        cusip="037833100",
        trade_time=(datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
    )
    response = await gateway.post("/v1/trades", json=trade, headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]

    stored = (await gateway.get(f"/v1/trades/{trade_id}", headers=auth(keys["trader"]))).json()
    for name in ("quantity", "price", "cusip", "client_trade_id", "account", "isin"):
        assert stored[name] == trade[name], name
    assert datetime.fromisoformat(stored["trade_time"]) == datetime.fromisoformat(
        trade["trade_time"]
    )
    [row] = await rows(
        databases["gateway"],
        "SELECT payload, key, topic, correlation_id, traceparent, request "
        "FROM outbox JOIN trades ON trades.trade_id = outbox.correlation_id "
        "WHERE outbox.correlation_id = :id",
        id=trade_id,
    )
    event = Envelope.from_bytes(row.payload)
    assert (event.type, event.subject, row.key, row.topic) == (
        "trade.captured",
        trade_id,
        trade["account"],
        "trade.events",
    )
    assert event.data["quantity"] == trade["quantity"]
    assert event.data["price"] == trade["price"]
    assert Decimal(event.data["gross_amount"]) == Decimal(trade["quantity"]) * Decimal(
        trade["price"]
    )
    assert row.traceparent is not None
    assert row.request["quantity"] == trade["quantity"]


async def test_after_an_autocommit_capture_the_connections_next_unit_of_work_is_one_transaction(
    stack: Stack,
) -> None:
    # The capture sets its connection to autocommit; an amendment that locks the row next
    # on the same pooled connection must still run in one transaction.
    engine = make_engine(stack.database_url(BY_NAME["gateway"]), pool_size=1, max_overflow=0)
    try:
        await PlumbingSchema.detect(engine)
        principal = Principal(key_id=uuid.uuid4(), name="dev-trader", role=Role.OPS, desk=None)
        body = TradeIn.model_validate(a_trade()).model_dump()
        [outcome] = await handlers.capture_trades(
            [(0, body)], principal=principal, uow=UnitOfWork(make_sessionmaker(engine))
        )
        assert outcome.status == 201
        async with UnitOfWork(make_sessionmaker(engine)) as uow:
            first = await uow.session.scalar(sa.text("SELECT pg_current_xact_id()"))
            second = await uow.session.scalar(sa.text("SELECT pg_current_xact_id()"))
        assert first == second
    finally:
        await engine.dispose()


async def test_a_batchs_events_are_queued_in_the_order_of_its_items(
    keys: dict[str, str], gateway: httpx.AsyncClient, databases: dict[str, AsyncEngine]
) -> None:
    trades = [a_trade() for _ in range(50)]
    response = await gateway.post(
        "/v1/trades/batch", json={"trades": trades}, headers=auth(keys["trader"])
    )
    assert response.status_code == 200, response.text
    ids = [item["trade_id"] for item in response.json()["items"]]
    queued = await rows(
        databases["gateway"],
        "SELECT correlation_id FROM outbox WHERE correlation_id = ANY(:ids) ORDER BY seq",
        ids=ids,
    )
    assert [row.correlation_id for row in queued] == ids


async def test_twenty_concurrent_different_bodies_under_one_id_capture_one(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    trade = a_trade()
    responses = await asyncio.gather(
        *(
            gateway.post(
                "/v1/trades", json={**trade, "quantity": str(n + 1)}, headers=auth(keys["trader"])
            )
            for n in range(20)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    assert all(r.json()["field"] == "quantity" for r in responses if r.status_code == 409)


async def test_a_batch_captures_the_valid_trades_and_reports_the_invalid_by_index(
    keys: dict[str, str], gateway: httpx.AsyncClient, databases: dict[str, AsyncEngine]
) -> None:
    good = [a_trade() for _ in range(5)]
    batch = [
        good[0],
        a_trade(isin="US0378331006"),
        good[1],
        a_trade(account="ACC-999"),
        good[2],
        {**a_trade(), "colour": "blue"},
        good[3],
        good[3],  # the same trade twice in one batch is one trade
        {**good[4], "quantity": "1"},
        good[4],  # same id, another body: the first one wins, this one conflicts
    ]
    response = await gateway.post(
        "/v1/trades/batch", json={"trades": batch}, headers=auth(keys["trader"])
    )

    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [item["status"] for item in body["items"]]
    assert statuses == [
        "created",
        "rejected",
        "created",
        "rejected",
        "created",
        "rejected",
        "created",
        "existing",
        "created",
        "rejected",
    ]
    assert [item["index"] for item in body["items"]] == list(range(10))
    assert (body["created"], body["existing"], body["rejected"]) == (5, 1, 4)
    errors = {item["index"]: item["errors"][0]["field"] for item in body["items"] if item["errors"]}
    assert errors == {1: "isin", 3: "account", 5: "colour", 9: "quantity"}
    assert body["items"][7]["trade_id"] == body["items"][6]["trade_id"]
    ids = [t["client_trade_id"] for t in good]
    stored = await scalar(
        databases["gateway"],
        "SELECT count(*) FROM trades WHERE client_trade_id = ANY(:ids)",
        ids=ids,
    )
    assert stored == 5

    again = await gateway.post(
        "/v1/trades/batch", json={"trades": good}, headers=auth(keys["trader"])
    )
    assert [item["status"] for item in again.json()["items"]] == ["existing"] * 4 + ["rejected"]


async def test_a_batch_of_a_thousand_is_taken_and_one_more_is_refused(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    # 1,000 items of 10 distinct trades: the whole batch is checked and answered, while the
    # pipeline behind gets 10 trades, not 1,000 (the bench measures 1,000 distinct ones).
    distinct = [a_trade(account=f"ACC-{n + 1:03d}") for n in range(10)]
    trades = [distinct[n % 10] for n in range(1000)]
    response = await gateway.post(
        "/v1/trades/batch", json={"trades": trades}, headers=auth(keys["ops"]), timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["existing"], body["rejected"]) == (10, 990, 0)
    ids = {item["client_trade_id"]: item["trade_id"] for item in body["items"][:10]}
    for item in body["items"]:
        assert item["trade_id"] == ids[item["client_trade_id"]]

    too_many = await gateway.post(
        "/v1/trades/batch", json={"trades": [*trades, a_trade()]}, headers=auth(keys["ops"])
    )
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "trades"


async def test_the_list_filters_and_pages_without_gaps_or_repeats(
    keys: dict[str, str], gateway: httpx.AsyncClient, gateway_admin: Admin
) -> None:
    account = f"L-{uuid.uuid4().hex[:6]}"
    await gateway_admin.desk([account])
    yesterday = datetime.now(UTC) - timedelta(days=1)
    trades = [a_trade(account=account) for _ in range(7)] + [
        a_trade(
            account=account,
            trade_date=yesterday.date().isoformat(),
            trade_time=yesterday.isoformat(),
        )
    ]
    response = await gateway.post(
        "/v1/trades/batch", json={"trades": trades}, headers=auth(keys["ops"])
    )
    assert response.json()["created"] == 8

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"account": account, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await gateway.get("/v1/trades", params=params, headers=auth(keys["ops"]))).json()
        seen += [t["trade_id"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 8

    by_id = await gateway.get(
        "/v1/trades",
        params={"client_trade_id": trades[2]["client_trade_id"]},
        headers=auth(keys["ops"]),
    )
    assert [t["client_trade_id"] for t in by_id.json()["items"]] == [trades[2]["client_trade_id"]]
    dated = await gateway.get(
        "/v1/trades",
        params={"account": account, "trade_date": yesterday.date().isoformat()},
        headers=auth(keys["ops"]),
    )
    assert [t["client_trade_id"] for t in dated.json()["items"]] == [trades[7]["client_trade_id"]]
    captured = await gateway.get(
        "/v1/trades",
        params={"account": account, "state": "settled", "limit": 500},
        headers=auth(keys["ops"]),
    )
    assert all(t["state"] == "settled" for t in captured.json()["items"])

    bad = await gateway.get("/v1/trades", params={"cursor": "nonsense"}, headers=auth(keys["ops"]))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"
    unknown_state = await gateway.get(
        "/v1/trades", params={"state": "lost"}, headers=auth(keys["ops"])
    )
    assert unknown_state.status_code == 422


async def test_a_trader_sees_and_changes_only_its_desks_trades(
    keys: dict[str, str], gateway: httpx.AsyncClient, gateway_admin: Admin
) -> None:
    account = f"S-{uuid.uuid4().hex[:6]}"
    desk = await gateway_admin.desk([account])
    own = await gateway_admin.key(Role.TRADER, desk=desk)
    other = keys["trader"]  # desk DEMO
    trade = (
        await gateway.post("/v1/trades", json=a_trade(account=account), headers=auth(own))
    ).json()

    assert (
        await gateway.get(f"/v1/trades/{trade['trade_id']}", headers=auth(own))
    ).status_code == 200
    assert (
        await gateway.get(f"/v1/trades/{trade['trade_id']}", headers=auth(other))
    ).status_code == 404
    listed = await gateway.get("/v1/trades", params={"account": account}, headers=auth(other))
    assert listed.json()["items"] == []
    amend = await gateway.post(
        f"/v1/trades/{trade['trade_id']}/amend",
        json={"quantity": "5", "reason": "not yours"},
        headers=auth(other),
    )
    assert amend.status_code == 404
    cancel = await gateway.post(
        f"/v1/trades/{trade['trade_id']}/cancel", json={"reason": "not yours"}, headers=auth(other)
    )
    assert cancel.status_code == 404
    for reader in ("compliance", "ops", "admin"):
        seen = await gateway.get(f"/v1/trades/{trade['trade_id']}", headers=auth(keys[reader]))
        assert seen.status_code == 200
    posted = await gateway.post("/v1/trades", json=a_trade(account=account), headers=auth(other))
    assert posted.status_code == 403


async def test_a_revoked_key_is_refused_within_the_cache_time(
    gateway: httpx.AsyncClient, gateway_admin: Admin
) -> None:
    name = f"rev-{uuid.uuid4().hex[:6]}"
    key = await gateway_admin.key(Role.OPS, name=name)
    assert (await gateway.get("/v1/whoami", headers=auth(key))).status_code == 200

    assert await admin.revoke_key(gateway_admin.uow(), name=name) == 1
    deadline = time.monotonic() + 8
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = (await gateway.get("/v1/whoami", headers=auth(key))).status_code
        await asyncio.sleep(0.25)
    assert status == 401


def gateway_routes(trade_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/v1/trades", a_trade()),
        ("POST", "/v1/trades/batch", {"trades": [a_trade()]}),
        ("POST", f"/v1/trades/{trade_id}/amend", {"quantity": "7", "reason": "fix"}),
        ("POST", f"/v1/trades/{trade_id}/cancel", {"reason": "duplicate"}),
        ("GET", f"/v1/trades/{trade_id}", None),
        ("GET", "/v1/trades", None),
        ("GET", "/v1/whoami", None),
    ]


async def test_every_route_refuses_a_missing_or_wrong_key_with_401(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    for method, path, body in gateway_routes(str(uuid.uuid4())):
        for headers in ({}, auth("bo_not-a-key"), {"Authorization": "Basic abc"}):
            response = await gateway.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"].startswith("application/problem+json")


async def test_every_writing_route_refuses_a_reading_role_with_403(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    writes = [r for r in gateway_routes(str(uuid.uuid4())) if r[0] == "POST"]
    for role in ("compliance", "admin"):
        for method, path, body in writes:
            response = await gateway.request(method, path, json=body, headers=auth(keys[role]))
            assert response.status_code == 403, (role, path, response.text)


async def test_every_route_answers_429_with_retry_after_over_the_keys_rate(
    keys: dict[str, str], gateway: httpx.AsyncClient, gateway_admin: Admin
) -> None:
    name = f"slow-{uuid.uuid4().hex[:6]}"
    await admin.set_client_limit(gateway_admin.uow(), client=name, per_second=0.05, burst=1)
    key = await gateway_admin.key(Role.OPS, name=name)
    first = await gateway.get("/v1/whoami", headers=auth(key))
    assert first.status_code == 200
    for method, path, body in gateway_routes(str(uuid.uuid4())):
        response = await gateway.request(method, path, json=body, headers=auth(key))
        assert response.status_code == 429, (path, response.text)
        assert 1 <= int(response.headers["retry-after"]) <= 20
        assert response.headers["content-type"].startswith("application/problem+json")
    # Another key is not slowed by this one.
    assert (await gateway.get("/v1/whoami", headers=auth(keys["ops"]))).status_code == 200


async def test_every_writing_route_answers_413_to_a_body_over_the_limit(
    keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    huge = {"trades": [a_trade(client_trade_id="X" * 60) for _ in range(5000)]}
    assert len(httpx.Request("POST", "/", json=huge).content) > 1_048_576
    for method, path, _ in gateway_routes(str(uuid.uuid4())):
        if method != "POST":
            continue
        response = await gateway.request(method, path, json=huge, headers=auth(keys["ops"]))
        assert response.status_code == 413, (path, response.status_code)
        assert response.json()["status"] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b" " * 65536

    streamed = await gateway.post(
        "/v1/trades",
        content=chunks(),
        headers={**auth(keys["ops"]), "content-type": "application/json"},
    )
    assert streamed.status_code == 413


async def test_the_openapi_document_has_examples_and_every_error_for_every_route(
    gateway: httpx.AsyncClient,
) -> None:
    document = (await gateway.get("/openapi.json")).json()
    open_routes = {"/healthz", "/readyz", "/metrics"}
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                for media, content in response.get("content", {}).items():
                    has_example = "example" in content or "examples" in content
                    schema_ref = content.get("schema", {}).get("$ref", "")
                    if not has_example and schema_ref:
                        name = schema_ref.rsplit("/", 1)[-1]
                        has_example = "examples" in document["components"]["schemas"][name]
                    assert has_example, (method, path, status, media)
            if path in open_routes:
                continue
            expected = {"401", "429", "503"} | ({"413", "422"} if method == "post" else set())
            assert expected <= set(responses), (method, path, sorted(responses))
            for status in expected:
                assert "application/problem+json" in responses[status]["content"]
            checked += 1
    assert checked == 8  # the seven trade routes and GET /v1/ops/status
