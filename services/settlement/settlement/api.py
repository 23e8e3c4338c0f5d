"""Settlement HTTP routes."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import READERS, RuntimeDep, roles
from settlement import domain, handlers
from settlement.schemas import InstructionOut, ObligationOut, SsiIn, SsiOut
from settlement.tables import InstructionRow, ObligationRow, SsiRow

router = APIRouter(prefix="/v1", tags=["settlement"])
Reader = Annotated[Principal, Depends(roles(*READERS))]
ReferenceDataEditor = Annotated[Principal, Depends(roles(Role.OPS, Role.ADMIN))]


@router.get("/obligations", response_model=list[ObligationOut])
async def list_obligations(
    _: Reader, runtime: RuntimeDep, trade_id: str | None = None, state: str | None = None
) -> list[ObligationOut]:
    query = sa.select(ObligationRow).order_by(ObligationRow.created_at.desc()).limit(500)
    if trade_id is not None:
        query = query.where(ObligationRow.trade_id == trade_id)
    if state is not None:
        query = query.where(ObligationRow.state == state)
    async with runtime.sessions() as session:
        rows = (await session.execute(query)).scalars()
        return [ObligationOut.model_validate(r, from_attributes=True) for r in rows]


@router.get(
    "/exceptions",
    response_model=list[ObligationOut],
    summary="Obligations that cannot proceed (no SSI)",
)
async def list_exceptions(_: Reader, runtime: RuntimeDep) -> list[ObligationOut]:
    return await list_obligations(_, runtime, state="needs_ssi")


@router.get("/instructions/{instruction_id}", response_model=InstructionOut)
async def get_instruction(instruction_id: str, _: Reader, runtime: RuntimeDep) -> InstructionOut:
    async with runtime.sessions() as session:
        row = await session.get(InstructionRow, instruction_id)
    if row is None:
        raise Problem(404, "Not found", f"no instruction '{instruction_id}'")
    return InstructionOut.model_validate(row, from_attributes=True)


@router.post("/ssis", status_code=201, response_model=SsiOut, tags=["reference data"])
async def add_ssi(body: SsiIn, _: ReferenceDataEditor, runtime: RuntimeDep) -> SsiOut:
    try:
        row = await handlers.add_ssi(runtime.unit_of_work(), **body.model_dump())
    except domain.UnknownMarket as error:
        raise Problem(
            422,
            "Validation failed",
            f"market: {error}",
            errors=[{"field": "market", "reason": str(error)}],
        ) from None
    return SsiOut.model_validate(row, from_attributes=True)


@router.get("/ssis", response_model=list[SsiOut], tags=["reference data"])
async def list_ssis(
    _: Reader, runtime: RuntimeDep, counterparty_lei: str | None = None
) -> list[SsiOut]:
    query = sa.select(SsiRow).order_by(SsiRow.counterparty_lei, SsiRow.market, SsiRow.version)
    if counterparty_lei is not None:
        query = query.where(SsiRow.counterparty_lei == counterparty_lei)
    async with runtime.sessions() as session:
        return [
            SsiOut.model_validate(r, from_attributes=True)
            for r in (await session.execute(query)).scalars()
        ]
