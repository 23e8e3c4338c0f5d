"""The consume loop: validate, deduplicate (inbox), apply, commit, then commit offsets.

A batch from `getmany` is applied in one transaction, each message inside a savepoint so
that one bad message is retried and then dead-lettered without undoing the others. The
dead letter itself is an outbox row in that same transaction: it cannot be lost, and it is
not written unless the batch commits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bo_common.db import InboxRow
from bo_common.envelope import Envelope
from bo_common.kafka import make_consumer, start_with_retry
from bo_common.logs import bound_contextvars, get_logger
from bo_common.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    CONSUMER_STALLED,
    EVENT_DELIVERY_SECONDS,
    EVENT_SECONDS,
    EVENTS_APPLIED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    HANDLER_RETRIES,
    MESSAGES_CONSUMED,
)
from bo_common.outbox import INBOX, PlumbingSchema
from bo_common.settings import KafkaSettings
from bo_common.topics import dead_letter_topic
from bo_common.tracing import (
    cause_traces,
    child_traceparent,
    recording,
    span_from_headers,
    traceparent_in,
    traceparent_of,
)
from bo_common.unit_of_work import UnitOfWork

log = get_logger(__name__)

Handler = Callable[[Envelope, UnitOfWork], Awaitable[None]]
# For a topic whose messages are not envelopes of ours (e.g. ISO 20022 XML on csd.status):
# the record's value as it came, and the unit of work.
RawHandler = Callable[[bytes, UnitOfWork], Awaitable[None]]
# Applies a run of consecutive events in one call (set-based: one statement for many events
# where a Handler would send one each). Its event types keep their Handler: the batch is
# applied event by event with it when the run fails.
BatchHandler = Callable[[list[Envelope], UnitOfWork], Awaitable[None]]
# The same for a run of consecutive raw messages of one topic (their values, in order).
RawBatchHandler = Callable[[list[bytes], UnitOfWork], Awaitable[None]]
# For a service whose own records are its inbox: which of these event ids it has applied.
# Every event it applies must leave a row this finds, keyed uniquely by the event id and
# written in the same transaction (the audit log's records).
AppliedIds = Callable[[AsyncSession, list[uuid.UUID]], Awaitable[set[uuid.UUID]]]

# The Kafka record whose event a handler is applying: for a handler that records where the
# event came from (the audit log keeps its topic, partition and offset).
current_record: ContextVar[ConsumerRecord[bytes, bytes] | None] = ContextVar(
    "current_record", default=None
)
# The same for a batch handler: the records of the run it is applying, one per event (or
# raw message) it was given, in the same order.
current_records: ContextVar[list[ConsumerRecord[bytes, bytes]] | None] = ContextVar(
    "current_records", default=None
)


class PoisonMessage(Exception):
    """The message can never be applied (bad schema, unknown version): dead-letter at once,
    with this exception's text as the dead letter's error."""


def raw_message_id(topic: str, value: bytes) -> uuid.UUID:
    """The inbox id of a raw (non-envelope) message: its topic and the SHA-256 of its bytes.
    A redelivery carries the same bytes, so it is skipped; the producer must make two
    different messages differ in their bytes (ISO 20022 status messages quote the
    instruction id and the status, and a confirmation its quantities)."""
    digest = hashlib.sha256(value).hexdigest()
    return uuid.uuid5(uuid.NAMESPACE_URL, f"raw:{topic}:{digest}")


@dataclass(frozen=True)
class _Work:
    """One message to apply: its inbox id and type, and how to apply it."""

    record: ConsumerRecord[bytes, bytes]
    event_id: uuid.UUID
    event_type: str
    correlation_id: str | None
    apply: Callable[[UnitOfWork], Awaitable[None]]
    event: Envelope | None = None
    # A raw message's value (no envelope).
    raw: bytes | None = None


def _is_transient(error: BaseException) -> bool:
    """Errors of the infrastructure, not of the message: retry the batch, never dead-letter."""
    if isinstance(error, InterfaceError | OperationalError | ConnectionError | OSError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    # A database that is away or refuses connections (asyncpg errors come as plain
    # DBAPIError): SQLSTATE class 08 connection, 53 resources, 57 shutdown or restart, and
    # 55000 "not currently accepting connections". Dead-lettering these lost messages.
    # Class 40 (a deadlock or a serialization failure between replicas) passes on a retry.
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    return (
        bool(error.connection_invalidated)
        or sqlstate[:2] in ("08", "40", "53", "57")
        or (sqlstate == "55000" and "accepting connections" in str(error.orig))
    )


class ConsumeLoop:
    def __init__(
        self,
        *,
        name: str,
        topics: Iterable[str],
        handlers: Mapping[str, Handler],
        sessions: async_sessionmaker[AsyncSession],
        kafka: KafkaSettings,
        group_id: str,
        handler_attempts: int = 3,
        on_commit: Callable[[], None] | None = None,
        default_handler: Handler | None = None,
        raw_handlers: Mapping[str, RawHandler] | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        default_batch_handler: BatchHandler | None = None,
        raw_batch_handlers: Mapping[str, RawBatchHandler] | None = None,
        applied_ids: AppliedIds | None = None,
        stall_timeout_s: float = 60.0,
    ) -> None:
        self._default_handler = default_handler
        # None: the inbox table records what was applied.
        self._applied_ids = applied_ids
        missing = set(batch_handlers or {}) - set(handlers)
        if missing:
            raise ValueError(f"a batch handler needs a handler of the same type: {missing}")
        if default_batch_handler is not None and default_handler is None:
            raise ValueError("a default batch handler needs a default handler")
        self._batch_handlers = dict(batch_handlers or {})
        self._default_batch_handler = default_batch_handler
        missing = set(raw_batch_handlers or {}) - set(raw_handlers or {})
        if missing:
            raise ValueError(f"a raw batch handler needs a raw handler of its topic: {missing}")
        self._raw_batch_handlers = dict(raw_batch_handlers or {})
        # topic -> handler of its raw values: these topics' messages are not read as
        # envelopes; their inbox id is raw_message_id(topic, value).
        self._raw_handlers = dict(raw_handlers or {})
        self.name = name
        self.topics = list(topics)
        self._handlers = dict(handlers)
        self._sessions = sessions
        self._kafka = kafka
        self._group_id = group_id
        self._attempts = handler_attempts
        self._on_commit = on_commit
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()
        self._stall_timeout_s = stall_timeout_s
        # When the loop last committed a batch or found nothing to read...
        self._healthy_at = time.monotonic()
        # ...or applied one event (a large batch on a busy machine is slow, not stuck).
        self._progress_at = self._healthy_at
        self._failing = False
        # Metric children by label values: labels() per event cost more than the update.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _metric(self, metric: Any, *labels: str) -> Any:
        """The child of `metric` for this consumer and `labels`, looked up once."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.name, *labels)
        return child

    def stalled_for(self) -> float | None:
        """Seconds without progress, once over the bound; None while the loop keeps up.

        Stalled: no event applied, no batch committed and nothing found idle for the bound
        (a handler waiting on a lock), or batches failing and retried for the bound."""
        now = time.monotonic()
        quiet = now - (self._healthy_at if self._failing else self._progress_at)
        stalled = quiet > self._stall_timeout_s
        CONSUMER_STALLED.labels(self.name).set(1 if stalled else 0)
        return quiet if stalled else None

    def _healthy(self) -> None:
        self._healthy_at = self._progress_at = time.monotonic()
        self._failing = False

    async def stop(self) -> None:
        """Stop fetching; the batch under way is applied and committed before run() returns."""
        self._stopping = True

    @property
    def connected(self) -> bool:
        return self._consumer is not None and self.ready.is_set()

    async def run(self) -> None:
        async def start() -> AIOKafkaConsumer:
            consumer = make_consumer(
                self._kafka,
                topics=self.topics,
                group_id=self._group_id,
                client_id=f"{self._group_id}-{uuid.uuid4().hex[:8]}",
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        self._consumer = consumer = await start_with_retry(start, what=f"consumer {self.name}")
        self._healthy()
        self.ready.set()
        failures = 0
        try:
            while not self._stopping:
                batches = await consumer.getmany(timeout_ms=200)
                if not batches:
                    self._healthy()
                    continue
                started = time.perf_counter()
                try:
                    await self._apply(batches)
                except Exception as error:
                    if not _is_transient(error):
                        log.exception("consumer_batch_failed", consumer=self.name)
                    else:
                        log.warning("consumer_batch_transient", error=repr(error))
                    failures += 1
                    self._failing = True
                    await asyncio.sleep(min(0.2 * failures, 5.0))
                    for tp, records in batches.items():
                        consumer.seek(tp, records[0].offset)  # apply them again
                    continue
                failures = 0
                try:
                    await consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
                except (CommitFailedError, KafkaError) as error:
                    # A rebalance took the partitions: the next owner redelivers what we
                    # applied, and the inbox skips it.
                    log.warning("consumer_commit_failed", error=repr(error))
                self._healthy()
                if self._on_commit is not None:
                    self._on_commit()
                BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
                for tp in batches:
                    highwater = consumer.highwater(tp)
                    position = batches[tp][-1].offset + 1
                    if highwater is not None:
                        CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                            max(highwater - position, 0)
                        )
        finally:
            await consumer.stop()

    async def _apply(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Apply a batch in one transaction.

        Fast path: every event of the batch in one savepoint, with one inbox statement and
        one outbox statement for the whole batch. If any handler fails, that savepoint is
        rolled back and the batch is applied again message by message, each in its own
        savepoint with bounded retries, so that only the bad message is dead-lettered.
        """
        token = cause_traces.set({})
        try:
            await self._apply_in_transaction(batches)
        finally:
            cause_traces.reset(token)

    async def _apply_in_transaction(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        async with self._sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            work: list[_Work] = []
            for records in batches.values():
                for record in records:
                    self._metric(MESSAGES_CONSUMED, record.topic).inc()
                    item = await self._work_of(record, uow)
                    if item is not None:
                        work.append(item)
            if work:
                mark = uow.outbox.mark()
                try:
                    async with session.begin_nested():
                        await self._apply_all(work, uow)
                except Exception as error:
                    if _is_transient(error):
                        raise
                    uow.outbox.discard(since=mark)
                    log.warning("batch_fast_path_failed", error=repr(error))
                    for item in work:
                        await self._apply_one(item, uow)
            await uow.flush()

    async def _work_of(self, record: ConsumerRecord[bytes, bytes], uow: UnitOfWork) -> _Work | None:
        """What to do with a record: None if no handler of this service wants it (or it
        was dead-lettered as an invalid envelope)."""
        value = record.value or b""
        raw_handler = self._raw_handlers.get(record.topic)
        if raw_handler is not None:
            return _Work(
                record=record,
                event_id=raw_message_id(record.topic, value),
                event_type=record.topic,
                correlation_id=None,
                apply=functools.partial(raw_handler, value),
                raw=value,
            )
        try:
            event = Envelope.from_bytes(value)
        except (ValidationError, ValueError) as error:
            await self._dead_letter(record, uow, f"invalid envelope: {error}", attempts=1)
            return None
        handler = self._handlers.get(event.type, self._default_handler)
        if handler is None:
            return None  # not an event this service reacts to
        return _Work(
            record=record,
            event_id=event.id,
            event_type=event.type,
            correlation_id=event.correlation_id,
            apply=functools.partial(handler, event),
            event=event,
        )

    @contextlib.contextmanager
    def _context(self, item: _Work, *, timed: bool = True) -> Iterator[None]:
        """While an event is applied: its record, its ids in every log line, and a span
        continuing the trace its record's `traceparent` header carries."""
        token = current_record.set(item.record)
        event_id = str(item.event_id)
        try:
            with (
                bound_contextvars(
                    event_id=event_id,
                    correlation_id=item.correlation_id,
                    event_type=item.event_type,
                ),
                span_from_headers(
                    f"{item.record.topic} process",
                    item.record.headers or (),
                    kind=SpanKind.CONSUMER,
                    # A raw message (a depository answer) may cover many trades: None lets
                    # each trade's events keep the trade's own trace (bo_common.tracing).
                    owner=item.correlation_id,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": item.record.topic,
                        "messaging.consumer.group.name": self._group_id,
                        "messaging.message.id": event_id,
                        "bo.event_type": item.event_type,
                    }
                    if recording()
                    else None,
                ) as span,
            ):
                traces = cause_traces.get()
                traceparent = traceparent_of(span)
                if traces is not None and traceparent is not None:
                    traces[item.event_id] = traceparent
                started = time.perf_counter()
                yield
                self._progress_at = time.monotonic()
                if timed:
                    self._metric(EVENT_SECONDS, item.record.topic).observe(
                        time.perf_counter() - started
                    )
                self._delivered(item.record)
        finally:
            current_record.reset(token)

    def _delivered(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.timestamp and record.timestamp > 0:
            self._metric(EVENT_DELIVERY_SECONDS, record.topic).observe(
                max(time.time() - record.timestamp / 1000, 0.0)
            )

    def _inbox_row(self, item: _Work) -> dict[str, object]:
        row: dict[str, object] = {
            "event_id": item.event_id,
            "event_type": item.event_type,
            "topic": item.record.topic,
        }
        if PlumbingSchema.trace_columns:
            row["traceparent"] = traceparent_in(item.record.headers or ())
        return row

    async def _apply_all(self, work: list[_Work], uow: UnitOfWork) -> None:
        if self._applied_ids is not None:
            # The service's own records say what it applied; a replica that applies one of
            # these meanwhile makes the handler's insert fail (its unique key), and the
            # batch is applied again event by event (_first_delivery).
            ids = list(dict.fromkeys(item.event_id for item in work))
            fresh = set(ids) - await self._applied_ids(uow.session, ids)
        else:
            fresh = await self._record_in_inbox(uow, work)
        run: list[_Work] = []  # consecutive events of one batch handler, applied together
        for item in work:
            if item.event_id not in fresh:
                self._metric(EVENTS_DUPLICATE).inc()
                continue
            fresh.discard(item.event_id)  # the same event twice in one batch is applied once
            batch_handler = self._batch_handler_of(item)
            if batch_handler is not None:
                if run and self._batch_handler_of(run[0]) is not batch_handler:
                    await self._apply_run(run, uow)
                run.append(item)
                continue
            await self._apply_run(run, uow)
            with self._context(item):
                await item.apply(uow)
            self._metric(EVENTS_APPLIED, item.event_type, item.record.topic).inc()
        await self._apply_run(run, uow)
        await uow.flush()

    async def _record_in_inbox(self, uow: UnitOfWork, work: list[_Work]) -> set[uuid.UUID]:
        """The ids of `work` not applied before, now in the inbox.

        The ids applied before are read, then the others inserted: an INSERT ... ON CONFLICT
        makes each row a speculative insertion, with a WAL record more per event to confirm
        it. A replica that inserts one of them meanwhile makes this insert fail, and the
        batch is applied again event by event (_first_delivery)."""
        rows: dict[uuid.UUID, dict[str, object]] = {}
        for item in work:
            if item.event_id not in rows:
                rows[item.event_id] = self._inbox_row(item)
        inbox = _inbox_table()
        applied = set(
            (
                await uow.session.execute(
                    sa.select(inbox.c.event_id).where(
                        inbox.c.event_id
                        == sa.any_(sa.bindparam("ids", list(rows), type_=_UUID_ARRAY))
                    )
                )
            ).scalars()
        )
        fresh = set(rows) - applied
        if fresh:
            # Parameter sets of one compiled statement (see Outbox.flush).
            await uow.session.execute(insert(inbox), [rows[i] for i in rows if i in fresh])
        return fresh

    def _batch_handler_of(self, item: _Work) -> BatchHandler | RawBatchHandler | None:
        """The batch handler of an event: its type's, or the default's for a type without a
        handler of its own; of a raw message, its topic's."""
        if item.event is None:
            return self._raw_batch_handlers.get(item.record.topic)
        found = self._batch_handlers.get(item.event_type)
        if found is None and item.event_type not in self._handlers:
            return self._default_batch_handler
        return found

    async def _apply_run(self, run: list[_Work], uow: UnitOfWork) -> None:
        """Apply a run of events with their batch handler, and empty the run.

        Each event gets its span first, so that what the run publishes continues the trace
        of the event that caused it (cause_traces), as a single event's handler does. When
        spans are recorded, each is opened and closed; when they are not, only its
        `traceparent` is made (tracing.child_traceparent), which is all a span that records
        nothing would leave."""
        if not run:
            return
        if recording():
            for item in run:
                with self._context(item, timed=False):
                    pass
        else:
            traces = cause_traces.get()
            for item in run:
                if traces is not None:
                    traces[item.event_id] = child_traceparent(item.record.headers or ())
                self._delivered(item.record)
        started = time.perf_counter()
        handler = self._batch_handler_of(run[0])
        token = current_records.set([item.record for item in run])
        try:
            if run[0].event is None:
                raws = [cast(bytes, item.raw) for item in run]
                await cast(RawBatchHandler, handler)(raws, uow)
            else:
                events = [cast(Envelope, item.event) for item in run]
                await cast(BatchHandler, handler)(events, uow)
        finally:
            current_records.reset(token)
        each = (time.perf_counter() - started) / len(run)
        for item in run:
            self._metric(EVENTS_APPLIED, item.event_type, item.record.topic).inc()
            self._metric(EVENT_SECONDS, item.record.topic).observe(each)
        self._progress_at = time.monotonic()
        run.clear()

    async def _apply_one(self, item: _Work, uow: UnitOfWork) -> None:
        last_error: BaseException | None = None
        error_text = ""
        attempts = self._attempts
        mark = uow.outbox.mark()
        with self._context(item):
            for attempt in range(1, self._attempts + 1):
                try:
                    async with uow.session.begin_nested():
                        if not await self._first_delivery(item, uow):
                            EVENTS_DUPLICATE.labels(self.name).inc()
                            return
                        await item.apply(uow)
                        await uow.flush()
                    EVENTS_APPLIED.labels(self.name, item.event_type, item.record.topic).inc()
                    return
                except PoisonMessage as error:
                    uow.outbox.discard(since=mark)
                    # Its own text, as the raiser wrote it (e.g. a schema validation error).
                    error_text = f"{type(error).__name__}: {error}"
                    attempts = attempt
                    break
                except Exception as error:
                    if _is_transient(error):
                        raise
                    uow.outbox.discard(since=mark)
                    if self._applied_ids is not None and item.event_id in await self._applied_ids(
                        uow.session, [item.event_id]
                    ):
                        # A replica applied it meanwhile (its own records' unique key made
                        # this attempt fail): a duplicate, not a failure.
                        self._metric(EVENTS_DUPLICATE).inc()
                        return
                    last_error = error
                    error_text = repr(error)
                    HANDLER_RETRIES.labels(self.name).inc()
                    log.warning("handler_failed", attempt=attempt, error=repr(last_error))
            await self._dead_letter(item.record, uow, error_text, attempts=attempts)

    async def _first_delivery(self, item: _Work, uow: UnitOfWork) -> bool:
        if self._applied_ids is not None:
            return item.event_id not in await self._applied_ids(uow.session, [item.event_id])
        inbox = _inbox_table()
        inserted = await uow.session.scalar(
            insert(inbox)
            .values(self._inbox_row(item))
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(inbox.c.event_id)
        )
        return inserted is not None

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], uow: UnitOfWork, error: str, *, attempts: int
    ) -> None:
        log.error(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=error,
        )
        EVENTS_DEAD_LETTERED.labels(self.name, record.topic).inc()
        uow.outbox.put_raw(
            event_id=uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"dlq:{self._group_id}:{record.topic}:{record.partition}:{record.offset}",
            ),
            event_type="dead_letter",
            topic=dead_letter_topic(record.topic),
            key=record.key.decode("utf-8", "replace") if record.key else None,
            payload=dead_letter_payload(
                record, error=error, consumer=self._group_id, attempts=attempts
            ),
        )


_UUID_ARRAY = ARRAY(UUID(as_uuid=True))


def _inbox_table() -> sa.TableClause:
    if PlumbingSchema.trace_columns:
        return INBOX
    return cast(sa.Table, InboxRow.__table__)


def dead_letter_payload(
    record: ConsumerRecord[bytes, bytes], *, error: str, consumer: str, attempts: int
) -> bytes:
    value = record.value or b""
    body: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "consumer": consumer,
        "error": error,
        "attempts": attempts,
        "failed_at": datetime.now(UTC).isoformat(),
    }
    try:
        body["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        body["value_base64"] = base64.b64encode(value).decode("ascii")
    return json.dumps(body).encode("utf-8")
