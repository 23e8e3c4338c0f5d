"""Compliance HTTP routes: evaluations (one per trade version), holds and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import RuntimeDep, roles
from compliance_monitor.tables import AlertRow, EvaluationRow, HoldRow

router = APIRouter(prefix="/v1", tags=["compliance"])
Reader = Annotated[Principal, Depends(roles(Role.COMPLIANCE, Role.OPS, Role.ADMIN))]


class EvaluationOut(BaseModel):
    trade_id: str
    # The trade version evaluated: 1 at capture, +1 with each amendment.
    version: int
    account: str
    outcome: str
    results: list[dict[str, Any]]
    evaluated_at: datetime


class AlertOut(BaseModel):
    alert_id: str
    trade_id: str
    account: str
    # The trade version whose evaluation raised the alert.
    version: int
    rule: str
    detail: str
    state: str
    raised_at: datetime


class HoldOut(BaseModel):
    trade_id: str
    version: int
    account: str
    state: str
    rules: list[str]
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None


@router.get("/evaluations/{trade_id}", response_model=EvaluationOut)
async def evaluation(
    trade_id: str, _: Reader, runtime: RuntimeDep, version: int | None = None
) -> EvaluationOut:
    """The evaluation of the trade's latest version evaluated, or of `version`."""
    query = sa.select(EvaluationRow).where(EvaluationRow.trade_id == trade_id)
    if version is not None:
        query = query.where(EvaluationRow.version == version)
    async with runtime.sessions() as session:
        row = await session.scalar(query.order_by(EvaluationRow.version.desc()).limit(1))
    if row is None:
        what = f"version {version} of trade" if version is not None else "trade"
        raise Problem(404, "Not found", f"{what} '{trade_id}' has not been evaluated")
    return EvaluationOut.model_validate(row, from_attributes=True)


@router.get("/evaluations/{trade_id}/versions", response_model=list[EvaluationOut])
async def evaluation_history(trade_id: str, _: Reader, runtime: RuntimeDep) -> list[EvaluationOut]:
    """Every evaluation of the trade, oldest version first."""
    query = (
        sa.select(EvaluationRow)
        .where(EvaluationRow.trade_id == trade_id)
        .order_by(EvaluationRow.version)
    )
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    if not rows:
        raise Problem(404, "Not found", f"trade '{trade_id}' has not been evaluated")
    return [EvaluationOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/holds", response_model=list[HoldOut])
async def holds(
    _: Reader, runtime: RuntimeDep, trade_id: str | None = None, state: str | None = None
) -> list[HoldOut]:
    """Holds, newest first: one per held trade version; `open` until superseded by a newer
    version or ended by the trade's cancellation (`close_reason` says which)."""
    query = (
        sa.select(HoldRow)
        .order_by(HoldRow.opened_at.desc(), HoldRow.trade_id, HoldRow.version.desc())
        .limit(500)
    )
    if trade_id is not None:
        query = query.where(HoldRow.trade_id == trade_id)
    if state is not None:
        query = query.where(HoldRow.state == state)
    async with runtime.sessions() as session:
        return [
            HoldOut.model_validate(r, from_attributes=True)
            for r in (await session.execute(query)).scalars()
        ]


@router.get("/alerts", response_model=list[AlertOut])
async def alerts(
    _: Reader, runtime: RuntimeDep, trade_id: str | None = None, state: str | None = None
) -> list[AlertOut]:
    query = sa.select(AlertRow).order_by(AlertRow.raised_at.desc()).limit(500)
    if trade_id is not None:
        query = query.where(AlertRow.trade_id == trade_id)
    if state is not None:
        query = query.where(AlertRow.state == state)
    async with runtime.sessions() as session:
        return [
            AlertOut.model_validate(r, from_attributes=True)
            for r in (await session.execute(query)).scalars()
        ]
