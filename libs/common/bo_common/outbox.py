"""The transactional outbox: events are stored with the state change, then relayed to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bo_common.db import OutboxRow
from bo_common.envelope import Envelope
from bo_common.logs import get_logger
from bo_common.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

log = get_logger(__name__)

# Any constant works: it only has to be the same for every replica of one service's relay.
_RELAY_LOCK_KEY = 0x6F7574626F78  # "outbox"


class Outbox:
    """Collects a unit of work's events; they are written in its transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._rows: list[dict[str, Any]] = []

    def put(self, event: Envelope, *, topic: str, key: str | None) -> None:
        self._rows.append(
            {
                "event_id": event.id,
                "event_type": event.type,
                "topic": topic,
                "key": key,
                "payload": event.to_bytes(),
            }
        )

    def put_raw(
        self, *, event_id: Any, event_type: str, topic: str, key: str | None, payload: bytes
    ) -> None:
        """For messages that are not envelopes of ours (dead letters, CSD messages)."""
        self._rows.append(
            {
                "event_id": event_id,
                "event_type": event_type,
                "topic": topic,
                "key": key,
                "payload": payload,
            }
        )

    def mark(self) -> int:
        return len(self._rows)

    def discard(self, since: int) -> None:
        """Forget the events put after `mark()`: a handler attempt that was rolled back."""
        del self._rows[since:]

    async def flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        # ON CONFLICT: an event id already queued (a retried handler) is queued once.
        statement = (
            sa.dialects.postgresql.insert(OutboxRow)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        await self._session.execute(statement)


class OutboxRelay:
    """Publishes unsent outbox rows in order, acks=all, then marks them sent.

    One relay of a service publishes at a time (a transaction-level advisory lock), so
    order holds with several replicas. A crash between publish and mark only republishes:
    consumers deduplicate by event id.
    """

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        poll_interval_ms: int = 50,
        batch_size: int = 1000,
    ) -> None:
        self._service = service
        self._engine = engine
        self._producer = producer
        self._poll_s = poll_interval_ms / 1000
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Publish, then wait for the poll interval or a wake-up (a commit of this process
        with events); a full batch is followed at once by the next."""
        while not self._stopping:
            try:
                published = await self.publish_once()
            except Exception as error:  # the broker or database is away: retry later
                log.warning("outbox_publish_failed", error=repr(error))
                published = 0
                await asyncio.sleep(1.0)
            if published >= self._batch_size:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)

    async def stop(self) -> None:
        """Finish the batch under way and return; unsent rows wait for the next start."""
        self._stopping = True
        self._wake.set()

    async def publish_once(self) -> int:
        async with self._engine.begin() as connection:
            locked = await connection.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(_RELAY_LOCK_KEY))
            )
            if not locked:
                return 0
            rows = (
                await connection.execute(
                    sa.select(OutboxRow.seq, OutboxRow.topic, OutboxRow.key, OutboxRow.payload)
                    .where(OutboxRow.sent_at.is_(None))
                    .order_by(OutboxRow.seq)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_PENDING.labels(self._service).set(0)
                return 0
            deliveries = []
            for row in rows:
                key = row.key.encode("utf-8") if row.key is not None else None
                deliveries.append(await self._producer.send(row.topic, row.payload, key=key))
            await asyncio.gather(*deliveries)
            await connection.execute(
                sa.update(OutboxRow)
                .where(OutboxRow.seq.in_([row.seq for row in rows]))
                .values(sent_at=sa.func.now())
            )
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        return len(rows)
