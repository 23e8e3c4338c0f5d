"""Compliance officers search the audit log: filters, keyset pages that neither skip nor
repeat while events keep arriving, a trade's lineage across every service in causal
order, every query recorded (who looked), and the edges: 401, 403 for a trader, 4xx
problems naming the field."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, scalar

pytestmark = pytest.mark.e2e

# Envelopes each service put in its outbox for a trade (csd.instructions holds XML).
OUTBOX_EVENTS_OF_TRADE = """
    SELECT event_id::text FROM outbox
    WHERE CASE WHEN topic LIKE '%.events'
               THEN convert_from(payload, 'UTF8')::jsonb ->> 'correlation_id' END = :trade_id
"""
PRODUCERS = ("gateway", "compliance_monitor", "settlement", "ledger")


@pytest.fixture
async def audit(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("audit"), timeout=60) as client:
        yield client


async def post_trade(gateway: httpx.AsyncClient, keys: dict[str, str], **terms: Any) -> str:
    response = await gateway.post("/v1/trades", json=a_trade(**terms), headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    return str(response.json()["trade_id"])


async def items(audit: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = await audit.get("/v1/events", params={"limit": 1000, **params}, headers=auth(key))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


async def recorded(
    audit: httpx.AsyncClient, keys: dict[str, str], trade_id: str
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await items(audit, keys["compliance"], trade_id=trade_id)
        types = {item["event"]["type"] for item in found}
        return (
            found
            if {"trade.captured", "compliance.trade_cleared", "ledger.posted"} <= types
            else None
        )

    result: list[dict[str, Any]] = await eventually(check, f"events of {trade_id} recorded")
    return result


async def test_search_filters_by_trade_account_type_source_actor_and_time(
    keys: dict[str, str], gateway: httpx.AsyncClient, audit: httpx.AsyncClient
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    trade_id = await post_trade(gateway, keys, account="ACC-007")
    other_id = await post_trade(gateway, keys, account="ACC-008")
    recorded_items = await recorded(audit, keys, trade_id)
    await recorded(audit, keys, other_id)
    key = keys["compliance"]

    assert {item["event"]["correlation_id"] for item in recorded_items} == {trade_id}
    assert [item["seq"] for item in recorded_items] == sorted(
        item["seq"] for item in recorded_items
    )

    by_account = await items(audit, key, account="ACC-007", **{"from": started.isoformat()})
    assert trade_id in {item["event"]["correlation_id"] for item in by_account}
    assert other_id not in {item["event"]["correlation_id"] for item in by_account}
    assert all(item["event"]["data"]["account"] == "ACC-007" for item in by_account)

    captured = await items(audit, key, type="trade.captured", account="ACC-007")
    assert all(item["event"]["type"] == "trade.captured" for item in captured)
    assert trade_id in {item["event"]["correlation_id"] for item in captured}

    from_compliance = await items(audit, key, source="compliance_monitor", trade_id=trade_id)
    assert from_compliance
    assert {item["event"]["source"] for item in from_compliance} == {"compliance_monitor"}

    capture = next(i for i in recorded_items if i["event"]["type"] == "trade.captured")
    by_actor = await items(audit, key, actor=capture["event"]["actor"], trade_id=trade_id)
    assert capture["seq"] in {item["seq"] for item in by_actor}
    assert all(item["event"]["actor"] == capture["event"]["actor"] for item in by_actor)

    later = datetime.now(UTC) + timedelta(hours=1)
    in_window = await items(
        audit, key, trade_id=trade_id, **{"from": started.isoformat(), "to": later.isoformat()}
    )
    assert {item["seq"] for item in in_window} >= {item["seq"] for item in recorded_items}
    assert await items(audit, key, trade_id=trade_id, **{"from": later.isoformat()}) == []

    newest_first = await items(audit, key, trade_id=trade_id, order="desc")
    assert [item["seq"] for item in newest_first] == sorted(
        (item["seq"] for item in newest_first), reverse=True
    )


async def page_through(
    audit: httpx.AsyncClient,
    key: str,
    *,
    order: str,
    start: int | None,
    stop: int | None,
    done: asyncio.Event,
) -> list[int]:
    """Pages of 3 gateway events, following next_cursor; oldest first it keeps asking at
    the end until the appends are done."""
    seen: list[int] = []
    cursor = None if start is None else str(start)
    while True:
        params: dict[str, Any] = {"source": "gateway", "limit": 3, "order": order}
        if cursor is not None:
            params["cursor"] = cursor
        body = (await audit.get("/v1/events", params=params, headers=auth(key))).json()
        page = [item["seq"] for item in body["items"]]
        if order == "desc" and stop is not None:
            page = [seq for seq in page if seq > stop]
            seen.extend(page)
            if len(page) < len(body["items"]) or body["next_cursor"] is None:
                return seen
        else:
            seen.extend(page)
        if body["next_cursor"] is not None:
            cursor = body["next_cursor"]
        elif order == "asc":
            if done.is_set() and not page:
                return seen
            if page:
                cursor = str(page[-1])
            await asyncio.sleep(0.05)
        else:
            return seen


async def test_pages_neither_skip_nor_repeat_while_events_keep_arriving(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    key = keys["compliance"]
    start = int(await scalar(databases["audit"], "SELECT size FROM merkle_head"))
    done = asyncio.Event()

    async def keep_posting() -> None:
        try:
            for _ in range(12):
                await post_trade(gateway, keys)
                await asyncio.sleep(0.05)
        finally:
            done.set()

    posting = asyncio.create_task(keep_posting())
    ascending = await page_through(audit, key, order="asc", start=start, stop=None, done=done)
    await posting
    # The last appends may still be on their way: wait for them, then page on.
    for _ in range(3):
        await asyncio.sleep(1)
        ascending += await page_through(
            audit,
            key,
            order="asc",
            start=ascending[-1] if ascending else start,
            stop=None,
            done=done,
        )
    async with databases["audit"].connect() as connection:
        expected = list(
            (
                await connection.execute(
                    sa.text(
                        "SELECT seq FROM audit_records WHERE source = 'gateway' AND seq > :start "
                        "AND seq <= :end ORDER BY seq"
                    ),
                    {"start": start, "end": ascending[-1]},
                )
            ).scalars()
        )
    assert len(ascending) == len(set(ascending)), "a record was repeated"
    assert ascending == expected, "a record was skipped"
    assert len(ascending) >= 12

    # Newest first while appending: from the newest at the first page down to `start`.
    done.clear()
    posting = asyncio.create_task(keep_posting())
    descending = await page_through(audit, key, order="desc", start=None, stop=start, done=done)
    await posting
    async with databases["audit"].connect() as connection:
        expected = list(
            (
                await connection.execute(
                    sa.text(
                        "SELECT seq FROM audit_records WHERE source = 'gateway' AND seq > :start "
                        "AND seq <= :top ORDER BY seq DESC"
                    ),
                    {"start": start, "top": descending[0]},
                )
            ).scalars()
        )
    assert descending == expected


async def test_lineage_holds_every_event_of_every_service_in_causal_order(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    trade_id = await post_trade(gateway, keys)
    await recorded(audit, keys, trade_id)

    async def published() -> set[str]:
        ids: set[str] = set()
        for service in PRODUCERS:
            async with databases[service].connect() as connection:
                rows = await connection.execute(
                    sa.text(OUTBOX_EVENTS_OF_TRADE), {"trade_id": trade_id}
                )
                ids.update(rows.scalars())
        return ids

    def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for node in nodes:
            out.append(node)
            out.extend(flatten(node["children"]))
        return out

    async def complete() -> dict[str, Any] | None:
        response = await audit.get(f"/v1/trades/{trade_id}/lineage", headers=auth(keys["ops"]))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        in_lineage = {node["event_id"] for node in flatten(body["tree"])}
        return body if in_lineage == await published() else None

    # Every event any service published about the trade, as the pipeline runs on.
    body = await eventually(complete, "the lineage equals what the services published")
    nodes = flatten(body["tree"])
    assert body["events"] == len(nodes)
    assert {node["source"] for node in nodes} >= {"gateway", "compliance_monitor", "ledger"}
    roots = body["tree"]
    assert roots[0]["type"] == "trade.captured" and roots[0]["causation_id"] is None

    def check(node: dict[str, Any]) -> None:
        for child in node["children"]:
            assert child["causation_id"] == node["event_id"]
            assert child["time"] >= node["time"], (node, child)
            check(child)
        times = [child["time"] for child in node["children"]]
        assert times == sorted(times)

    for root in roots:
        check(root)
    assert len(nodes) > len(roots)


async def test_every_query_is_recorded_with_who_what_and_how_many(
    keys: dict[str, str], audit: httpx.AsyncClient
) -> None:
    unknown = f"T-{uuid.uuid4()}"
    assert await items(audit, keys["ops"], trade_id=unknown) == []
    lineage = await audit.get(f"/v1/trades/{unknown}/lineage", headers=auth(keys["ops"]))
    assert lineage.status_code == 404

    queries = await items(
        audit, keys["compliance"], type="audit.records_queried", order="desc", limit=50
    )
    about = [q for q in queries if q["event"]["data"]["filters"].get("trade_id") == unknown]
    routes = {q["event"]["data"]["route"]: q for q in about}
    assert set(routes) == {"GET /v1/events", "GET /v1/trades/{trade_id}/lineage"}
    search = routes["GET /v1/events"]["event"]
    assert search["data"]["records_returned"] == 0
    assert search["data"]["role"] == "ops"
    assert search["actor"].startswith("key:")
    assert search["source"] == "audit"
    assert routes["GET /v1/events"]["topic"] is None  # appended by the service itself
    # The listing of the queries is itself a query, recorded too.
    again = await items(
        audit, keys["compliance"], type="audit.records_queried", order="desc", limit=5
    )
    assert any(
        q["event"]["data"]["filters"].get("type") == "audit.records_queried"
        and q["event"]["data"]["role"] == "compliance"
        for q in again
    )


ROUTES = [
    "/v1/events",
    "/v1/trades/T-1/lineage",
    "/v1/proofs/1",
    "/v1/consistency?first=1",
    "/v1/tree-head",
    "/v1/public-key",
    "/v1/verify",
    "/v1/export",
]


@pytest.mark.parametrize("route", ROUTES)
async def test_no_key_is_401_and_a_trader_key_is_403(
    keys: dict[str, str], audit: httpx.AsyncClient, route: str
) -> None:
    assert (await audit.get(route)).status_code == 401
    assert (await audit.get(route, headers=auth("bo_not-a-key"))).status_code == 401
    refused = await audit.get(route, headers=auth(keys["trader"]))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("route", "field"),
    [
        ("/v1/events?cursor=abc", "query.cursor"),
        ("/v1/events?limit=0", "query.limit"),
        ("/v1/events?type=Not%20a%20type", "query.type"),
        ("/v1/events?from=2026-01-01T00:00:00", "query.from"),
        ("/v1/events?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.to"),
        ("/v1/events?order=sideways", "query.order"),
        ("/v1/proofs/0", "path.seq"),
        ("/v1/proofs/1?tree_size=999999999999", "query.tree_size"),
        ("/v1/consistency", "query.first"),
        ("/v1/consistency?first=3&second=2", "query.first"),
        ("/v1/export?format=xml", "query.format"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    keys: dict[str, str], audit: httpx.AsyncClient, route: str, field: str
) -> None:
    response = await audit.get(route, headers=auth(keys["compliance"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {error["field"] for error in response.json()["errors"]}, response.json()


async def test_a_proof_of_a_record_not_yet_written_is_404(
    keys: dict[str, str], audit: httpx.AsyncClient
) -> None:
    response = await audit.get("/v1/proofs/999999999999", headers=auth(keys["compliance"]))
    assert response.status_code == 404
    assert "the log holds" in response.json()["detail"]
