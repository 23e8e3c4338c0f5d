"""The outbox relay's queue of unsent rows (plumbing revision 0101, outbox_pending) against
the real PostgreSQL, with a service's own migrations (the ledger's; every service has the
same plumbing):

- the upgrade queues exactly the rows not yet sent, and the downgrade gives back `sent_at`;
- every row an INSERT adds is queued, whoever writes it, and only those (ON CONFLICT);
- the relay publishes the queue in order, empties it, and never writes the outbox row
  again (the update it replaces rewrote the row and its indexes);
- the operator's status and `bo outbox republish` read and refill the queue.

The producer is a stand-in that records what it is given (the broker path is the e2e
suite's); everything else is the real thing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.db import alembic_config, make_engine, make_sessionmaker
from bo_common.envelope import new_event
from bo_common.ops import outbox_status
from bo_common.outbox import OutboxRelay, PlumbingSchema
from bo_common.unit_of_work import UnitOfWork
from bo_tools.ops import outbox as republish
from bo_tools.stack import BY_NAME, migrated_database

pytestmark = pytest.mark.slow

SERVICE = BY_NAME["ledger"]


class Producer:
    """Records each send (topic, value) and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.got = asyncio.Event()

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        self.got.set()
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


@pytest.fixture
async def database(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, AsyncEngine]]:
    # What PlumbingSchema.detect finds here is this test's alone.
    monkeypatch.setattr(PlumbingSchema, "trace_columns", PlumbingSchema.trace_columns)
    monkeypatch.setattr(PlumbingSchema, "pending_table", PlumbingSchema.pending_table)
    url = await asyncio.to_thread(migrated_database, "outbox_pending", SERVICE.name)
    # Every revision of the service but the queue: as a database before this revision.
    await asyncio.to_thread(
        command.downgrade, alembic_config(SERVICE.migrations.parent, url), "0100"
    )
    engine = make_engine(url, pool_size=2)
    yield url, engine
    await engine.dispose()


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(sa.text(sql), params)]


async def _insert(engine: AsyncEngine, n: int, *, sent_at: datetime | None = None) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO outbox (event_id, event_type, topic, key, payload, sent_at) "
                "VALUES (:id, 't', 'ledger.events', 'k', :payload, :sent_at)"
            ),
            {"id": uuid.uuid4(), "payload": f"event {n}".encode(), "sent_at": sent_at},
        )


