"""Audit HTTP routes: search the record and verify the chain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from audit import domain
from audit.tables import RecordRow
from bo_common.auth import Principal
from bo_common.runtime import READERS, RuntimeDep, roles

router = APIRouter(prefix="/v1", tags=["audit"])
Reader = Annotated[Principal, Depends(roles(*READERS))]


class RecordOut(BaseModel):
    seq: int
    event: dict[str, Any]
    record_hash: str
    previous_hash: str
    recorded_at: datetime


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: int | None


class VerificationOut(BaseModel):
    valid: bool
    records_checked: int
    first_invalid_seq: int | None
    reason: str | None


@router.get("/events", response_model=RecordPage)
async def events(
    _: Reader,
    runtime: RuntimeDep,
    trade_id: str | None = None,
    type: str | None = None,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RecordPage:
    query = sa.select(RecordRow).where(RecordRow.seq > cursor).order_by(RecordRow.seq)
    if trade_id is not None:
        query = query.where(RecordRow.correlation_id == trade_id)
    if type is not None:
        query = query.where(RecordRow.event_type == type)
    async with runtime.sessions() as session:
        rows = (await session.execute(query.limit(limit + 1))).scalars().all()
    page = rows[:limit]
    return RecordPage(
        items=[
            RecordOut(
                seq=r.seq,
                event=json.loads(r.payload),
                record_hash=r.record_hash,
                previous_hash=r.previous_hash,
                recorded_at=r.recorded_at,
            )
            for r in page
        ],
        next_cursor=page[-1].seq if len(rows) > limit else None,
    )


@router.get(
    "/verify",
    response_model=VerificationOut,
    summary="Recompute the whole chain from the stored records",
)
async def verify(_: Reader, runtime: RuntimeDep) -> VerificationOut:
    async with runtime.sessions() as session:
        result = await session.stream(
            sa.select(
                RecordRow.seq,
                RecordRow.payload,
                RecordRow.payload_hash,
                RecordRow.previous_hash,
                RecordRow.record_hash,
            )
            .order_by(RecordRow.seq)
            .execution_options(yield_per=5000)
        )
        records = [domain.StoredRecord(*row) async for row in result]
    outcome = domain.verify(records)
    return VerificationOut(
        valid=outcome.valid,
        records_checked=outcome.records_checked,
        first_invalid_seq=outcome.first_invalid_seq,
        reason=outcome.reason,
    )
