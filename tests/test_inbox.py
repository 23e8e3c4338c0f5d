"""What the consume loop has applied, against the real PostgreSQL (a service's own
migrations; every service has the same plumbing), kept two ways: in the inbox table, or by
the service's own records (`applied_ids`, the audit log's way). Either way a batch applies
each new event once and records it, skips what was applied before and what comes twice;
and when another consumer (a replica during a rebalance) records one of its events between
the loop's read and its insert, the batch is applied again event by event and that event is
not applied twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bo_common.consumer import ConsumeLoop
from bo_common.db import make_engine, make_sessionmaker
from bo_common.envelope import Envelope, new_event
from bo_common.outbox import PlumbingSchema
from bo_common.settings import KafkaSettings
from bo_common.testing import consumed
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import migrated_database

pytestmark = pytest.mark.slow

TOPIC = "trade.events"


@pytest.fixture
async def engine(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncEngine]:
    monkeypatch.setattr(PlumbingSchema, "trace_columns", PlumbingSchema.trace_columns)
    monkeypatch.setattr(PlumbingSchema, "pending_table", PlumbingSchema.pending_table)
    url = await asyncio.to_thread(migrated_database, "inbox", "ledger")
    made = make_engine(url, pool_size=3, application_name="inbox-test")
    assert await PlumbingSchema.detect(made)
    async with made.begin() as connection:
        await connection.execute(sa.text(APPLIED))
    yield made
    await made.dispose()


# The handlers' own record of what they applied (the audit's log, in miniature).
APPLIED = "CREATE TABLE applied (event_id uuid PRIMARY KEY)"


def _loop(
    engine: AsyncEngine,
    applied: list[uuid.UUID],
    *,
    own_records: bool,
    hidden: dict[uuid.UUID, int] | None = None,
    attempts: int = 3,
) -> ConsumeLoop:
    """`hidden`: ids the service's own records do not show for that many more reads (a
    replica's insert not yet committed when it read them)."""

    async def record(ids: list[uuid.UUID], uow: UnitOfWork) -> None:
        await uow.session.execute(
            sa.text("INSERT INTO applied (event_id) VALUES (:id)"), [{"id": i} for i in ids]
        )
        applied.extend(ids)

    async def one(event: Envelope, uow: UnitOfWork) -> None:
        await record([event.id], uow)

    async def run(events: list[Envelope], uow: UnitOfWork) -> None:
        await record([event.id for event in events], uow)

    async def applied_ids(session: AsyncSession, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        found = await session.execute(
            sa.text("SELECT event_id FROM applied WHERE event_id = ANY(:ids)"), {"ids": ids}
        )
        shown = set(found.scalars())
        for i in ids:
            if (hidden or {}).get(i, 0) > 0:
                hidden[i] -= 1  # type: ignore[index]
                shown.discard(i)
        return shown

    return ConsumeLoop(
        name="inbox-test",
        topics=[TOPIC],
        handlers={"t.one": one, "t.run": one},
        batch_handlers={"t.run": run},
        sessions=make_sessionmaker(engine),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        group_id="inbox-test",
        applied_ids=applied_ids if own_records else None,
        handler_attempts=attempts,
    )


def _batch(events: list[Envelope]) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    records = [consumed(e.to_bytes(), offset=n, topic=TOPIC) for n, e in enumerate(events)]
    return {TopicPartition(TOPIC, 0): records}


def _events(types: list[str]) -> list[Envelope]:
    return [
        new_event(type=t, source="test", subject=f"T-{n}", actor="test", data={"n": n})
        for n, t in enumerate(types)
    ]


async def _ids(engine: AsyncEngine, table: str) -> list[uuid.UUID]:
    async with engine.connect() as connection:
        found = await connection.execute(sa.text(f"SELECT event_id FROM {table}"))
        return list(found.scalars())


@pytest.mark.parametrize("own_records", [False, True], ids=["inbox", "own records"])
async def test_a_batch_applies_each_new_event_once_and_records_it(
    engine: AsyncEngine, own_records: bool
) -> None:
    applied: list[uuid.UUID] = []
    loop = _loop(engine, applied, own_records=own_records)
    earlier = _events(["t.run", "t.one"])
    await loop._apply(_batch(earlier))
    assert applied == [e.id for e in earlier]
    events = _events(["t.run", "t.run", "t.one", "t.run"])
    batch = [events[0], earlier[0], events[1], events[1], events[2], earlier[1], events[3]]
    applied.clear()
    await loop._apply(_batch(batch))
    assert applied == [e.id for e in events]
    every = sorted(e.id for e in [*earlier, *events])
    assert sorted(await _ids(engine, "applied")) == every
    assert sorted(await _ids(engine, "inbox")) == ([] if own_records else every)


@pytest.mark.parametrize("own_records", [False, True], ids=["inbox", "own records"])
async def test_an_event_recorded_by_another_consumer_meanwhile_is_not_applied_twice(
    engine: AsyncEngine, own_records: bool
) -> None:
    applied: list[uuid.UUID] = []
    loop = _loop(engine, applied, own_records=own_records)
    table = "applied" if own_records else "inbox"
    events = _events(["t.run", "t.run", "t.one", "t.run"])
    taken = events[1]
    async with engine.connect() as other:
        # The other consumer has applied `taken` and not yet committed: the loop's read of
        # what was applied does not see it, and its insert waits for the other's commit.
        transaction = await other.begin()
        await other.execute(
            sa.text("INSERT INTO applied (event_id) VALUES (:id)"), {"id": taken.id}
        )
        if not own_records:
            await other.execute(
                sa.text("INSERT INTO inbox (event_id, event_type, topic) VALUES (:id, 't', :t)"),
                {"id": taken.id, "t": TOPIC},
            )
        task = asyncio.create_task(loop._apply(_batch(events)))
        for _ in range(200):
            async with engine.connect() as probe:
                waiting = await probe.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE :insert"
                    ),
                    {"insert": f"INSERT INTO {table}%"},
                )
            if waiting:
                break
            await asyncio.sleep(0.02)
        assert waiting, "the batch's inbox insert never waited for the other consumer"
        await transaction.commit()
    await asyncio.wait_for(task, timeout=10)
    assert sorted(applied) == sorted(e.id for e in events if e is not taken)
    assert len(applied) == 3
    assert sorted(await _ids(engine, table)) == sorted(e.id for e in events)
    # Skipped as applied, not failed and dead-lettered; and no inbox kept beside own records.
    assert await _ids(engine, "outbox") == []
    assert sorted(await _ids(engine, "inbox")) == (
        [] if own_records else sorted(e.id for e in events)
    )


async def test_an_event_a_replica_applies_while_it_is_retried_alone_is_a_duplicate(
    engine: AsyncEngine,
) -> None:
    """Own records: the replica's row commits after the loop read what was applied, before
    the handler's insert, in the batch and again when the event is applied alone. The failed
    insert is then a duplicate, not a failure to retry or dead-letter (one attempt here)."""
    applied: list[uuid.UUID] = []
    events = _events(["t.run", "t.run", "t.one"])
    taken = events[1]
    async with engine.begin() as other:
        await other.execute(
            sa.text("INSERT INTO applied (event_id) VALUES (:id)"), {"id": taken.id}
        )
    loop = _loop(engine, applied, own_records=True, hidden={taken.id: 2}, attempts=1)
    await loop._apply(_batch(events))
    assert sorted(applied) == sorted(e.id for e in events if e is not taken)
    assert await _ids(engine, "outbox") == []
