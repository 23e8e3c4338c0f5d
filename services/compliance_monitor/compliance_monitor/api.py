"""Compliance HTTP routes: evaluations and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import RuntimeDep, roles
from compliance_monitor.tables import AlertRow, EvaluationRow

router = APIRouter(prefix="/v1", tags=["compliance"])
Reader = Annotated[Principal, Depends(roles(Role.COMPLIANCE, Role.OPS, Role.ADMIN))]


class EvaluationOut(BaseModel):
    trade_id: str
    account: str
    outcome: str
    results: list[dict[str, Any]]
    evaluated_at: datetime


class AlertOut(BaseModel):
    alert_id: str
    trade_id: str
    account: str
    rule: str
    detail: str
    state: str
    raised_at: datetime


@router.get("/evaluations/{trade_id}", response_model=EvaluationOut)
async def evaluation(trade_id: str, _: Reader, runtime: RuntimeDep) -> EvaluationOut:
    async with runtime.sessions() as session:
        row = await session.get(EvaluationRow, trade_id)
    if row is None:
        raise Problem(404, "Not found", f"trade '{trade_id}' has not been evaluated")
    return EvaluationOut.model_validate(row, from_attributes=True)


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
