"""Write once, and tampering is found: the service's database role may only insert and
read records; a trigger refuses UPDATE, DELETE and TRUNCATE to everyone, superusers
included, and a purge inside the retention period; a change planted by a superuser who
switched the triggers off (one byte, a removed record, two records swapped) is named by
GET /v1/verify and by the offline verifier of an export."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit.config import Settings
from audit.consumers import subscription
from audit.main import AuditRuntime
from bo_common.db import make_engine
from bo_tools.stack import BY_NAME, Stack
from tests.conftest import a_trade, auth, eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Swapping two records' event ids in one UPDATE passes through a moment with a duplicate.
DROP_UNIQUE = "ALTER TABLE audit_records DROP CONSTRAINT audit_records_event_id_key"
ADD_UNIQUE = "ALTER TABLE audit_records ADD CONSTRAINT audit_records_event_id_key UNIQUE (event_id)"


@pytest.fixture
async def audit(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("audit"), timeout=60) as client:
        yield client


async def trade_records(
    gateway: httpx.AsyncClient, audit: httpx.AsyncClient, keys: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]

    async def recorded() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (
            await audit.get(
                "/v1/events", params={"trade_id": trade_id}, headers=auth(keys["compliance"])
            )
        ).json()["items"]
        types = {item["event"]["type"] for item in items}
        return items if {"trade.captured", "compliance.trade_cleared"} <= types else None

    return trade_id, await eventually(recorded, "the trade's events recorded")


@contextlib.asynccontextmanager
async def triggers_off(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A superuser's transaction with the write-once triggers switched off, as an
    attacker with the database's superuser password could."""
    async with engine.begin() as connection:
        await connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        yield connection


async def verify(audit: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, Any]:
    response = await audit.get("/v1/verify", headers=auth(keys["compliance"]))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def offline_verify(bundle: bytes, pem: str, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "export.zip").write_bytes(bundle)
    (tmp_path / "key.pem").write_text(pem)
    result = subprocess.run(
        [sys.executable, "-m", "audit.verifier", "bundle", str(tmp_path / "export.zip"),
         "--public-key", str(tmp_path / "key.pem")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    outcome: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if outcome["valid"] else 1)
    return outcome


async def test_the_services_connections_may_only_insert_and_read_records(
    stack: Stack, databases: dict[str, AsyncEngine]
) -> None:
    # The service's own runtime, as it builds its engine: connections switch to its role.
    runtime = AuditRuntime(
        Settings(database_url=stack.database_url(BY_NAME["audit"])), subscription
    )
    runtime.engine = make_engine(runtime.settings.database_url, pool_size=1)
    try:
        async with runtime.engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT current_user")) == "audit_writer"
            assert await connection.scalar(sa.text("SELECT count(*) FROM audit_records")) > 0
            for statement in (
                "UPDATE audit_records SET actor = 'someone else' WHERE seq = 1",
                "DELETE FROM audit_records WHERE seq = 1",
                "UPDATE merkle_nodes SET hash = '\\x00' WHERE level = 0 AND index = 0",
                "DELETE FROM signed_tree_heads",
                "UPDATE audit_retention SET years = 1",
            ):
                with pytest.raises(DBAPIError, match="permission denied"):
                    async with connection.begin_nested():
                        await connection.execute(sa.text(statement))
            await connection.rollback()
    finally:
        await runtime.engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET actor = 'someone else' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 1",
        "TRUNCATE audit_records",
        "UPDATE merkle_nodes SET hash = '\\x00' WHERE level = 0 AND index = 0",
        "DELETE FROM merkle_nodes WHERE level = 0 AND index = 0",
        "TRUNCATE signed_tree_heads",
    ],
)
async def test_even_a_superuser_cannot_change_or_remove_records(
    databases: dict[str, AsyncEngine], statement: str
) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with databases["audit"].begin() as connection:
            assert await connection.scalar(
                sa.text("SELECT usesuper FROM pg_user WHERE usename = current_user")
            )
            await connection.execute(sa.text(statement))


