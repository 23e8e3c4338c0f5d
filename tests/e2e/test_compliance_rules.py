"""The rules through the whole stack: for each rule a planted trade that must alert (or be
held) and a near miss that must not; a rule change takes effect for later trades only and
is in the audit trail with the officer who made it; alerts are worked and paged; the demo
lists hold trades out of the box; the routes refuse bad input and the wrong keys."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import exchange_calendars
import httpx
import pandas as pd
import pytest

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, fresh_lei
from tests.e2e.test_compliance_four_eyes import fresh_isin, in_force

pytestmark = pytest.mark.e2e


@pytest.fixture
async def compliance(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("compliance_monitor"), timeout=10, headers=auth(keys["compliance"])
    ) as client:
        yield client


class Desk:
    """Posts trades (to a counterparty with no SSI, so they stay put) and reads what
    compliance made of them."""

    def __init__(
        self, gateway: httpx.AsyncClient, compliance: httpx.AsyncClient, keys: dict[str, str]
    ) -> None:
        self.gateway, self.compliance, self.keys = gateway, compliance, keys

    async def post(self, **terms: str) -> str:
        body = a_trade(counterparty_lei=terms.pop("counterparty_lei", fresh_lei()), **terms)
        response = await self.gateway.post(
            "/v1/trades", json=body, headers=auth(self.keys["trader"])
        )
        assert response.status_code == 201, response.text
        return response.json()["trade_id"]  # type: ignore[no-any-return]

    async def evaluated(self, trade_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The trade's evaluation and its alerts by rule."""

        async def evaluation() -> dict[str, Any] | None:
            response = await self.compliance.get(f"/v1/evaluations/{trade_id}")
            return response.json() if response.status_code == 200 else None

        found = await eventually(evaluation, f"the evaluation of {trade_id}")
        page = (await self.compliance.get("/v1/alerts", params={"trade_id": trade_id})).json()
        return found, {a["rule"]: a for a in page["items"]}

    async def trade(self, **terms: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        return await self.evaluated(await self.post(**terms))


@pytest.fixture
async def desk(
    gateway: httpx.AsyncClient, compliance: httpx.AsyncClient, keys: dict[str, str]
) -> Desk:
    return Desk(gateway, compliance, keys)


def result(evaluation: dict[str, Any], rule: str) -> dict[str, Any]:
    return next(r for r in evaluation["results"] if r["rule"] == rule)


async def test_a_watched_lei_and_a_name_close_to_a_watched_name_hold_the_trade(
    desk: Desk, compliance: httpx.AsyncClient
) -> None:
    watched, named, other = fresh_lei(), fresh_lei(), fresh_lei()
    tag = secrets.token_hex(3).upper()
    for lei, name in ((named, f"Quorvex {tag} Maritime Ltd."), (other, f"Quorvex {tag} Foods")):
        response = await compliance.put(f"/v1/counterparties/{lei}", json={"name": name})
        assert response.status_code == 200, response.text
    by_lei_entry = await compliance.post(
        "/v1/watch-list", json={"lei": watched, "reason": "OFAC SDN (test)"}
    )
    assert by_lei_entry.status_code == 201, by_lei_entry.text
    by_name_entry = await compliance.post(
        "/v1/watch-list",
        json={"name": f"Quorvex {tag} Maritime Limited", "reason": "EU list (test)"},
    )
    assert by_name_entry.status_code == 201, by_name_entry.text
    await in_force(by_name_entry.json()["added_at"])

    by_lei, alerts = await desk.trade(counterparty_lei=watched)
    assert by_lei["outcome"] == "held"
    assert alerts["watch-list"]["blocking"] and "OFAC SDN" in alerts["watch-list"]["detail"]

    by_name, alerts = await desk.trade(counterparty_lei=named)
    assert by_name["outcome"] == "held"
    assert alerts["watch-list"]["evidence"]["matched_name"] == f"Quorvex {tag} Maritime Limited"

    near_miss, alerts = await desk.trade(counterparty_lei=other)
    assert near_miss["outcome"] == "cleared"
    assert "watch-list" not in alerts


async def test_a_restricted_isin_holds_and_another_does_not(
    desk: Desk, compliance: httpx.AsyncClient
) -> None:
    restricted, free = fresh_isin(), fresh_isin()
    response = await compliance.put(f"/v1/restricted-list/{restricted}", json={"reason": "MNPI"})
    assert response.status_code == 201, response.text
    await in_force(response.json()["added_at"])
    again = await compliance.put(f"/v1/restricted-list/{restricted}", json={"reason": "MNPI"})
    assert again.status_code == 200  # already listed: the same entry

    held, _ = await desk.trade(isin=restricted)
    cleared, alerts = await desk.trade(isin=free)

    assert held["outcome"] == "held"
    assert cleared["outcome"] == "cleared" and "restricted-list" not in alerts

    removed = await compliance.delete(
        f"/v1/restricted-list/{restricted}", params={"reason": "mandate announced"}
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_by"] == "key:dev-compliance"
    await in_force(removed.json()["removed_at"])
    after, _ = await desk.trade(isin=restricted)
    assert after["outcome"] == "cleared"


async def test_opposite_trades_of_one_account_in_the_window_and_band_are_a_wash(
    desk: Desk,
) -> None:
    isin = fresh_isin()
    terms = {"isin": isin, "account": "ACC-007", "quantity": "10"}
    first = await desk.post(side="BUY", price="100", **terms)
    await desk.evaluated(first)

    _, wash = await desk.trade(side="SELL", price="100.5", **terms)
    _, near_miss = await desk.trade(side="SELL", price="103", **terms)  # 3 % from the buy

    assert [m["trade_id"] for m in wash["wash-trade"]["evidence"]["matched_trades"]] == [first]
    assert not wash["wash-trade"]["blocking"]
    assert "wash-trade" not in near_miss


async def test_a_price_far_from_the_last_price_seen_alerts(desk: Desk) -> None:
    isin = fresh_isin()
    await desk.trade(isin=isin, price="100")
    _, near_miss = await desk.trade(isin=isin, price="109")  # 9 %: inside the 10 % band
    _, far = await desk.trade(isin=isin, price="125")  # 14.68 % from 109

    assert "price-deviation" not in near_miss
    assert far["price-deviation"]["evidence"]["reference_price"] == "109"
    assert far["price-deviation"]["evidence"]["deviation_percent"] == "14.68"


async def test_a_large_trade_alerts_without_holding(desk: Desk) -> None:
    large, alerts = await desk.trade(isin=fresh_isin(), quantity="10001", price="100")
    _, near_miss = await desk.trade(isin=fresh_isin(), quantity="10000", price="100")

    assert large["outcome"] == "cleared"
    assert alerts["large-trade"]["evidence"]["threshold"] == "1000000"
    assert "large-trade" not in near_miss


async def test_a_position_beyond_its_limit_alerts(desk: Desk) -> None:
    _, beyond = await desk.trade(isin=fresh_isin(), quantity="1000001", price="0.01")
    _, at_limit = await desk.trade(isin=fresh_isin(), quantity="1000000", price="0.01")

    assert beyond["position-limit"]["evidence"]["position_after"] == "1000001"
    assert "position-limit" not in at_limit


def _xnys_times() -> tuple[datetime, datetime]:
    """A minute of the latest XNYS session that is over, and 03:00 UTC of a day before
    (22:00 in New York: closed)."""
    calendar = exchange_calendars.get_calendar("XNYS")
    now = pd.Timestamp(datetime.now(UTC) - timedelta(minutes=1))
    session = calendar.minute_to_past_session(now) if calendar.is_open_on_minute(now) else None
    session = session if session is not None else calendar.minute_to_past_session(now)
    in_session = calendar.session_open(session).to_pydatetime() + timedelta(hours=1)
    closed = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    if closed > datetime.now(UTC):
        closed -= timedelta(days=1)
    return in_session.astimezone(UTC), closed


def _at(moment: datetime) -> dict[str, str]:
    return {
        "trade_time": moment.isoformat().replace("+00:00", "Z"),
        "trade_date": moment.date().isoformat(),
    }


async def test_a_trade_outside_the_venue_session_alerts(desk: Desk) -> None:
    in_session, closed = _xnys_times()

    evaluation, outside = await desk.trade(isin=fresh_isin(), venue="XNYS", **_at(closed))
    _, inside = await desk.trade(isin=fresh_isin(), venue="XNYS", **_at(in_session))

    assert evaluation["outcome"] == "cleared"
    assert outside["trading-session"]["severity"] == "low"
    assert "trading-session" not in inside


async def test_a_rule_change_applies_to_later_trades_only_and_is_audited(
    stack: Stack, keys: dict[str, str], desk: Desk, compliance: httpx.AsyncClient
) -> None:
    isin = fresh_isin()
    name = f"position-{secrets.token_hex(4)}"
    created = await compliance.put(
        f"/v1/rules/{name}",
        json={
            "kind": "position_limit",
            "action": "alert",
            "severity": "high",
            "parameters": {"max_quantity": {isin: "1000"}},
            "reason": "a tight limit for one security (test)",
        },
    )
    assert created.status_code == 200, created.text
    assert (created.json()["version"], created.json()["changed_by"]) == (1, "key:dev-compliance")
    await in_force(created.json()["effective_from"])

    before_id = await desk.post(isin=isin, account="ACC-005", quantity="500")
    before, _ = await desk.evaluated(before_id)
    assert result(before, name) | {"detail": ""} == {
        "rule": name,
        "rule_version": 1,
        "passed": True,
        "blocking": False,
        "severity": "high",
        "detail": "",
        "evidence": {"position_before": "0", "position_after": "500", "limit": "1000"},
    }

    changed = await compliance.put(
        f"/v1/rules/{name}",
        json={"parameters": {"max_quantity": {isin: "100"}}, "reason": "after the review"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert changed.json()["kind"] == "position_limit"  # kept from version 1
    await in_force(changed.json()["effective_from"])

    after, alerts = await desk.trade(isin=isin, account="ACC-006", quantity="200")
    assert (result(after, name)["rule_version"], result(after, name)["passed"]) == (2, False)
    assert alerts[name]["rule_version"] == 2

    # The earlier trade keeps its evaluation under version 1: nothing re-evaluated.
    history = (await compliance.get(f"/v1/evaluations/{before_id}/versions")).json()
    assert [(e["version"], result(e, name)["rule_version"]) for e in history] == [(1, 1)]
    versions = (await compliance.get(f"/v1/rules/{name}/versions")).json()
    assert [(v["version"], v["reason"]) for v in versions] == [
        (1, "a tight limit for one security (test)"),
        (2, "after the review"),
    ]

    async with httpx.AsyncClient(
        base_url=stack.url("audit"), timeout=10, headers=auth(keys["compliance"])
    ) as audit:

        async def audited() -> list[dict[str, Any]]:
            page = await audit.get(
                "/v1/events",
                params={"type": "compliance.rule_changed", "order": "desc", "limit": 200},
            )
            return [
                item["event"]
                for item in page.json()["items"]
                if item["event"]["data"]["rule"] == name
            ]

        deadline = time.monotonic() + 30
        events = await audited()
        while len(events) < 2 and time.monotonic() < deadline:
            events = await audited()
    assert sorted(
        (e["data"]["version"], e["actor"], e["data"]["changed_by"], e["data"]["reason"])
        for e in events
    ) == [
        (1, "key:dev-compliance", "key:dev-compliance", "a tight limit for one security (test)"),
        (2, "key:dev-compliance", "key:dev-compliance", "after the review"),
    ]
    disabled = await compliance.put(
        f"/v1/rules/{name}", json={"enabled": False, "reason": "test over"}
    )
    assert disabled.json()["enabled"] is False


async def test_the_demo_lists_hold_trades_out_of_the_box(
    desk: Desk, compliance: httpx.AsyncClient
) -> None:
    entries = (await compliance.get("/v1/watch-list")).json()
    await in_force(max(e["added_at"] for e in entries))
    restricted, _ = await desk.trade(isin="US36467W1099")
    by_name, alerts = await desk.trade(counterparty_lei="984500DEM0NAMEMATC09")
    by_lei, _ = await desk.trade(counterparty_lei="984500DEM0WATCH0LE78")

    assert [e["outcome"] for e in (restricted, by_name, by_lei)] == ["held"] * 3
    assert alerts["watch-list"]["evidence"]["matched_name"] == "Oceanic Petrotrade Limited"


async def test_alerts_are_worked_and_paged(desk: Desk, compliance: httpx.AsyncClient) -> None:
    isin = fresh_isin()
    trade_ids = [await desk.post(isin=isin, quantity="20000", price="100") for _ in range(3)]
    alerts = [(await desk.evaluated(t))[1]["large-trade"] for t in trade_ids]
    alert_id = alerts[0]["alert_id"]

    async def step(action: str, **extra: str) -> dict[str, Any]:
        response = await compliance.post(
            f"/v1/alerts/{alert_id}/decision",
            json={"action": action, "reason": f"{action}: reviewed", **extra},
        )
        assert response.status_code == 200, response.text
        return response.json()["alert"]  # type: ignore[no-any-return]

    assert (await step("assign", assignee="carol"))["assignee"] == "carol"
    assert (await step("escalate"))["state"] == "escalated"
    again = await compliance.post(
        f"/v1/alerts/{alert_id}/decision", json={"action": "escalate", "reason": "twice"}
    )
    assert again.status_code == 409
    assert (await step("close"))["state"] == "closed"
    reopened = await compliance.post(
        f"/v1/alerts/{alert_id}/decision",
        json={"action": "assign", "reason": "again", "assignee": "dan"},
    )
    assert reopened.status_code == 409
    detail = (await compliance.get(f"/v1/alerts/{alert_id}")).json()
    assert [(h["from_state"], h["to_state"]) for h in detail["history"]] == [
        ("open", "assigned"),
        ("assigned", "escalated"),
        ("escalated", "closed"),
    ]

    # Paging: the three alerts of the ISIN's large trades, two pages, newest first.
    seen: list[str] = []
    params: dict[str, str] = {"rule": "large-trade", "limit": "2", "severity": "medium"}
    for _ in range(50):
        page = (await compliance.get("/v1/alerts", params=params)).json()
        seen += [a["alert_id"] for a in page["items"] if a["trade_id"] in trade_ids]
        if page["next_cursor"] is None or len(seen) == 3:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [a["alert_id"] for a in reversed(alerts)]
    closed = (await compliance.get("/v1/alerts", params={"state": "closed", "limit": "500"})).json()
    assert alert_id in {a["alert_id"] for a in closed["items"]}


async def test_rule_list_and_alert_routes_refuse_bad_input_and_wrong_keys(
    stack: Stack, keys: dict[str, str], compliance: httpx.AsyncClient
) -> None:
    bad = [
        (
            "put",
            "/v1/rules/large-trade",
            {"parameters": {"thresholds": {"USD": "-1"}}, "reason": "x y z"},
            "parameters.thresholds.USD",
        ),
        ("put", "/v1/rules/large-trade", {"kind": "wash_trade", "reason": "change kind"}, "kind"),
        ("put", "/v1/rules/new-rule", {"reason": "no kind given"}, "kind"),
        ("put", "/v1/rules/new-rule", {"kind": "insider", "reason": "unknown kind"}, "kind"),
        ("put", "/v1/rules/large-trade", {"severity": "urgent", "reason": "bad"}, "severity"),
        ("put", "/v1/rules/Bad_Name", {"kind": "large_trade", "reason": "bad name"}, "path.name"),
        ("put", "/v1/restricted-list/US0378331006", {"reason": "bad check digit"}, "isin"),
        ("post", "/v1/watch-list", {"lei": "784F5XWPLTWKTBV3E585", "reason": "bad"}, "lei"),
        ("post", "/v1/watch-list", {"reason": "neither lei nor name"}, "body"),
        ("put", "/v1/counterparties/NOT-A-LEI", {"name": "Someone"}, "lei"),
    ]
    for method, path, body, field in bad:
        response = await compliance.request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in response.json()["errors"]}, (path, response.json())
    for path, params in (
        ("/v1/alerts", {"cursor": "not-a-cursor"}),
        ("/v1/alerts", {"state": "pending"}),
        ("/v1/alerts", {"limit": "0"}),
        ("/v1/alerts", {"raised_from": "2026-12-02T10:00:00"}),
    ):
        response = await compliance.get(path, params=params)
        assert response.status_code == 422, (params, response.text)
    unlisted = await compliance.delete(
        f"/v1/restricted-list/{fresh_isin()}", params={"reason": "never listed"}
    )
    assert unlisted.status_code == 404
    assert (await compliance.get("/v1/rules/no-such-rule")).status_code == 404

    writes = [
        ("put", "/v1/rules/large-trade", {"enabled": False, "reason": "switch it off"}),
        ("put", f"/v1/restricted-list/{fresh_isin()}", {"reason": "not yours"}),
        ("post", "/v1/watch-list", {"name": "Someone Ltd", "reason": "not yours"}),
        ("put", f"/v1/counterparties/{fresh_lei()}", {"name": "Someone Ltd"}),
    ]
    async with httpx.AsyncClient(base_url=stack.url("compliance_monitor"), timeout=10) as client:
        for method, path, body in writes:
            assert (await client.request(method, path, json=body)).status_code == 401, path
            for role in ("trader", "ops", "admin"):
                response = await client.request(method, path, json=body, headers=auth(keys[role]))
                assert response.status_code == 403, (path, role, response.text)
        for path in ("/v1/rules", "/v1/alerts", "/v1/restricted-list", "/v1/watch-list"):
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers=auth(keys["trader"]))).status_code == 403
            assert (await client.get(path, headers=auth(keys["ops"]))).status_code == 200
    rule = (await compliance.get("/v1/rules/large-trade")).json()
    assert rule["enabled"] is True  # none of the refused changes happened