async def test_the_upgrade_queues_the_unsent_rows_and_the_downgrade_gives_sent_at_back(
    database: tuple[str, AsyncEngine],
) -> None:
    url, engine = database
    sent_at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    for n in range(6):
        await _insert(engine, n, sent_at=sent_at + timedelta(seconds=n) if n % 2 else None)
    config = alembic_config(SERVICE.migrations.parent, url)
    await asyncio.to_thread(command.upgrade, config, "heads")
    unsent = await _rows(engine, "SELECT seq FROM outbox WHERE sent_at IS NULL ORDER BY seq")
    assert await _rows(engine, "SELECT seq FROM outbox_pending ORDER BY seq") == unsent
    assert len(unsent) == 3
    assert await _rows(engine, "SELECT published_at FROM outbox_relay") == [
        (sent_at + timedelta(seconds=5),)
    ]
    # One of the unsent rows is published under the queue, one sent before is queued again
    # (bo outbox republish), then the schema goes back.
    await engine.dispose()
    assert await PlumbingSchema.detect(engine)
    producer = Producer()
    relay = OutboxRelay(service="ledger", engine=engine, producer=cast(Any, producer), batch_size=1)
    assert await relay.publish_once() == 1
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO outbox_pending SELECT min(seq) FROM outbox WHERE sent_at IS NOT NULL"
            )
        )
    await asyncio.to_thread(command.downgrade, config, "0100")
    assert await _rows(engine, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [(3,)]
    assert await _rows(
        engine, "SELECT to_regclass('outbox_pending'), to_regclass('outbox_unsent') IS NOT NULL"
    ) == [(None, True)]


async def test_every_row_added_is_queued_and_published_once_in_order_without_rewriting_it(
    database: tuple[str, AsyncEngine],
) -> None:
    url, engine = database
    await asyncio.to_thread(
        command.upgrade, alembic_config(SERVICE.migrations.parent, url), "heads"
    )
    await engine.dispose()
    assert await PlumbingSchema.detect(engine)
    events = [
        new_event(type="t.x", source="test", subject=f"T-{n}", actor="test", data={"n": n})
        for n in range(5)
    ]
    # Through the unit of work's outbox (parameter sets of one statement), then a statement
    # that adds one new row beside one already there (ON CONFLICT DO NOTHING).
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        for event in events[:4]:
            uow.outbox.put(event, topic="ledger.events", key=event.subject)
        await uow.commit()
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        for event in events[3:]:
            uow.outbox.put(event, topic="ledger.events", key=event.subject)
        await uow.commit()
    rows = await _rows(engine, "SELECT seq, ctid::text, event_id FROM outbox ORDER BY seq")
    assert [row[2] for row in rows] == [event.id for event in events]
    assert await _rows(engine, "SELECT seq FROM outbox_pending ORDER BY seq") == [
        (row[0],) for row in rows
    ]
    status = await outbox_status(engine)
    assert status.unsent == 5 and status.oldest_unsent_at is not None
    assert status.last_published_at is None

    producer = Producer()
    relay = OutboxRelay(service="ledger", engine=engine, producer=cast(Any, producer), batch_size=3)
    assert await relay.drain() == 5
    assert [value for _, value in producer.sent] == [event.to_bytes() for event in events]
    assert await _rows(engine, "SELECT count(*) FROM outbox_pending") == [(0,)]
    # The outbox rows are where they were, as they were: not updated.
    assert await _rows(engine, "SELECT seq, ctid::text, event_id FROM outbox ORDER BY seq") == rows
    assert await _rows(engine, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == [(0,)]
    status = await outbox_status(engine)
    assert status.unsent == 0 and status.oldest_unsent_at is None
    assert status.last_published_at is not None
    assert await relay.publish_once() == 0

    # `bo outbox republish --since`: queued again, and sent again in order.
    assert await republish._reset(url, datetime.now(UTC) - timedelta(hours=1)) == 5
    assert await republish.unsent(url) == 5
    assert await relay.drain() == 5
    assert [value for _, value in producer.sent[5:]] == [event.to_bytes() for event in events]
    assert await republish.unsent(url) == 0


async def test_the_relay_vacuums_the_queue_it_empties(database: tuple[str, AsyncEngine]) -> None:
    """Every sent row leaves a dead version in the queue that each poll walks over until a
    vacuum; the relay vacuums the queue after `vacuum_after` rows sent."""
    url, engine = database
    await asyncio.to_thread(
        command.upgrade, alembic_config(SERVICE.migrations.parent, url), "heads"
    )
    await engine.dispose()
    assert await PlumbingSchema.detect(engine)
    vacuums = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox_pending'"
    before = (await _rows(engine, vacuums))[0][0]
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        for n in range(25):
            event = new_event(type="t.x", source="test", subject=f"T-{n}", actor="test", data={})
            uow.outbox.put(event, topic="ledger.events", key=event.subject)
        await uow.commit()
    producer = Producer()
    relay = OutboxRelay(
        service="ledger", engine=engine, producer=cast(Any, producer), batch_size=4, vacuum_after=10
    )
    assert await relay.drain() == 25
    assert len(producer.sent) == 25
    assert await _rows(engine, "SELECT count(*) FROM outbox_pending") == [(0,)]
    # 4 + 4 + 4 rows, then 4 + 4 + 4, then the last 1: twice past 10.
    assert (await _rows(engine, vacuums))[0][0] - before == 2


async def test_a_row_added_while_the_upgrade_runs_is_queued(
    database: tuple[str, AsyncEngine],
) -> None:
    """A transaction that has added a row but not committed when the upgrade starts: the
    upgrade waits for it, and the row is queued (neither the backfill's snapshot nor the
    trigger would have seen it otherwise)."""
    url, engine = database
    async with engine.connect() as writer:
        transaction = await writer.begin()
        await writer.execute(
            sa.text(
                "INSERT INTO outbox (event_id, event_type, topic, key, payload) "
                "VALUES (:id, 't', 'ledger.events', 'k', 'late')"
            ),
            {"id": uuid.uuid4()},
        )
        upgrade = asyncio.create_task(
            asyncio.to_thread(
                command.upgrade, alembic_config(SERVICE.migrations.parent, url), "heads"
            )
        )
        await asyncio.sleep(1.0)
        assert not upgrade.done()  # waiting for the writer
        await transaction.commit()
        await asyncio.wait_for(upgrade, timeout=60)
    await engine.dispose()
    assert await _rows(engine, "SELECT seq FROM outbox_pending") == await _rows(
        engine, "SELECT seq FROM outbox"
    )


async def test_a_relay_started_before_the_upgrade_sends_from_the_queue_after_it(
    database: tuple[str, AsyncEngine],
) -> None:
    """The relay of a process that found the database without the queue looks again, and
    once the upgrade has run sends from the queue, not by sent_at (which would send again
    every row the other relays have sent)."""
    url, engine = database
    assert not await PlumbingSchema.detect(engine)
    producer = Producer()
    relay = OutboxRelay(
        service="ledger",
        engine=engine,
        producer=cast(Any, producer),
        poll_interval_ms=20,
    )
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.to_thread(
            command.upgrade, alembic_config(SERVICE.migrations.parent, url), "heads"
        )
        await engine.dispose()
        await _insert(engine, 1)
        await asyncio.wait_for(producer.got.wait(), timeout=10)
    finally:
        await relay.stop()
        await asyncio.wait_for(running, timeout=10)
    assert [value for _, value in producer.sent] == [b"event 1"]
    assert PlumbingSchema.pending_table
    assert await _rows(engine, "SELECT count(*) FROM outbox_pending") == [(0,)]
    assert await _rows(engine, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == [(0,)]
