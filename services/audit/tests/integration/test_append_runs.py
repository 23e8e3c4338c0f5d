"""A run of events appended together (the audit's batch handler) leaves the log that
appending them one at a time leaves: the same records in the same order, each with the
topic, partition and offset of its own record and its verbatim JSON, and the same Merkle
tree. Against the real PostgreSQL, two audit databases built by the migrations."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import ConsumerRecord
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import handlers
from audit.consumers import subscription
from bo_common.consumer import current_record, current_records
from bo_common.db import alembic_config, make_engine, make_sessionmaker
from bo_common.envelope import Envelope, new_event
from bo_common.testing import consumed
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import BY_NAME, migrated_database

pytestmark = pytest.mark.slow

MIGRATIONS = BY_NAME["audit"].migrations.parent

TYPES = [
    ("trade.captured", "trade.events"),
    ("compliance.trade_cleared", "compliance.events"),
    ("settlement.obligation_created", "settlement.events"),
    ("ledger.journal_posted", "ledger.events"),
]


def records(seed: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Events as consumed: partitions and offsets as a topic's would be, and values as
    their producer wrote them (key order and spacing not ours)."""
    rng = random.Random(seed)
    offsets: dict[tuple[str, int], int] = {}
    out: list[ConsumerRecord[bytes, bytes]] = []
    for n in range(count):
        type_, topic = rng.choice(TYPES)
        event = new_event(
            type=type_,
            source=topic.split(".")[0],
            subject=f"T-{rng.randrange(40)}",
            actor="test",
            data={"n": n, "account": f"ACC-00{rng.randrange(1, 4)}", "amount": "10.50"},
        )
        body = json.loads(event.to_bytes())
        value = json.dumps(dict(reversed(list(body.items()))), indent=rng.choice([None, 1]))
        partition = rng.randrange(6)
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        out.append(
            consumed(
                value.encode(),
                topic=topic,
                partition=partition,
                offset=offset,
                headers=[("traceparent", f"00-{n + 1:032x}-{'1' * 16}-01".encode())],
            )
        )
    return out


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    made = [
        make_engine(await asyncio.to_thread(migrated_database, name, "audit"), pool_size=2)
        for name in ("audit_one_by_one", "audit_runs")
    ]
    yield made[0], made[1]
    for engine in made:
        await engine.dispose()


async def apply(engine: AsyncEngine, chunks: list[list[Any]], *, in_runs: bool) -> None:
    """Each chunk in one transaction, as a consumed batch."""
    sessions = make_sessionmaker(engine)
    assert subscription.default_batch_handler is handlers.append_events
    for chunk in chunks:
        async with sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            events = [Envelope.from_bytes(record.value) for record in chunk]
            if in_runs:
                token = current_records.set(chunk)
                try:
                    await handlers.append_events(events, uow)
                finally:
                    current_records.reset(token)
            else:
                for record, event in zip(chunk, events, strict=True):
                    one = current_record.set(record)
                    try:
                        await handlers.append_event(event, uow)
                    finally:
                        current_record.reset(one)
            await uow.flush()


async def log_of(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                'SELECT seq, event_id, topic, partition, "offset", event_type, source, '
                "subject, correlation_id, account, actor, occurred_at, payload_hash, traceparent, "
                "convert_from(payload, 'UTF8') FROM audit_records ORDER BY seq"
            )
        )
        found: list[tuple[Any, ...]] = []
        for row in rows:
            leaf = json.loads(row[-1])
            leaf.pop("received_at")  # when each database read it
            found.append((*row[:-1], leaf))
        size = await connection.scalar(sa.text("SELECT size FROM merkle_head"))
        nodes = await connection.scalar(sa.text("SELECT count(*) FROM merkle_nodes"))
    return {"records": found, "size": size, "nodes": nodes}


async def test_a_run_appends_what_one_at_a_time_appends(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    one, runs = engines
    consumed = records(seed=7, count=300)
    rng = random.Random(8)
    chunks: list[list[Any]] = []
    at = 0
    while at < len(consumed):
        size = rng.choice([1, 2, 5, 17, 40])
        chunks.append(consumed[at : at + size])
        at += size
    await apply(one, chunks, in_runs=False)
    await apply(runs, chunks, in_runs=True)
    expected, found = await log_of(one), await log_of(runs)
    assert found == expected
    assert expected["size"] == len(consumed) and len(expected["records"]) == len(consumed)
    # Each record says where its own event was read, and keeps the JSON as it came.
    for (seq, *_, leaf), record in zip(found["records"], consumed, strict=True):
        assert (leaf["seq"], leaf["topic"], leaf["partition"], leaf["offset"]) == (
            seq, record.topic, record.partition, record.offset,
        )  # fmt: skip
        assert leaf["event"] == json.loads(record.value)
    # The ops status's `last_consumed_at` of a service without an inbox: the last record's.
    async with runs.connect() as connection:
        last = await connection.scalar(sa.text("SELECT max(recorded_at) FROM audit_records"))
    assert last is not None and await handlers.last_recorded_at(runs) == last
    # ...and the trace context it was delivered with (the log is the audit's inbox).
    assert [row[-2] for row in found["records"]] == [
        dict(record.headers)["traceparent"].decode() for record in consumed
    ]


async def test_the_downgrade_gives_the_previous_release_an_inbox_of_what_the_log_holds() -> None:
    """Revision 0004 stops the inbox; its downgrade fills it from the records, so that the
    previous release, which reads the inbox, skips every event the log holds."""
    url = await asyncio.to_thread(migrated_database, "audit_downgrade", "audit")
    engine = make_engine(url, pool_size=2)
    try:
        consumed = records(seed=9, count=12)
        await apply(engine, [consumed[:5], consumed[5:]], in_runs=True)
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT count(*) FROM inbox")) == 0
        await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "0003")
        async with engine.connect() as connection:
            inbox = (
                await connection.execute(
                    sa.text("SELECT event_id, event_type, topic, traceparent FROM inbox")
                )
            ).all()
        expected = []
        for record in consumed:
            event = Envelope.from_bytes(record.value or b"")
            traceparent = dict(record.headers)["traceparent"].decode()
            expected.append((event.id, event.type, record.topic, traceparent))
        assert sorted(inbox) == sorted(expected)
        await asyncio.to_thread(command.upgrade, alembic_config(MIGRATIONS, url), "heads")
    finally:
        await engine.dispose()
