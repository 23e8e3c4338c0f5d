"""Revision 0003 builds the Merkle tree over the records the hash chain held, so a log
written before it verifies as one tree afterwards (leaf data: the stored event)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from audit import domain
from audit import domain_merkle as merkle
from bo_tools.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "services" / "audit" / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def test_records_of_the_hash_chain_become_the_first_leaves_of_the_tree(
    stack: Stack,
) -> None:
    name = f"{stack.config.database_prefix}audit_migration"
    server = sa.make_url(stack.server_url)
    admin = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = server.set(database=name).render_as_string(hide_password=False)
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0002")

    engine = create_async_engine(url)
    events = []
    previous = "0" * 64
    async with engine.begin() as connection:
        for seq in range(1, 12):
            event = {
                "id": str(uuid.uuid4()), "type": "trade.captured", "version": 1,
                "source": "gateway", "subject": f"T-{seq}", "time": datetime.now(UTC).isoformat(),
                "correlation_id": f"T-{seq}", "causation_id": None, "actor": "key:fo",
                "data": {"account": "ACC-001"},
            }  # fmt: skip
            payload = json.dumps(event).encode()
            digest = hashlib.sha256(payload).hexdigest()
            chained = hashlib.sha256(f"{seq}:{digest}:{previous}".encode()).hexdigest()
            await connection.execute(
                sa.text(
                    "INSERT INTO audit_records (seq, event_id, topic, event_type, source, "
                    "subject, correlation_id, actor, occurred_at, recorded_at, payload, "
                    "payload_hash, previous_hash, record_hash) VALUES (:seq, :id, "
                    "'trade.events', 'trade.captured', 'gateway', :subject, :subject, "
                    "'key:fo', now(), now(), :payload, :digest, :previous, :chained)"
                ),
                {"seq": seq, "id": event["id"], "subject": f"T-{seq}", "payload": payload,
                 "digest": digest, "previous": previous, "chained": chained},
            )  # fmt: skip
            events.append(payload)
            previous = chained
        await connection.execute(
            sa.text("UPDATE chain_head SET last_seq = 11, last_hash = :h"), {"h": previous}
        )
    await engine.dispose()

    await asyncio.to_thread(command.upgrade, config, "heads")

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            size, frontier = (
                await connection.execute(sa.text("SELECT size, frontier FROM merkle_head"))
            ).one()
            rows = (
                await connection.execute(
                    sa.text(
                        "SELECT r.seq, r.payload, r.event_id, r.event_type, r.correlation_id, "
                        "r.account, r.actor, r.source, n.hash FROM audit_records r LEFT JOIN "
                        "merkle_nodes n ON n.level = 0 AND n.index = r.seq - 1 ORDER BY r.seq"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    expected = merkle.append(merkle.Frontier(), [merkle.leaf_hash(p) for p in events]).frontier
    assert size == 11
    assert bytes(frontier) == b"".join(expected.hashes)
    outcome = domain.verify(
        [
            domain.StoredRecord(
                seq=row[0], leaf=bytes(row[1]), event_id=str(row[2]), event_type=row[3],
                correlation_id=row[4], account=row[5], actor=row[6], source=row[7],
                stored_leaf_hash=bytes(row[8]),
            )
            for row in rows
        ],
        [],
        tree_size=11,
    )  # fmt: skip
    assert outcome.valid, outcome
    assert outcome.root_hash == expected.root()
