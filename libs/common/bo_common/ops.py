"""What an operator asks of one service process: its consumer group's lag per partition, its
outbox backlog, its dead letters and when it last consumed and published.

The answer is `OpsStatus`, served at `GET /v1/ops/status` by every service and read by
`bo status`; its fields are a contract (add fields, never rename or remove them).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Literal

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.db import InboxRow, OutboxRow
from bo_common.kafka import start_with_retry
from bo_common.outbox import PlumbingSchema
from bo_common.settings import KafkaSettings

DEAD_LETTER = "dead_letter"


def service_version() -> str:
    """The installed distribution's version (the image sets BO_VERSION to override it)."""
    try:
        return metadata.version("backoffice")
    except metadata.PackageNotFoundError:
        return "unknown"


class PartitionLag(BaseModel):
    topic: str
    partition: int
    committed_offset: int | None = Field(
        description="The group's committed offset (the next offset it will read); null when "
        "the group has never committed on this partition"
    )
    high_water_mark: int = Field(description="The offset the next record written will get")
    lag: int = Field(description="high_water_mark minus committed_offset (all of it if null)")


class ConsumerGroupLag(BaseModel):
    group: str
    topics: list[str]
    partitions: list[PartitionLag]
    total_lag: int
    error: str | None = Field(
        default=None, description="Why lag could not be read (broker away); partitions empty"
    )


class OutboxStatus(BaseModel):
    unsent: int = Field(description="Outbox rows not yet published (the backlog)")
    oldest_unsent_at: datetime | None
    oldest_unsent_age_seconds: float | None
    last_published_at: datetime | None


class DeadLetterCount(BaseModel):
    topic: str = Field(description="The topic the failed message came from")
    dead_letter_topic: str
    count: int


class DeadLetters(BaseModel):
    total: int
    by_topic: list[DeadLetterCount]


class OpsStatus(BaseModel):
    """One process of one service, as `GET /v1/ops/status` reports it."""

    service: str
    process_role: Literal["all", "api", "worker"] = Field(
        description="all: API, relay and consumer; api: HTTP only; worker: relay and consumer"
    )
    version: str
    ready: bool
    checks: dict[str, str] = Field(description="The same checks as /readyz")
    consumer: ConsumerGroupLag | None = Field(
        description="The service's consumer group, read from the broker, so it is known "
        "even while every consumer of the group is stopped"
    )
    outbox: OutboxStatus
    dead_letters: DeadLetters = Field(description="Dead letters this service has written")
    last_consumed_at: datetime | None = Field(
        description="When this service last applied a consumed event"
    )
    last_published_at: datetime | None = Field(
        description="When this service's relay last published an event"
    )
    generated_at: datetime


OPS_STATUS_EXAMPLE = {
    "service": "ledger",
    "process_role": "all",
    "version": "0.1.0",
    "ready": True,
    "checks": {"database": "ok", "broker": "ok", "consumer": "ok"},
    "consumer": {
        "group": "ledger",
        "topics": ["trade.events", "settlement.events", "access.events"],
        "partitions": [
            {
                "topic": "trade.events",
                "partition": 0,
                "committed_offset": 1200,
                "high_water_mark": 1210,
                "lag": 10,
            }
        ],
        "total_lag": 10,
        "error": None,
    },
    "outbox": {
        "unsent": 3,
        "oldest_unsent_at": "2026-11-20T14:31:07.512000Z",
        "oldest_unsent_age_seconds": 0.04,
        "last_published_at": "2026-11-20T14:31:07.498000Z",
    },
    "dead_letters": {
        "total": 1,
        "by_topic": [
            {"topic": "trade.events", "dead_letter_topic": "trade.events.dlq", "count": 1}
        ],
    },
    "last_consumed_at": "2026-11-20T14:31:07.490000Z",
    "last_published_at": "2026-11-20T14:31:07.498000Z",
    "generated_at": "2026-11-20T14:31:07.552000Z",
}


def _problem(status: int, description: str, title: str, detail: str) -> dict[str, object]:
    example = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "/v1/ops/status",
    }
    answer: dict[str, object] = {
        "description": description,
        "content": {"application/problem+json": {"example": example}},
    }
    if status in (429, 503):
        answer["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}
        }
    return answer


OPS_STATUS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/json": {"example": OPS_STATUS_EXAMPLE}}},
    401: _problem(401, "No valid API key", "Not authenticated", "unknown or revoked API key"),
    403: _problem(
        403,
        "The key's role is not compliance, ops or admin",
        "Forbidden",
        "role 'trader' may not do this (needs: compliance, ops, admin)",
    ),
    429: _problem(
        429,
        "Over the key's rate limit; wait `Retry-After` seconds",
        "Too many requests",
        "rate limit of 200 requests/s for this key exceeded; retry after 1 s",
    ),
    503: _problem(
        503,
        "The database is unavailable; retry after `Retry-After`",
        "Service unavailable",
        "the database is unavailable or busy; nothing was applied, retry shortly",
    ),
}


async def outbox_status(engine: AsyncEngine, *, now: datetime | None = None) -> OutboxStatus:
    now = now or datetime.now(UTC)
    async with engine.connect() as connection:
        if PlumbingSchema.pending_table:
            # Unsent: the rows queued in outbox_pending (bo_common.outbox.add_outbox_pending).
            unsent, oldest = (await connection.execute(_PENDING_STATUS)).one()
            last_published = await connection.scalar(
                sa.text("SELECT published_at FROM outbox_relay")
            )
        else:
            # The partial index outbox_unsent (seq WHERE sent_at IS NULL) serves the
            # backlog, and the primary key, read backwards, the last published row.
            unsent, oldest = (
                await connection.execute(
                    sa.select(sa.func.count(), sa.func.min(OutboxRow.created_at)).where(
                        OutboxRow.sent_at.is_(None)
                    )
                )
            ).one()
            last_published = await connection.scalar(
                sa.select(OutboxRow.sent_at)
                .where(OutboxRow.sent_at.is_not(None))
                .order_by(OutboxRow.seq.desc())
                .limit(1)
            )
    return OutboxStatus(
        unsent=int(unsent),
        oldest_unsent_at=oldest,
        oldest_unsent_age_seconds=(now - oldest).total_seconds() if oldest else None,
        last_published_at=last_published,
    )


