"""Audit use cases: append every consumed event to the log once, append each query of the
audit API, and sign and publish tree heads."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event as orm_events
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from audit import domain, domain_signing
from audit import domain_merkle as merkle
from audit.tables import NodeRow, RecordRow, SignedHeadRow, TreeStateRow
from bo_common.auth import ACCESS_HANDLERS, Principal
from bo_common.consumer import Handler, current_record, current_records
from bo_common.contracts.audit import (
    RECORDS_QUERIED,
    TREE_HEAD_SIGNED,
    RecordsQueried,
    TreeHeadSigned,
)
from bo_common.envelope import Envelope, new_event
from bo_common.topics import AUDIT_EVENTS
from bo_common.tracing import current_traceparent, traceparent_in
from bo_common.unit_of_work import UnitOfWork

TREE = "events"
_STATE = "audit.tree_state"
_PENDING = "audit.pending_rows"


async def _locked_state(session: AsyncSession) -> TreeStateRow:
    # The head row's lock serialises appends across replicas and with the API's query
    # records, and is held to the end of the transaction: seqs become visible in order, so
    # a reader paging by seq never skips one that commits later. Locked once per
    # transaction (one consumed batch); a savepoint rolled back releases the lock and
    # expires the row (it was changed in it): then it is locked and read again.
    state: TreeStateRow | None = session.info.get(_STATE)
    if state is None or sa.inspect(state).expired_attributes:
        state = (
            await session.execute(
                sa.select(TreeStateRow).where(TreeStateRow.tree == TREE).with_for_update()
            )
        ).scalar_one()
        session.info[_STATE] = state
    return state


@dataclass
class _Pending:
    """Rows appended since the session last flushed: written by one multi-row INSERT per
    table when it flushes (ORM objects cost more than the hashing, per record)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)


def _pending(session: AsyncSession) -> _Pending:
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = _Pending()
        sync_session = session.sync_session
        # The tree's row is changed by every append, so a flush always follows one.
        orm_events.listen(sync_session, "before_flush", _write_pending)
        # A rolled back attempt (a savepoint) takes its unflushed rows with it.
        orm_events.listen(sync_session, "after_soft_rollback", _forget_pending)
    return pending


def _write_pending(session: Session, *_: object) -> None:
    pending: _Pending = session.info[_PENDING]
    records, nodes = pending.records, pending.nodes
    pending.records, pending.nodes = [], []
    # On the tables, not the mapped classes: the rows are plain parameter sets, and the
    # ORM's bulk path cost more per row than the insert.
    if records:
        session.execute(sa.insert(RecordRow.__table__), records)
    if nodes:
        session.execute(sa.insert(NodeRow.__table__), nodes)


def _forget_pending(session: Session, *_: object) -> None:
    pending: _Pending = session.info[_PENDING]
    pending.records.clear()
    pending.nodes.clear()


def frontier_of(state: TreeStateRow) -> merkle.Frontier:
    raw = state.frontier
    size = merkle.HASH_SIZE
    return merkle.Frontier(state.size, tuple(raw[i : i + size] for i in range(0, len(raw), size)))


async def _append(
    session: AsyncSession,
    event: Envelope,
    *,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    raw: bytes | None = None,
    traceparent: str | None = None,
) -> int:
    state = await _locked_state(session)
    seq = state.size + 1
    received_at = datetime.now(UTC)
    body: dict[str, Any] = event.model_dump(mode="json") if raw is None else json.loads(raw)
    body_json = domain.canonical_json(body)
    leaf = domain.record_document(
        seq=seq,
        topic=topic,
        partition=partition,
        offset=offset,
        received_at=received_at,
        event_json=body_json,
    )
    appended = merkle.append(frontier_of(state), [merkle.leaf_hash(leaf)])
    pending = _pending(session)
    pending.records.append(
        {
            "seq": seq,
            "event_id": event.id,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event_type": event.type,
            "source": event.source,
            "subject": event.subject,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "account": domain.account_of(body),
            "actor": event.actor,
            "occurred_at": event.time,
            "recorded_at": received_at,
            "payload": leaf,
            "payload_hash": hashlib.sha256(body_json).hexdigest(),
            "traceparent": traceparent,
        }
    )
    pending.nodes.extend({"level": lv, "index": ix, "hash": h} for lv, ix, h in appended.nodes)
    state.size = appended.frontier.size
    state.frontier = b"".join(appended.frontier.hashes)
    return seq


async def append_event(event: Envelope, uow: UnitOfWork) -> None:
    """Every event of every *.events topic, verbatim, with where and when it was read.
    Once: the consume loop skips an event id the log holds (`recorded`; event_id is
    unique)."""
    await _append_read(uow.session, event, current_record.get())


async def append_events(events: list[Envelope], uow: UnitOfWork) -> None:
    """A run of events, each appended as `append_event` appends it, in order."""
    records = current_records.get()
    for n, event in enumerate(events):
        await _append_read(uow.session, event, records[n] if records is not None else None)


