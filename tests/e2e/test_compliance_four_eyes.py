"""Four eyes on held trades, end to end: a trade in a restricted ISIN is held; one
compliance officer proposes to release or reject it and another approves. The same officer
cannot do both, a trader, ops or admin key cannot decide. A release lets the trade settle;
a rejection cancels it downstream: settlement never instructs it and the ledger reverses
its pending entries."""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stdnum import isin as stdnum_isin

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually

pytestmark = pytest.mark.e2e


async def in_force(when: str) -> None:
    """Wait until an officer's change is in force (changes take effect two seconds after
    they are made, so that every replica applies them to the same trades)."""
    wait_s = (datetime.fromisoformat(when) - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(wait_s, 0) + 0.05)


def fresh_isin() -> str:
    """A valid US ISIN no other test trades: restricting it touches only this test."""
    body = "US" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9))
    return body + stdnum_isin.calc_check_digit(body)


@pytest.fixture
async def officers(
    stack: Stack, keys: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two compliance officers (two keys, two names)."""
    base = stack.url("compliance_monitor")
    async with (
        httpx.AsyncClient(base_url=base, timeout=10, headers=auth(keys["compliance"])) as a,
        httpx.AsyncClient(base_url=base, timeout=10, headers=auth(keys["compliance2"])) as b,
    ):
        yield a, b


async def held_trade(
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    officer: httpx.AsyncClient,
    **overrides: str,
) -> tuple[str, dict[str, Any]]:
    """A trade in a freshly restricted ISIN, held; its blocking alert."""
    isin = fresh_isin()
    restricted = await officer.put(
        f"/v1/restricted-list/{isin}", json={"reason": "inside information (test)"}
    )
    assert restricted.status_code == 201, restricted.text
    await in_force(restricted.json()["added_at"])
    body = a_trade(isin=isin, quantity="10", price="100", **overrides)
    response = await gateway.post("/v1/trades", json=body, headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]
    await wait_for_state(gateway, keys, trade_id, "held")

    async def blocking() -> list[dict[str, Any]]:
        page = await officer.get("/v1/alerts", params={"trade_id": trade_id, "blocking": "true"})
        return page.json()["items"]  # type: ignore[no-any-return]

    [alert] = await eventually(blocking, f"the blocking alert of {trade_id}")
    assert (alert["rule"], alert["state"], alert["severity"]) == (
        "restricted-list",
        "open",
        "critical",
    )
    assert alert["evidence"] == {"isin": isin, "list_reason": "inside information (test)"}
    return trade_id, alert


async def wait_for_state(
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    trade_id: str,
    state: str,
    timeout_s: float = 30,
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = (await gateway.get(f"/v1/trades/{trade_id}", headers=auth(keys["ops"]))).json()
        return view if view.get("state") == state else None

    return await eventually(  # type: ignore[no-any-return]
        reached, f"trade {trade_id} {state}", timeout_s=timeout_s
    )


async def decide(
    client: httpx.AsyncClient, alert_id: str, action: str, **extra: str
) -> httpx.Response:
    return await client.post(
        f"/v1/alerts/{alert_id}/decision",
        json={"action": action, "reason": f"{action} after review", **extra},
    )


async def test_a_release_needs_two_officers_and_lets_the_trade_settle(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    officers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    alice, bob = officers
    trade_id, alert = await held_trade(gateway, keys, alice)
    alert_id = alert["alert_id"]

    nothing_to_approve = await decide(alice, alert_id, "approve")
    assert nothing_to_approve.status_code == 409, nothing_to_approve.text
    assert nothing_to_approve.headers["content-type"] == "application/problem+json"

    proposed = await decide(alice, alert_id, "propose_release")
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["proposal"]["state"] == "pending"
    assert proposed.json()["hold"]["state"] == "open"

    # Alice cannot approve her own proposal, nor propose another while hers is pending.
    own = await decide(alice, alert_id, "approve")
    assert own.status_code == 403, own.text
    assert "four eyes" in own.json()["detail"]
    again = await decide(alice, alert_id, "propose_reject")
    assert again.status_code == 409, again.text
    # The alert that holds the trade cannot simply be closed.
    closed = await decide(bob, alert_id, "close")
    assert closed.status_code == 409, closed.text

    approved = await decide(bob, alert_id, "approve")
    assert approved.status_code == 200, approved.text
    decision = approved.json()
    assert decision["hold"]["state"] == "released"
    assert decision["proposal"]["state"] == "approved"
    assert (decision["proposal"]["proposed_by"], decision["proposal"]["decided_by"]) == (
        "dev-compliance",
        "dev-compliance2",
    )
    assert decision["alert"]["state"] == "closed"
    assert "approved by dev-compliance2" in decision["alert"]["closed_reason"]

    # Through settlement, the depository and back: slower than the rest on a loaded machine.
    view = await wait_for_state(gateway, keys, trade_id, "settled", timeout_s=90)
    released = [e for e in view["timeline"] if e["type"] == "compliance.trade_released"]
    assert [
        (e["data"]["version"], e["data"]["proposed_by"], e["data"]["approved_by"]) for e in released
    ] == [(1, "key:dev-compliance", "key:dev-compliance2")]

    # Decided: nothing more to approve, and the history says who did what.
    assert (await decide(bob, alert_id, "approve")).status_code == 409
    detail = (await alice.get(f"/v1/alerts/{alert_id}")).json()
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("close", "key:dev-compliance2")
    ]


async def test_a_rejection_cancels_the_trade_and_reverses_its_pending_entries(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    officers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    alice, bob = officers
    trade_id, alert = await held_trade(gateway, keys, alice)
    alert_id = alert["alert_id"]
    ops = auth(keys["ops"])

    async with httpx.AsyncClient(timeout=10, headers=ops) as client:

        async def journal() -> list[dict[str, Any]]:
            response = await client.get(
                f"{stack.url('ledger')}/v1/journal", params={"trade_id": trade_id}
            )
            return response.json()  # type: ignore[no-any-return]

        await eventually(journal, "the pending entry of the held trade", timeout_s=90)

        proposed = await decide(bob, alert_id, "propose_reject")
        assert proposed.status_code == 200, proposed.text
        # A second opinion may decline; then a new proposal is needed.
        declined = await decide(alice, alert_id, "decline")
        assert declined.status_code == 200, declined.text
        assert declined.json()["proposal"]["state"] == "declined"
        assert (await decide(alice, alert_id, "approve")).status_code == 409
        assert (await decide(bob, alert_id, "propose_reject")).status_code == 200
        assert (await decide(bob, alert_id, "approve")).status_code == 403

        approved = await decide(alice, alert_id, "approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["hold"]["state"] == "rejected"

        view = await wait_for_state(gateway, keys, trade_id, "rejected", timeout_s=60)
        rejected = [e for e in view["timeline"] if e["type"] == "compliance.trade_rejected"]
        assert [(e["data"]["proposed_by"], e["data"]["approved_by"]) for e in rejected] == [
            ("key:dev-compliance2", "key:dev-compliance")
        ]

        obligation = (
            await client.get(
                f"{stack.url('settlement')}/v1/obligations", params={"trade_id": trade_id}
            )
        ).json()
        assert obligation[0]["instruction_id"] is None

        async def pending_reversed() -> bool:
            totals: dict[tuple[str, str], Decimal] = {}
            entries = await journal()
            for entry in entries:
                for line in entry["lines"]:
                    key = (line["ledger_account"], line["unit"])
                    totals[key] = (
                        totals.get(key, Decimal(0))
                        + Decimal(line["debit"])
                        - Decimal(line["credit"])
                    )
            return len(entries) >= 2 and all(total == 0 for total in totals.values())

        await eventually(
            pending_reversed, "the ledger reversing the rejected trade's entries", timeout_s=90
        )


async def test_only_compliance_officers_decide(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    officers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    alice, _ = officers
    _, alert = await held_trade(gateway, keys, alice)
    path = f"/v1/alerts/{alert['alert_id']}/decision"
    body = {"action": "propose_release", "reason": "the desk says it is fine"}
    async with httpx.AsyncClient(base_url=stack.url("compliance_monitor"), timeout=10) as client:
        assert (await client.post(path, json=body)).status_code == 401
        wrong = await client.post(path, json=body, headers=auth("bo_not-a-key"))
        assert wrong.status_code == 401
        for role in ("trader", "ops", "admin"):
            response = await client.post(path, json=body, headers=auth(keys[role]))
            assert response.status_code == 403, (role, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    # Nothing was proposed by them.
    hold = (await alice.get("/v1/holds", params={"trade_id": alert["trade_id"]})).json()
    assert [(h["state"], h["proposals"]) for h in hold] == [("open", [])]


async def test_a_decision_names_the_field_that_is_wrong(
    officers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
) -> None:
    alice, _ = officers
    _, alert = await held_trade(gateway, keys, alice)
    path = f"/v1/alerts/{alert['alert_id']}/decision"
    cases = [
        ({"action": "release_now", "reason": "fine"}, "action"),
        ({"action": "propose_release"}, "reason"),
        ({"action": "propose_release", "reason": ""}, "reason"),
        ({"action": "assign", "reason": "to Carol"}, "body"),
        ({"action": "close", "reason": "dup", "assignee": "carol"}, "body"),
        ({"action": "close", "reason": "dup", "note": "x"}, "note"),
    ]
    for body, field in cases:
        response = await alice.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, (body, response.json())
    missing = await alice.post(
        "/v1/alerts/no-such-alert/decision", json={"action": "escalate", "reason": "why not"}
    )
    assert missing.status_code == 404, missing.text