_PENDING_STATUS = sa.text(
    "SELECT count(*), min(o.created_at) FROM outbox_pending AS p JOIN outbox AS o USING (seq)"
)


async def dead_letters(engine: AsyncEngine) -> DeadLetters:
    """Dead letters are outbox rows for `<topic>.dlq` (bo_common.consumer)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                sa.select(OutboxRow.topic, sa.func.count())
                .where(OutboxRow.event_type == DEAD_LETTER)
                .group_by(OutboxRow.topic)
                .order_by(OutboxRow.topic)
            )
        ).all()
    counts = [
        DeadLetterCount(topic=topic.removesuffix(".dlq"), dead_letter_topic=topic, count=int(count))
        for topic, count in rows
    ]
    return DeadLetters(total=sum(c.count for c in counts), by_topic=counts)


async def last_consumed_at(engine: AsyncEngine) -> datetime | None:
    async with engine.connect() as connection:
        value: datetime | None = await connection.scalar(
            sa.select(sa.func.max(InboxRow.applied_at))
        )
    return value


class LagProbe:
    """Reads a consumer group's lag from the broker: the committed offsets from the group
    coordinator, and each partition's high-water mark from a fetch.

    Not from ListOffsets: on the Tansu development broker "latest" is the base offset of the
    last batch plus one, short of the truth after a multi-record batch (docs/broker.md). A
    fetch from that offset returns the last batch, and every fetch response carries the true
    high-water mark; on Apache Kafka the same fetch returns the last record. One probe keeps
    its two clients open between calls and serves one call at a time.
    """

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._lock = asyncio.Lock()
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._reader is None:

            async def start_admin() -> AIOKafkaAdminClient:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._kafka.bootstrap_servers,
                    client_id=f"{self._client_id}-lag",
                    request_timeout_ms=5000,
                )
                await admin.start()
                return admin

            async def start_reader() -> AIOKafkaConsumer:
                reader = AIOKafkaConsumer(
                    bootstrap_servers=self._kafka.bootstrap_servers,
                    client_id=f"{self._client_id}-lag-{uuid.uuid4().hex[:8]}",
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=self._kafka.fetch_max_wait_ms,
                    max_partition_fetch_bytes=64 * 1024,
                    request_timeout_ms=5000,
                )
                try:
                    await reader.start()
                except BaseException:
                    await reader.stop()
                    raise
                return reader

            self._admin = await start_with_retry(start_admin, what="lag admin", attempts=2)
            self._reader = await start_with_retry(start_reader, what="lag reader", attempts=2)
        return self._admin, self._reader

    async def close(self) -> None:
        admin, reader, self._admin, self._reader = self._admin, self._reader, None, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def lag(
        self, group: str, topics: Sequence[str], *, timeout_s: float = 5.0
    ) -> ConsumerGroupLag:
        async with self._lock:
            try:
                return await asyncio.wait_for(self._lag(group, topics), timeout=timeout_s)
            except Exception as error:
                await self.close()  # a broken connection is not reused
                return ConsumerGroupLag(
                    group=group, topics=list(topics), partitions=[], total_lag=0, error=repr(error)
                )

    async def _lag(self, group: str, topics: Sequence[str]) -> ConsumerGroupLag:
        admin, reader = await self._clients()
        partitions = await _partitions_of(admin, topics)
        # Tansu breaks the connection without `partitions` (docs/broker.md).
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        high_water = await self._high_water_marks(reader, partitions)
        rows = []
        for tp in partitions:
            offset = committed.get(tp)
            committed_offset = offset.offset if offset is not None and offset.offset >= 0 else None
            end = high_water[tp]
            rows.append(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed_offset=committed_offset,
                    high_water_mark=end,
                    lag=max(end - (committed_offset or 0), 0),
                )
            )
        return ConsumerGroupLag(
            group=group,
            topics=list(topics),
            partitions=rows,
            total_lag=sum(r.lag for r in rows),
        )

    async def _high_water_marks(
        self, reader: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        latest = await reader.end_offsets(partitions)
        marks = {tp: 0 for tp in partitions if latest[tp] == 0}
        wanted = [tp for tp in partitions if latest[tp] > 0]
        if not wanted:
            return marks
        reader.assign(wanted)
        for tp in wanted:
            reader.seek(tp, latest[tp] - 1)
        pending = set(wanted)
        # Each fetch answer sets the high-water mark of the partitions it covers.
        for _ in range(20):
            await reader.getmany(*pending, timeout_ms=250, max_records=1)
            for tp in list(pending):
                mark = reader.highwater(tp)
                if mark is not None:
                    marks[tp] = max(mark, latest[tp])
                    pending.discard(tp)
            if not pending:
                break
        for tp in pending:  # no answer in time: the broker's own figure
            marks[tp] = latest[tp]
        reader.unsubscribe()
        return marks


async def _partitions_of(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    described = await admin.describe_topics(list(topics))
    numbers = {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if not d.get("error_code")
    }
    return [TopicPartition(topic, n) for topic in topics for n in numbers.get(topic, [])]