async def test_no_purge_inside_the_retention_period_and_it_never_shortens(
    databases: dict[str, AsyncEngine],
) -> None:
    with pytest.raises(DBAPIError, match="inside the retention period of 6 years"):
        async with databases["audit"].begin() as connection:
            await connection.execute(sa.text("SET LOCAL audit.purge = 'on'"))
            await connection.execute(sa.text("DELETE FROM audit_records WHERE seq = 1"))
    with pytest.raises(DBAPIError, match="can only be lengthened"):
        async with databases["audit"].begin() as connection:
            await connection.execute(sa.text("UPDATE audit_retention SET years = 5"))


async def test_one_changed_byte_is_named_by_verify_and_by_the_offline_verifier(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
    tmp_path: Path,
) -> None:
    trade_id, items = await trade_records(gateway, audit, keys)
    pem = (await audit.get("/v1/public-key", headers=auth(keys["ops"]))).json()["public_key_pem"]
    assert (await verify(audit, keys))["valid"] is True
    target = items[1]["seq"]
    engine = databases["audit"]
    async with engine.connect() as connection:
        original = bytes(
            await connection.scalar(
                sa.text("SELECT payload FROM audit_records WHERE seq = :seq"), {"seq": target}
            )
        )
    at = original.index(b'"actor":"') + len(b'"actor":"')
    changed = original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1 :]
    update = sa.text("UPDATE audit_records SET payload = :payload WHERE seq = :seq")
    async with triggers_off(engine) as connection:
        await connection.execute(update, {"payload": changed, "seq": target})
    try:
        outcome = await verify(audit, keys)
        assert outcome["valid"] is False
        assert outcome["first_invalid_seq"] == target, outcome
        assert "content" in outcome["reason"]

        bundle = (
            await audit.get(
                "/v1/export", params={"trade_id": trade_id}, headers=auth(keys["compliance"])
            )
        ).content
        offline = offline_verify(bundle, pem, tmp_path)
        assert offline["valid"] is False
        assert offline["first_invalid_seq"] == target, offline
    finally:
        async with triggers_off(engine) as connection:
            await connection.execute(update, {"payload": original, "seq": target})
    assert (await verify(audit, keys))["valid"] is True


