"""The transactional outbox: events are stored with the state change, then relayed to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, cast

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bo_common.db import OutboxRow
from bo_common.envelope import Envelope
from bo_common.logs import get_logger
from bo_common.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED
from bo_common.tracing import (
    ANY_TRADE,
    cause_traces,
    current_traceparent,
    kafka_headers,
    trace_owner,
)

log = get_logger(__name__)

# Any constant works: it only has to be the same for every replica of one service's relay.
_RELAY_LOCK_KEY = 0x6F7574626F78  # "outbox"


class PlumbingSchema:
    """Whether this process's database has the trace context columns (revision 0100 of
    every service); until it does, the outbox and inbox are written as before, so that a
    process started before its database was migrated keeps working."""

    trace_columns = False
    # Revision 0101: the relay finds unsent rows in outbox_pending (add_outbox_pending).
    pending_table = False

    @classmethod
    async def detect(cls, engine: AsyncEngine) -> bool:
        """Whether the database has every plumbing revision."""
        async with engine.connect() as connection:
            found = await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND ((table_name = 'outbox' AND column_name IN "
                    "('traceparent', 'correlation_id')) OR (table_name = 'inbox' AND "
                    "column_name = 'traceparent'))"
                )
            )
            pending = await connection.scalar(
                sa.text("SELECT to_regclass('outbox_pending') IS NOT NULL")
            )
        cls.trace_columns = found == 3
        cls.pending_table = bool(pending) and cls.trace_columns
        return cls.pending_table


# The outbox with the trace context columns, as a lightweight table: the ORM class
# (bo_common.db.OutboxRow) stays usable against a database without them.
OUTBOX = sa.table(
    "outbox",
    sa.column("seq", sa.BigInteger),
    sa.column("event_id", UUID(as_uuid=True)),
    sa.column("event_type", sa.Text),
    sa.column("topic", sa.Text),
    sa.column("key", sa.Text),
    sa.column("payload", sa.LargeBinary),
    sa.column("sent_at", sa.DateTime(timezone=True)),
    sa.column("traceparent", sa.Text),
    sa.column("correlation_id", sa.Text),
)
INBOX = sa.table(
    "inbox",
    sa.column("event_id", UUID(as_uuid=True)),
    sa.column("event_type", sa.Text),
    sa.column("topic", sa.Text),
    sa.column("traceparent", sa.Text),
)
_NO_CAUSE = uuid.UUID(int=0)
# Set on a row whose trace is to be taken from its trade's earlier outbox rows.
_LOOK_UP = "_look_up_trace"


def add_trace_context_columns() -> None:
    """Revision 0100 of every service: the trace context an outbox row was caused in (sent
    as the `traceparent` Kafka header), its correlation id (to find a trade's trace), the
    context an inbox row was delivered with, and an index of the dead letters."""
    from alembic import op as alembic_op

    alembic_op.add_column("outbox", sa.Column("traceparent", sa.Text))
    alembic_op.add_column("outbox", sa.Column("correlation_id", sa.Text))
    alembic_op.add_column("inbox", sa.Column("traceparent", sa.Text))
    alembic_op.execute(
        "CREATE INDEX outbox_correlation ON outbox (correlation_id, seq) "
        "WHERE correlation_id IS NOT NULL AND traceparent IS NOT NULL"
    )
    alembic_op.execute(
        "CREATE INDEX outbox_dead_letters ON outbox (topic) WHERE event_type = 'dead_letter'"
    )


def add_outbox_pending() -> None:
    """Revision 0101 of every service: the relay finds unsent rows in `outbox_pending`
    (their seq) and deletes them there once published, where it used to set `sent_at` on
    the outbox row itself. That update wrote a whole new copy of the row (its payload too)
    and an entry in each of its indexes, since the partial index of unsent rows names
    `sent_at`: about half of the outbox's WAL. A trigger queues every row an INSERT adds,
    whoever writes it. `sent_at` stays on the rows the relay sent before this revision;
    `outbox_relay` keeps when it last published."""
    from alembic import op as alembic_op

    # No row may be added between the backfill and the trigger: a transaction that inserted
    # rows before the backfill's snapshot and committed after it would be in neither. The
    # lock waits for such transactions and holds new inserts until this revision commits.
    alembic_op.execute("LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE")
    alembic_op.execute("CREATE TABLE outbox_pending (seq bigint PRIMARY KEY)")
    alembic_op.execute(
        "CREATE TABLE outbox_relay (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "published_at timestamptz)"
    )
    alembic_op.execute("INSERT INTO outbox_relay (published_at) SELECT max(sent_at) FROM outbox")
    alembic_op.execute("INSERT INTO outbox_pending SELECT seq FROM outbox WHERE sent_at IS NULL")
    alembic_op.execute(
        """CREATE FUNCTION bo_outbox_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO outbox_pending (seq) SELECT seq FROM added; RETURN NULL; END $$"""
    )
    # Once per statement with the rows it added (ON CONFLICT DO NOTHING: only those).
    alembic_op.execute(
        """CREATE TRIGGER outbox_pending AFTER INSERT ON outbox REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION bo_outbox_pending()"""
    )
    alembic_op.execute("DROP INDEX outbox_unsent")


def drop_outbox_pending() -> None:
    from alembic import op as alembic_op

    alembic_op.execute("LOCK TABLE outbox, outbox_pending, outbox_relay IN EXCLUSIVE MODE")
    alembic_op.execute("CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL")
    # Queued is unsent, also a row sent before 0101 and queued again (bo outbox republish).
    alembic_op.execute(
        "UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL "
        "AND seq IN (SELECT seq FROM outbox_pending)"
    )
    alembic_op.execute(
        "UPDATE outbox SET sent_at = coalesce((SELECT published_at FROM outbox_relay), now()) "
        "WHERE sent_at IS NULL AND seq NOT IN (SELECT seq FROM outbox_pending)"
    )
    alembic_op.execute("DROP TRIGGER outbox_pending ON outbox")
    alembic_op.execute("DROP FUNCTION bo_outbox_pending()")
    alembic_op.execute("DROP TABLE outbox_relay")
    alembic_op.execute("DROP TABLE outbox_pending")


def drop_trace_context_columns() -> None:
    from alembic import op as alembic_op

    alembic_op.execute("DROP INDEX outbox_dead_letters")
    alembic_op.execute("DROP INDEX outbox_correlation")
    alembic_op.drop_column("inbox", "traceparent")
    alembic_op.drop_column("outbox", "correlation_id")
    alembic_op.drop_column("outbox", "traceparent")


class Outbox:
    """Collects a unit of work's events; they are written in its transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._rows: list[dict[str, Any]] = []
        # Rows of the service's own tables queued with insert_later, each with its table.
        self._later: list[tuple[sa.TableClause, dict[str, Any]]] = []

    def insert_later(self, table: sa.TableClause, row: dict[str, Any]) -> None:
        """Queue a row for `table`, inserted when the unit of work flushes (one statement
        per table, before the events), and forgotten with the events by `discard`.

        For rows nothing reads back before the flush (an evaluation, a timeline entry): they
        cost a parameter set each, where an ORM object costs the unit of work's bookkeeping.
        """
        self._later.append((table, row))

    def put(self, event: Envelope, *, topic: str, key: str | None) -> None:
        row: dict[str, Any] = {
            "event_id": event.id,
            "event_type": event.type,
            "topic": topic,
            "key": key,
            "payload": event.to_bytes(),
        }
        if PlumbingSchema.trace_columns:
            row["correlation_id"] = event.correlation_id
            caused_in = (cause_traces.get() or {}).get(event.causation_id or _NO_CAUSE)
            owner = trace_owner.get()
            if caused_in is not None:  # the trace of the consumed event that caused it
                row["traceparent"], row[_LOOK_UP] = caused_in, False
            else:
                row["traceparent"] = current_traceparent()
                # Caused by something that is not this trade's (a cycle over many trades):
                # the trade's own trace, if this service has written an event of it before.
                row[_LOOK_UP] = owner != ANY_TRADE and owner != event.correlation_id
        self._rows.append(row)

    def put_raw(
        self, *, event_id: Any, event_type: str, topic: str, key: str | None, payload: bytes
    ) -> None:
        """For messages that are not envelopes of ours (dead letters, CSD messages)."""
        row: dict[str, Any] = {
            "event_id": event_id,
            "event_type": event_type,
            "topic": topic,
            "key": key,
            "payload": payload,
        }
        if PlumbingSchema.trace_columns:
            row.update(traceparent=current_traceparent(), correlation_id=None)
            row[_LOOK_UP] = False
        self._rows.append(row)

    def take(self, *, new_correlations: bool = False) -> list[dict[str, Any]]:
        """The events put so far, as outbox rows (column: value), for a caller that writes
        them in a statement of its own; they are no longer this unit of work's to flush.

        An event whose trace is to be found in its correlation's earlier rows cannot be
        taken, unless the caller knows there are none (`new_correlations`: each event is
        the first of a trade id made just now), and then it keeps the current trace."""
        if self._later:
            raise RuntimeError("rows queued with insert_later are flushed, not taken")
        rows, self._rows = self._rows, []
        for row in rows:
            if row.pop(_LOOK_UP, False) and not new_correlations:
                raise RuntimeError(f"event {row['event_id']} takes its trace from earlier rows")
        return rows

    def mark(self) -> tuple[int, int]:
        return len(self._rows), len(self._later)

    def discard(self, since: tuple[int, int]) -> None:
        """Forget the events and rows put after `mark()`: a handler attempt that was rolled
        back."""
        del self._rows[since[0] :]
        del self._later[since[1] :]

    async def flush(self) -> None:
        if self._later:
            later, self._later = self._later, []
            by_table: dict[sa.TableClause, list[dict[str, Any]]] = {}
            for table, row in later:
                by_table.setdefault(table, []).append(row)
            for table, rows in by_table.items():
                await self._session.execute(sa.insert(table), rows)
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        if PlumbingSchema.trace_columns:
            await self._take_trades_traces(rows)
        # ON CONFLICT: an event id already queued (a retried handler) is queued once. The
        # rows as parameter sets of one statement, not one VALUES list built per flush:
        # that statement is compiled once, where a list of rows was coerced and compiled
        # again for every batch size (client CPU per row 123 -> 35 us measured).
        outbox = OUTBOX if PlumbingSchema.trace_columns else cast(sa.Table, OutboxRow.__table__)
        await self._session.execute(
            sa.dialects.postgresql.insert(outbox).on_conflict_do_nothing(
                index_elements=["event_id"]
            ),
            rows,
        )

    async def _take_trades_traces(self, rows: list[dict[str, Any]]) -> None:
        wanted = {row["correlation_id"] for row in rows if row.pop(_LOOK_UP)}
        if not wanted:
            return
        result = await self._session.execute(
            sa.select(OUTBOX.c.correlation_id, OUTBOX.c.traceparent)
            .distinct(OUTBOX.c.correlation_id)
            .where(OUTBOX.c.correlation_id.in_(wanted), OUTBOX.c.traceparent.is_not(None))
            .order_by(OUTBOX.c.correlation_id, OUTBOX.c.seq)
        )
        found: dict[str, str] = {correlation: traceparent for correlation, traceparent in result}
        for row in rows:
            traceparent = found.get(row["correlation_id"])
            if traceparent is not None:
                row["traceparent"] = traceparent


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
        vacuum_after: int = 2000,
    ) -> None:
        self._service = service
        self._engine = engine
        self._producer = producer
        self._poll_s = poll_interval_ms / 1000
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        # The queue (outbox_pending) is emptied as fast as it is filled: every sent row
        # leaves a dead version, and every poll's index scan walks over them until a vacuum
        # removes them. Autovacuum visits a database about once a minute, and on a cluster
        # of many databases less often: over a run of `make bench PARTS=series` the dead
        # rows made PostgreSQL's work per trade grow by a fifth. So the relay vacuums the
        # queue itself after this many rows sent (a small table: a few milliseconds).
        self._vacuum_after = vacuum_after
        self._sent_since_vacuum = 0

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

    async def drain(self) -> int:
        """Publish until nothing is left unsent (or another replica holds the relay lock);
        at shutdown, after the consume loop has committed its last batch."""
        total = 0
        while (published := await self.publish_once()) > 0:
            total += published
        return total

    async def publish_once(self) -> int:
        async with self._engine.begin() as connection:
            locked = await connection.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(_RELAY_LOCK_KEY))
            )
            if not locked:
                return 0
            pending = PlumbingSchema.pending_table
            if not pending and await connection.scalar(_QUEUE_EXISTS):
                # Started before `bo migrate` added the queue (revision 0101): from now on
                # the queue, where the old way would send again every row the queue's
                # relays have sent.
                pending = await PlumbingSchema.detect(self._engine)
                log.info("outbox_relay_uses_the_queue", service=self._service)
            traced = PlumbingSchema.trace_columns
            if pending:
                rows = (await connection.execute(_PENDING_ROWS, {"limit": self._batch_size})).all()
            else:
                rows = (
                    await connection.execute(
                        sa.select(
                            OUTBOX.c.seq,
                            OUTBOX.c.topic,
                            OUTBOX.c.key,
                            OUTBOX.c.payload,
                            OUTBOX.c.traceparent if traced else sa.null().label("traceparent"),
                        )
                        .where(OUTBOX.c.sent_at.is_(None))
                        .order_by(OUTBOX.c.seq)
                        .limit(self._batch_size)
                    )
                ).all()
            if not rows:
                OUTBOX_PENDING.labels(self._service).set(0)
                return 0
            deliveries = []
            for row in rows:
                key = row.key.encode("utf-8") if row.key is not None else None
                deliveries.append(
                    await self._producer.send(
                        row.topic, row.payload, key=key, headers=kafka_headers(row.traceparent)
                    )
                )
            await asyncio.gather(*deliveries)
            if pending:
                await connection.execute(_SENT, {"seqs": [row.seq for row in rows]})
            else:
                await connection.execute(
                    sa.update(OutboxRow)
                    .where(OutboxRow.seq.in_([row.seq for row in rows]))
                    .values(sent_at=sa.func.now())
                )
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        if pending:
            self._sent_since_vacuum += len(rows)
            if self._sent_since_vacuum >= self._vacuum_after:
                self._sent_since_vacuum = 0
                await self._vacuum_queue()
        return len(rows)

    async def _vacuum_queue(self) -> None:
        """VACUUM the queue (outside any transaction, as VACUUM must be). A role that does
        not own it gets a warning from PostgreSQL and the table is left to autovacuum."""
        try:
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql(_VACUUM_QUEUE)
        except Exception as error:  # never a reason not to publish
            log.warning("outbox_queue_vacuum_failed", error=repr(error))


_QUEUE_EXISTS = sa.text("SELECT to_regclass('outbox_pending') IS NOT NULL")
_VACUUM_QUEUE = "VACUUM (ANALYZE off) outbox_pending"
# Revision 0101 (add_outbox_pending): the unsent rows, oldest first, and what publishing
# them changes: their seqs leave outbox_pending; the outbox rows are not written again.
_PENDING_ROWS = sa.text(
    "SELECT o.seq, o.topic, o.key, o.payload, o.traceparent FROM outbox_pending AS p"
    " JOIN outbox AS o ON o.seq = p.seq ORDER BY p.seq LIMIT :limit"
)
_SENT = sa.text(
    "WITH sent AS (DELETE FROM outbox_pending WHERE seq = ANY(CAST(:seqs AS bigint[])))"
    " UPDATE outbox_relay SET published_at = now()"
)