async def _append_read(
    session: AsyncSession, event: Envelope, record: ConsumerRecord[bytes, bytes] | None
) -> None:
    await _append(
        session,
        event,
        topic=record.topic if record is not None else f"{event.type.split('.')[0]}.events",
        partition=record.partition if record is not None else None,
        offset=record.offset if record is not None else None,
        # Verbatim: the JSON as it was published, not as we would write it.
        raw=record.value if record is not None else None,
        traceparent=(
            traceparent_in(record.headers or ()) if record is not None else current_traceparent()
        ),
    )


async def recorded(session: AsyncSession, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these events are in the log: the audit's inbox is the log itself (each event
    is appended in the transaction that consumes it, and `event_id` is unique), so an
    inbox row per event would only repeat it."""
    found = await session.execute(
        sa.select(RecordRow.event_id).where(
            RecordRow.event_id
            == sa.any_(sa.bindparam("ids", event_ids, type_=ARRAY(UUID(as_uuid=True))))
        )
    )
    return set(found.scalars())


async def last_recorded_at(engine: AsyncEngine) -> datetime | None:
    """When the last consumed event was appended (the ops status's `last_consumed_at`: the
    audit keeps no inbox). A query's own record, which has no topic, does not count."""
    async with engine.connect() as connection:
        found: datetime | None = await connection.scalar(
            sa.select(RecordRow.recorded_at)
            .where(RecordRow.topic.is_not(None))
            .order_by(RecordRow.seq.desc())
            .limit(1)
        )
    return found


async def record_query(
    session: AsyncSession,
    principal: Principal,
    *,
    route: str,
    filters: dict[str, Any],
    records_returned: int,
) -> int:
    """Who looked: appended in the query's own transaction, so no answer is given without
    its record. The caller commits."""
    event = new_event(
        type=RECORDS_QUERIED,
        source="audit",
        subject=route,
        actor=principal.actor,
        correlation_id=f"query:{uuid.uuid4()}",
        data=RecordsQueried(
            route=route,
            filters={k: v for k, v in filters.items() if v is not None},
            records_returned=records_returned,
            key_id=str(principal.key_id),
            key_name=principal.name,
            role=str(principal.role),
        ).model_dump(mode="json"),
    )
    return await _append(
        session,
        event,
        topic=None,
        partition=None,
        offset=None,
        traceparent=current_traceparent(),
    )


async def sign_tree_head(
    session: AsyncSession, key: Ed25519PrivateKey, *, now: datetime
) -> domain_signing.SignedTreeHead:
    """The current tree head, signed (not stored)."""
    state = (
        await session.execute(sa.select(TreeStateRow).where(TreeStateRow.tree == TREE))
    ).scalar_one()
    head = domain_signing.TreeHead(state.size, frontier_of(state).root(), now)
    return domain_signing.sign(head, key)


async def publish_tree_head(
    uow: UnitOfWork, key: Ed25519PrivateKey, *, now: datetime
) -> int | None:
    """Sign, store and publish (outbox, audit.events) a head of the current tree if records
    other than published heads were appended since the last one; the size, or None.

    Audit reads audit.events too and appends each published head as a record: counting
    those as news would publish a head for every head, forever."""
    session = uow.session
    last = await session.scalar(sa.select(sa.func.max(SignedHeadRow.tree_size)))
    signed = await sign_tree_head(session, key, now=now)
    size = signed.head.tree_size
    if size == 0 or (last is not None and size <= last):
        return None
    news = await session.scalar(
        sa.select(
            sa.exists().where(
                RecordRow.seq > (last or 0),
                RecordRow.seq <= size,
                RecordRow.event_type != TREE_HEAD_SIGNED,
            )
        )
    )
    if not news:
        return None
    session.add(
        SignedHeadRow(
            tree_size=size,
            root_hash=signed.head.root_hash,
            signed_at=signed.head.timestamp,
            key_id=signed.key_id,
            signature=signed.signature,
        )
    )
    body = signed.to_json()
    event = new_event(
        type=TREE_HEAD_SIGNED,
        source="audit",
        subject=f"{domain_signing.LOG_NAME}:{size}",
        actor="audit",
        data=TreeHeadSigned.model_validate(body).model_dump(mode="json"),
        time=now,
    )
    uow.outbox.put(event, topic=AUDIT_EVENTS, key=domain_signing.LOG_NAME)
    await uow.commit()
    return size


def _and_append(apply: Handler) -> Handler:
    async def both(event: Envelope, uow: UnitOfWork) -> None:
        await apply(event, uow)
        await append_event(event, uow)

    return both


# Key events are applied (audit authenticates its own readers) and recorded like any other.
ACCESS_AND_APPEND: dict[str, Handler] = {
    type_: _and_append(apply) for type_, apply in ACCESS_HANDLERS.items()
}
