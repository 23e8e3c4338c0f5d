"""Audit use case: append every event to the hash chain, once."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from audit import domain
from audit.tables import ChainHeadRow, RecordRow
from bo_common.auth import ACCESS_HANDLERS
from bo_common.consumer import Handler
from bo_common.envelope import Envelope
from bo_common.unit_of_work import UnitOfWork

CHAIN = "events"
_HEAD = "audit.chain_head"


async def append_event(event: Envelope, uow: UnitOfWork) -> None:
    # The head row lock serialises appends across replicas; it is held to the end of the
    # consumed batch's transaction, so a batch appends contiguously.
    # Locked once per transaction (one consumed batch); later events of the batch reuse the
    # row. A savepoint rolled back releases the lock and expires the row (it was changed in
    # it): then it is locked and read again.
    head = uow.session.info.get(_HEAD)
    if head is None or sa.inspect(head).expired_attributes:
        head = (
            await uow.session.execute(
                sa.select(ChainHeadRow).where(ChainHeadRow.chain == CHAIN).with_for_update()
            )
        ).scalar_one()
        uow.session.info[_HEAD] = head
    payload = event.to_bytes()
    seq = head.last_seq + 1
    digest = domain.payload_hash(payload)
    chained = domain.record_hash(seq, digest, head.last_hash)
    uow.session.add(
        RecordRow(
            seq=seq,
            event_id=event.id,
            topic=f"{event.type.split('.')[0]}.events",
            event_type=event.type,
            source=event.source,
            subject=event.subject,
            correlation_id=event.correlation_id,
            actor=event.actor,
            occurred_at=event.time,
            recorded_at=datetime.now(UTC),
            payload=payload,
            payload_hash=digest,
            previous_hash=head.last_hash,
            record_hash=chained,
        )
    )
    head.last_seq = seq
    head.last_hash = chained


def _and_append(apply: Handler) -> Handler:
    async def both(event: Envelope, uow: UnitOfWork) -> None:
        await apply(event, uow)
        await append_event(event, uow)

    return both


# Key events are applied (audit authenticates its own readers) and recorded like any other.
ACCESS_AND_APPEND: dict[str, Handler] = {
    type_: _and_append(apply) for type_, apply in ACCESS_HANDLERS.items()
}