async def test_a_removed_record_is_named_by_verify(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    _, items = await trade_records(gateway, audit, keys)
    target = items[0]["seq"]
    engine = databases["audit"]
    async with engine.connect() as connection:
        row = (
            (
                await connection.execute(
                    sa.text("SELECT * FROM audit_records WHERE seq = :seq"), {"seq": target}
                )
            )
            .mappings()
            .one()
        )
    saved = dict(row)
    async with triggers_off(engine) as connection:
        await connection.execute(
            sa.text("DELETE FROM audit_records WHERE seq = :seq"), {"seq": target}
        )
    try:
        outcome = await verify(audit, keys)
        assert outcome["valid"] is False
        assert outcome["first_invalid_seq"] == target, outcome
        assert "removed" in outcome["reason"]
    finally:
        columns = ", ".join(f'"{name}"' for name in saved)
        values = ", ".join(f":{name}" for name in saved)
        async with triggers_off(engine) as connection:
            await connection.execute(
                sa.text(f"INSERT INTO audit_records ({columns}) VALUES ({values})"), saved
            )
    assert (await verify(audit, keys))["valid"] is True


async def test_two_records_swapped_are_named_by_verify(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    _, items = await trade_records(gateway, audit, keys)
    first, second = items[0]["seq"], items[1]["seq"]
    engine = databases["audit"]
    # Everything but the seq moves: the records change places in the order.
    swap = sa.text(
        """UPDATE audit_records AS r SET
             event_id = o.event_id, topic = o.topic, "partition" = o."partition",
             "offset" = o."offset", event_type = o.event_type, source = o.source,
             subject = o.subject, correlation_id = o.correlation_id,
             causation_id = o.causation_id, account = o.account, actor = o.actor,
             occurred_at = o.occurred_at, recorded_at = o.recorded_at, payload = o.payload,
             payload_hash = o.payload_hash
           FROM (SELECT * FROM audit_records WHERE seq IN (:a, :b)) AS o
           WHERE r.seq IN (:a, :b) AND o.seq <> r.seq"""
    )
    async with triggers_off(engine) as connection:
        await connection.execute(sa.text(DROP_UNIQUE))
        await connection.execute(swap, {"a": first, "b": second})
        await connection.execute(sa.text(ADD_UNIQUE))
    try:
        outcome = await verify(audit, keys)
        assert outcome["valid"] is False
        assert outcome["first_invalid_seq"] == first, outcome
    finally:
        async with triggers_off(engine) as connection:
            await connection.execute(sa.text(DROP_UNIQUE))
            await connection.execute(swap, {"a": first, "b": second})
            await connection.execute(sa.text(ADD_UNIQUE))
    assert (await verify(audit, keys))["valid"] is True


async def test_a_record_rewritten_with_its_stored_hash_is_caught_by_the_signed_head(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    import hashlib

    _, items = await trade_records(gateway, audit, keys)
    target = items[0]["seq"]
    engine = databases["audit"]

    async def signed_over_target() -> bool:
        async with engine.connect() as connection:
            size = await connection.scalar(sa.text("SELECT max(tree_size) FROM signed_tree_heads"))
        return size is not None and size >= target

    await eventually(signed_over_target, "a tree head signed over the record", timeout_s=30)
    async with engine.connect() as connection:
        original = bytes(
            await connection.scalar(
                sa.text("SELECT payload FROM audit_records WHERE seq = :seq"), {"seq": target}
            )
        )
        original_hash = bytes(
            await connection.scalar(
                sa.text("SELECT hash FROM merkle_nodes WHERE level = 0 AND index = :i"),
                {"i": target - 1},
            )
        )
    at = original.index(b'"actor":"') + len(b'"actor":"')
    changed = original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1 :]
    # A careful forger: the searchable actor column made to agree with the new content.
    set_payload = sa.text(
        "UPDATE audit_records SET payload = :payload, actor = :actor WHERE seq = :seq"
    )
    set_hash = sa.text("UPDATE merkle_nodes SET hash = :hash WHERE level = 0 AND index = :i")
    async with triggers_off(engine) as connection:
        await connection.execute(
            set_payload,
            {"payload": changed, "actor": json.loads(changed)["event"]["actor"], "seq": target},
        )
        await connection.execute(
            set_hash, {"hash": hashlib.sha256(b"\x00" + changed).digest(), "i": target - 1}
        )
    try:
        outcome = await verify(audit, keys)
        assert outcome["valid"] is False
        assert "signed tree head" in outcome["reason"], outcome
    finally:
        async with triggers_off(engine) as connection:
            await connection.execute(
                set_payload,
                {
                    "payload": original,
                    "actor": json.loads(original)["event"]["actor"],
                    "seq": target,
                },
            )
            await connection.execute(set_hash, {"hash": original_hash, "i": target - 1})
    assert (await verify(audit, keys))["valid"] is True


async def test_a_stored_tree_head_whose_root_was_changed_no_longer_carries_its_signature(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    await trade_records(gateway, audit, keys)
    engine = databases["audit"]

    async def a_head() -> int | None:
        async with engine.connect() as connection:
            size = await connection.scalar(sa.text("SELECT max(tree_size) FROM signed_tree_heads"))
        return int(size) if size else None

    size = await eventually(a_head, "a signed tree head stored")
    async with engine.connect() as connection:
        original = bytes(
            await connection.scalar(
                sa.text("SELECT root_hash FROM signed_tree_heads WHERE tree_size = :s"), {"s": size}
            )
        )
    change = sa.text("UPDATE signed_tree_heads SET root_hash = :root WHERE tree_size = :s")
    async with triggers_off(engine) as connection:
        await connection.execute(change, {"root": bytes(32), "s": size})
    try:
        outcome = await verify(audit, keys)
        assert outcome["valid"] is False
        assert f"tree head of {size} records" in outcome["reason"], outcome
    finally:
        async with triggers_off(engine) as connection:
            await connection.execute(change, {"root": original, "s": size})
    assert (await verify(audit, keys))["valid"] is True
