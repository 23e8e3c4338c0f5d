"""The `bo` ops commands against the running cluster, run as an operator runs them: status
(lag rising while a consumer is stopped, falling when it returns), dead letters and their
replay, trace, and reconciliation finding a break."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.ops.config import OpsConfig
from bo_tools.ops.load import post_batches, trades_for
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, fresh_lei, scalar

pytestmark = pytest.mark.e2e


def bo(ops: OpsConfig, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bo_tools.cli", *args],
        env={**os.environ, **ops.environment()},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


async def abo(ops: OpsConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(bo, ops, *args)


@pytest.fixture
def ops(stack: Stack, keys: dict[str, str]) -> OpsConfig:
    return OpsConfig.for_stack(stack, ops_key=keys["ops"])


def _ledger_lag(statuses: list[dict[str, Any]]) -> tuple[bool, int]:
    ledger = next(s for s in statuses if s["process"] == "ledger")
    consumer = ledger["consumer"]
    assert consumer is not None and consumer.get("error") is None, ledger
    return bool(ledger["reachable"]), int(consumer["total_lag"])


async def test_status_shows_lag_rising_while_a_consumer_is_stopped_and_falling_after(
    stack: Stack, keys: dict[str, str], ops: OpsConfig
) -> None:
    await asyncio.to_thread(stack.kill, "ledger", signal.SIGKILL)
    try:
        samples = []
        for wave in range(2):
            await post_batches(
                stack.url("gateway"), keys["trader"], trades_for(f"LAG{time.time_ns()}", 100)
            )
            await asyncio.sleep(2)  # the trades' events reach trade.events (gateway relay)
            done = await abo(ops, "status", "--json")
            assert done.returncode == 1, done.stderr  # not every process is ready
            reachable, lag = _ledger_lag(json.loads(done.stdout))
            assert not reachable
            samples.append(lag)
            assert lag >= 100 * (wave + 1), samples
        assert samples[1] > samples[0]
        human = await abo(ops, "status")
        assert "ledger" in human.stdout and "unreachable" in human.stdout
    finally:
        stack.start("ledger")
        await asyncio.to_thread(stack.wait_ready, ["ledger"], 90)

    seen: list[int] = []

    async def caught_up() -> bool:
        done = await abo(ops, "status", "--json")
        reachable, lag = _ledger_lag(json.loads(done.stdout))
        seen.append(lag)
        return reachable and lag == 0

    await eventually(caught_up, "the ledger's lag back to zero", timeout_s=120)
    assert seen[-1] == 0, (samples, seen)


def _bad_capture(trade_id: str, account: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "trade.captured",
        "version": 1,
        "source": "front-office-bridge",
        "subject": trade_id,
        "time": "2026-11-20T10:00:00Z",
        "correlation_id": trade_id,
        "causation_id": None,
        "actor": "bridge",
        "data": {"trade_id": trade_id, "account": account, "quantity": "lots"},
    }


def _fixed(envelope: dict[str, Any], lei: str) -> dict[str, Any]:
    trade = a_trade(
        account=envelope["data"]["account"], quantity="7", price="10", counterparty_lei=lei
    )
    data = {**trade, "trade_id": envelope["data"]["trade_id"], "gross_amount": "70", "version": 1}
    return {**envelope, "data": data}


async def _publish(stack: Stack, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _applied(databases: dict[str, AsyncEngine], trade_id: str) -> dict[str, int]:
    return {
        "obligations": await scalar(
            databases["settlement"],
            "SELECT count(*) FROM obligations WHERE trade_id = :t",
            t=trade_id,
        ),
        "evaluations": await scalar(
            databases["compliance_monitor"],
            "SELECT count(*) FROM evaluations WHERE trade_id = :t",
            t=trade_id,
        ),
        "journal entries": await scalar(
            databases["ledger"],
            "SELECT count(*) FROM journal_entries WHERE trade_id = :t",
            t=trade_id,
        ),
    }


async def test_dlq_replay_applies_a_fixed_poison_message_once(
    stack: Stack,
    keys: dict[str, str],
    ops: OpsConfig,
    databases: dict[str, AsyncEngine],
    tmp_path: Path,
) -> None:
    trade_id = f"T-DLQ-{uuid.uuid4().hex[:12]}"
    poison = _bad_capture(trade_id, "ACC-004")
    await _publish(stack, "trade.events", json.dumps(poison).encode(), b"ACC-004")

    async def dead_letters() -> list[dict[str, Any]] | None:
        done = await abo(ops, "dlq", "list", "--topic", "trade.events", "--json")
        mine = [d for d in json.loads(done.stdout) if d["event_id"] == poison["id"]]
        consumers = {d["consumer"] for d in mine}
        return mine if {"settlement", "ledger", "compliance_monitor"} <= consumers else None

    letters = await eventually(dead_letters, "the poison message dead-lettered", timeout_s=60)
    assert all(d["status"] == "open" and d["attempts"] >= 1 for d in letters)
    by_consumer = {d["consumer"]: d["id"] for d in letters}
    shown = await abo(ops, "dlq", "show", by_consumer["ledger"][:13], "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert json.loads(detail["value"]) == poison and "quantity" in detail["error"]

    # The operator corrects the message (same event id) and replays it.
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(_fixed(poison, fresh_lei())))
    replayed = await abo(ops, "dlq", "replay", by_consumer["ledger"], "--value-file", str(fixed))
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed" in replayed.stdout and "(corrected)" in replayed.stdout
    once = {"obligations": 1, "evaluations": 1, "journal entries": 1}

    async def applied_once() -> bool:
        return await _applied(databases, trade_id) == once

    await eventually(applied_once, "the fixed message applied by every consumer that failed it")

    # A second replay changes nothing; a forced one and the other consumers' dead letters
    # of the same event are skipped by every inbox.
    again = await abo(ops, "dlq", "replay", by_consumer["ledger"], "--value-file", str(fixed))
    assert again.returncode == 0 and "already replayed" in again.stdout
    for consumer, forced in (
        ("ledger", True),
        ("compliance_monitor", False),
        ("settlement", False),
    ):
        args = ["dlq", "replay", by_consumer[consumer], "--value-file", str(fixed), "--json"]
        done = await abo(ops, *args, *(["--force"] if forced else []))
        assert done.returncode == 0 and json.loads(done.stdout)["replayed"] is True, done.stderr
    # A trade after them on the same partition (same account): once the ledger has it, the
    # replays before it have been consumed.
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        after = await gateway.post(
            "/v1/trades", json=a_trade(account="ACC-004"), headers=auth(keys["trader"])
        )
    after_id = after.json()["trade_id"]
    for service, table in (
        ("ledger", "journal_entries"),
        ("compliance_monitor", "evaluations"),
        ("settlement", "obligations"),
    ):
        await eventually(
            lambda s=service, t=table: scalar(
                databases[s], f"SELECT count(*) FROM {t} WHERE trade_id = :t", t=after_id
            ),
            f"{service} applied the trade after the replays",
        )
    assert await _applied(databases, trade_id) == once

    listed = json.loads((await abo(ops, "dlq", "list", "--json")).stdout)
    statuses = {d["consumer"]: d["status"] for d in listed if d["event_id"] == poison["id"]}
    assert statuses["ledger"] == statuses["compliance_monitor"] == "replayed"
    # The replays are in the audit trail.
    await eventually(
        lambda: scalar(
            databases["audit"],
            "SELECT count(*) >= 4 FROM audit_records WHERE correlation_id = :t "
            "AND event_type = 'ops.dead_letter_replayed'",
            t=trade_id,
        ),
        "the replays recorded by audit",
    )


async def test_dlq_refuses_an_unknown_id_and_a_correction_with_another_event_id(
    stack: Stack, ops: OpsConfig, tmp_path: Path
) -> None:
    missing = await abo(ops, "dlq", "show", "00000000-no-such")
    assert missing.returncode == 2 and "no dead letter" in missing.stderr
    trade_id = f"T-DLQ-{uuid.uuid4().hex[:12]}"
    poison = _bad_capture(trade_id, "ACC-005")
    await _publish(stack, "trade.events", json.dumps(poison).encode(), b"ACC-005")

    async def letter() -> str | None:
        done = await abo(ops, "dlq", "list", "--json")
        ids = [d["id"] for d in json.loads(done.stdout) if d["event_id"] == poison["id"]]
        return ids[0] if ids else None

    letter_id = await eventually(letter, "the poison message dead-lettered", timeout_s=60)
    other_id = tmp_path / "other.json"
    other_id.write_text(json.dumps({**_fixed(poison, fresh_lei()), "id": str(uuid.uuid4())}))
    refused = await abo(ops, "dlq", "replay", letter_id, "--value-file", str(other_id))
    assert refused.returncode == 2 and "must keep the original id" in refused.stderr
    not_json = tmp_path / "broken.json"
    not_json.write_text("{not json")
    refused = await abo(ops, "dlq", "replay", letter_id, "--value-file", str(not_json))
    assert refused.returncode == 2 and "not a valid envelope" in refused.stderr
    absent = await abo(ops, "dlq", "replay", letter_id, "--value-file", str(tmp_path / "none"))
    assert absent.returncode == 2 and "--value-file" in absent.stderr


async def test_trace_says_where_a_trade_is_and_what_it_waits_for(
    stack: Stack, keys: dict[str, str], ops: OpsConfig
) -> None:
    lei = fresh_lei()  # no SSI: settlement waits for one
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as gateway:
        waiting = (
            await gateway.post(
                "/v1/trades", json=a_trade(counterparty_lei=lei), headers=auth(keys["trader"])
            )
        ).json()["trade_id"]
        settles = (
            await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
        ).json()["trade_id"]

    async def traced(trade_id: str, expected: str) -> dict[str, Any] | None:
        done = await abo(ops, "trace", trade_id, "--json")
        found: dict[str, Any] = json.loads(done.stdout)
        return found if any(expected in w for w in found["waiting_for"]) else None

    found = await eventually(
        lambda: traced(waiting, "standing settlement instruction"), "waiting for an SSI"
    )
    assert found["settlement"]["state"] == "needs_ssi" and found["gateway"]["trade_id"] == waiting
    await eventually(lambda: traced(settles, "nothing: settled and booked"), "settled everywhere")
    human = await abo(ops, "trace", settles)
    assert human.returncode == 0 and "settlement.settled" in human.stdout
    unknown = await abo(ops, "trace", "T-never-captured")
    assert unknown.returncode == 1 and "never captured" in unknown.stdout


async def test_reconcile_finds_a_trade_settlement_holds_and_the_gateway_never_captured(
    stack: Stack, keys: dict[str, str], ops: OpsConfig, databases: dict[str, AsyncEngine]
) -> None:
    ids = await post_batches(
        stack.url("gateway"), keys["trader"], trades_for(f"REC{time.time_ns()}", 20)
    )
    args = [arg for trade_id in ids for arg in ("--trade-id", trade_id)]
    clean = await abo(ops, "reconcile", *args, "--wait", "90", "--json")
    report = json.loads(clean.stdout)
    assert clean.returncode == 0, report["breaks"]
    assert report["trades"] == 20 and report["checked"]["obligations"] == 20

    # A capture that bypassed the gateway (published by hand): settlement, ledger and
    # compliance apply it, and the control reports it.
    orphan = f"T-ORPHAN-{uuid.uuid4().hex[:12]}"
    envelope = _fixed(_bad_capture(orphan, "ACC-006"), fresh_lei())
    await _publish(stack, "trade.events", json.dumps(envelope).encode(), b"ACC-006")
    await eventually(
        lambda: scalar(
            databases["settlement"],
            "SELECT count(*) FROM obligations WHERE trade_id = :t",
            t=orphan,
        ),
        "settlement applied the capture",
    )
    found = await abo(ops, "reconcile", "--trade-id", orphan, "--trade-id", "T-nowhere", "--json")
    assert found.returncode == 1
    broken = json.loads(found.stdout)
    assert {(b["trade_id"], b["service"], b["kind"]) for b in broken["breaks"]} == {
        (orphan, "settlement", "not_captured"),
        ("T-nowhere", "gateway", "unknown"),
    }
    human = await abo(ops, "reconcile", "--trade-id", orphan, "--no-publish")
    assert human.returncode == 1 and "1 BREAK(S)" in human.stdout and orphan in human.stdout
    # The result is an event: audit records it, breaks included.
    await eventually(
        lambda: scalar(
            databases["audit"],
            "SELECT count(*) FROM audit_records WHERE event_id = CAST(:id AS uuid) "
            "AND event_type = 'ops.reconciliation_completed'",
            id=broken["run_id"],
        ),
        "the reconciliation recorded by audit",
    )


async def test_ops_commands_refuse_bad_input_and_a_missing_or_wrong_key(
    stack: Stack, keys: dict[str, str], ops: OpsConfig
) -> None:
    bad_since = await abo(ops, "outbox", "republish", "--since", "yesterday-ish")
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr
    bad_date = await abo(ops, "reconcile", "--date", "2026-13-45")
    assert bad_date.returncode == 2 and "not a date" in bad_date.stderr
    env = {**os.environ, **ops.environment(), "BO_OPS_KEY": "", "BO_KEYS_FILE": "/nonexistent"}
    no_key = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bo_tools.cli", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert no_key.returncode == 2 and "no ops key" in no_key.stderr
    trader = await abo(ops, "status", "--json", "--key", keys["trader"])
    answers = json.loads(trader.stdout)
    assert trader.returncode == 1
    assert all("403" in s["error"] for s in answers if s["process"] != "csd_simulator"), answers


async def test_reconcile_on_a_schedule_publishes_every_run_until_stopped(
    stack: Stack, keys: dict[str, str], ops: OpsConfig, databases: dict[str, AsyncEngine]
) -> None:
    trades = trades_for(f"SCH{time.time_ns()}", 1)
    trade_id = (await post_batches(stack.url("gateway"), keys["trader"], trades))[0]
    scheduler = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bo_tools.cli", "reconcile", "--every", "1"],
        *["--trade-id", trade_id],
        env={**os.environ, **ops.environment()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert scheduler.stdout is not None
    runs: list[str] = []
    try:

        async def three_runs() -> None:
            while len(runs) < 3:
                line = (await scheduler.stdout.readline()).decode()  # type: ignore[union-attr]
                assert line, "the scheduler stopped"
                if line.startswith("reconciliation "):
                    runs.append(line.split()[1])

        await asyncio.wait_for(three_runs(), timeout=120)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(scheduler.communicate(), timeout=60)
    assert scheduler.returncode == 0, errors
    # Every run is an event that audit records.
    for run_id in runs:
        await eventually(
            lambda r=run_id: scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE event_id = CAST(:id AS uuid) "
                "AND event_type = 'ops.reconciliation_completed'",
                id=r,
            ),
            f"run {run_id} recorded by audit",
            timeout_s=60,
        )
