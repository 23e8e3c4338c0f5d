"""aiokafka producer, consumer and admin set-up with every option explicit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from bo_common.logs import get_logger
from bo_common.settings import KafkaSettings
from bo_common.topics import DEFAULT_PARTITIONS

log = get_logger(__name__)

T = TypeVar("T")


async def start_with_retry(
    start: Callable[[], Awaitable[T]], *, what: str, attempts: int = 60, delay_s: float = 0.25
) -> T:
    """A client's start() fails at once when the broker is not up yet: retry with backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return await start()
        except (KafkaConnectionError, KafkaError, OSError) as error:
            if attempt == attempts:
                raise
            log.warning("kafka_start_retry", what=what, attempt=attempt, error=str(error))
            await asyncio.sleep(min(delay_s * attempt, 2.0))
    raise RuntimeError("unreachable")


def make_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
        compression_type=settings.compression_type,
        request_timeout_ms=settings.request_timeout_ms,
        max_request_size=4 * 1024 * 1024,
    )


async def start_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    async def start() -> AIOKafkaProducer:
        producer = make_producer(settings, client_id=client_id)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    return await start_with_retry(start, what="producer")


def make_consumer(
    settings: KafkaSettings, *, topics: Iterable[str], group_id: str, client_id: str
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_poll_records=settings.max_poll_records,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
    )


async def create_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""

    async def start() -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        return admin

    admin = await start_with_retry(start, what="admin")
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, partitions, replication_factor) for t in wanted]
                )
        return wanted
    finally:
        await admin.close()
