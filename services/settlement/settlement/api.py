"""Settlement HTTP routes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from sqlalchemy.dialects.postgresql import insert
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import READERS, RuntimeDep, roles
from settlement import domain, fails, handlers, runs
from settlement.schemas import (
    CounterpartyNettingIn,
    CounterpartyNettingOut,
    ExceptionOut,
    ExceptionResolutionIn,
    FailOut,
    InstructionOut,
    NettingRunIn,
    NettingRunOut,
    ObligationOut,
    PenaltySummaryOut,
    RefusedChangeOut,
    SsiIn,
    SsiOut,
    SsiUpdateIn,
)
from settlement.tables import (
    CounterpartyNettingRow,
    InstructionRow,
    NettingRunRow,
    ObligationRow,
    RefusedChangeRow,
    SsiRow,
)

router = APIRouter(prefix="/v1", tags=["settlement"])
Reader = Annotated[Principal, Depends(roles(*READERS))]
ReferenceDataEditor = Annotated[Principal, Depends(roles(Role.OPS, Role.ADMIN))]
Operator = Annotated[Principal, Depends(roles(Role.OPS, Role.ADMIN))]


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
        return [_obligation(r) for r in rows]


@router.get(
    "/exceptions",
    response_model=list[ExceptionOut],
    summary="Obligations operations must look at",
    description=(
        "Obligations that cannot proceed because the counterparty has no SSI for the market "
        "and asset class in force on the settlement date (kind needs_ssi; a bond trade "
        "needs a bond SSI, there is no fallback to the equity one; they leave the queue "
        "when one is added), and amendments or "
        "cancellations refused because the trade was already instructed (kind "
        "change_refused; they leave the queue when resolved). Newest first."
    ),
)
async def list_exceptions(_: Reader, runtime: RuntimeDep) -> list[ExceptionOut]:
    async with runtime.sessions() as session:
        waiting = (
            await session.execute(
                sa.select(ObligationRow)
                .where(ObligationRow.state == "needs_ssi")
                .order_by(ObligationRow.updated_at.desc())
                .limit(500)
            )
        ).scalars()
        items = [
            ExceptionOut(
                **_obligation(row).model_dump(), kind="needs_ssi", raised_at=row.updated_at
            )
            for row in waiting
        ]
        refused = await session.execute(
            sa.select(RefusedChangeRow, ObligationRow)
            .join(ObligationRow, ObligationRow.trade_id == RefusedChangeRow.trade_id)
            .where(RefusedChangeRow.resolved_at.is_(None))
            .order_by(RefusedChangeRow.refused_at.desc())
            .limit(500)
        )
        items += [
            ExceptionOut(
                **_obligation(row).model_dump(),
                kind="change_refused",
                raised_at=refusal.refused_at,
                exception_id=refusal.refusal_id,
                change=refusal.change,
                change_version=refusal.version,
                reason=refusal.reason,
                requested_reason=refusal.requested_reason,
            )
            for refusal, row in refused.tuples()
        ]
    return sorted(items, key=lambda item: item.raised_at, reverse=True)


@router.post(
    "/exceptions/{exception_id}/resolve",
    response_model=RefusedChangeOut,
    summary="Close a refused change once operations have dealt with it",
)
async def resolve_exception(
    exception_id: str, body: ExceptionResolutionIn, principal: Operator, runtime: RuntimeDep
) -> RefusedChangeOut:
    uow = runtime.unit_of_work()
    async with uow:
        row = await uow.session.get(RefusedChangeRow, exception_id, with_for_update=True)
        if row is None:
            raise Problem(404, "Not found", f"no refused change '{exception_id}'")
        if row.resolved_at is None:
            row.resolved_at = datetime.now(UTC)
            row.resolved_by = principal.actor
            row.resolution = body.resolution
            await uow.commit()
        elif row.resolution != body.resolution:
            raise Problem(
                409,
                "Already resolved",
                f"refused change '{exception_id}' was resolved by {row.resolved_by} at "
                f"{row.resolved_at.isoformat()}",
            )
    return RefusedChangeOut.model_validate(row, from_attributes=True)


def _obligation(row: ObligationRow) -> ObligationOut:
    return ObligationOut.model_validate(row, from_attributes=True)


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


@router.put("/ssis/{ssi_id}", status_code=201, response_model=SsiOut, tags=["reference data"])
async def update_ssi(
    ssi_id: int, body: SsiUpdateIn, _: ReferenceDataEditor, runtime: RuntimeDep
) -> SsiOut:
    """A new version of the SSI (same counterparty, market and asset class): the fields
    given, the others as in the latest version, in force from `effective_from` (not before
    the latest version's). Versions are never edited."""
    try:
        row = await handlers.update_ssi(
            runtime.unit_of_work(), ssi_id, **body.model_dump(exclude_none=True)
        )
    except domain.SsiNotFound as error:
        raise Problem(404, "Not found", str(error)) from None
    except domain.SsiEffectiveTooEarly as error:
        raise Problem(
            422,
            "Validation failed",
            f"effective_from: {error}",
            errors=[{"field": "effective_from", "reason": str(error)}],
        ) from None
    return SsiOut.model_validate(row, from_attributes=True)


@router.get("/ssis", response_model=list[SsiOut], tags=["reference data"])
async def list_ssis(
    _: Reader,
    runtime: RuntimeDep,
    counterparty_lei: str | None = None,
    market: str | None = None,
    asset_class: Literal["equity", "bond"] | None = None,
    as_of: date | None = None,
    all_versions: bool = False,
) -> list[SsiOut]:
    """Per key, the version in force on `as_of` (default today; a key with no version in
    force yet is left out), or every version with `all_versions=true`."""
    query = sa.select(SsiRow).order_by(
        SsiRow.counterparty_lei, SsiRow.market, SsiRow.asset_class, SsiRow.version
    )
    if counterparty_lei is not None:
        query = query.where(SsiRow.counterparty_lei == counterparty_lei)
    if market is not None:
        query = query.where(SsiRow.market == market)
    if asset_class is not None:
        query = query.where(SsiRow.asset_class == asset_class)
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    if not all_versions:
        on = as_of or datetime.now(UTC).date()
        by_key: dict[tuple[str, str, str], list[SsiRow]] = {}
        for r in rows:
            by_key.setdefault((r.counterparty_lei, r.market, r.asset_class), []).append(r)
        rows = [
            found
            for versions in by_key.values()
            if (found := domain.version_in_force(versions, on)) is not None
        ]
    return [SsiOut.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/netting-runs",
    status_code=201,
    response_model=NettingRunOut,
    tags=["netting"],
    summary="Net every ready obligation of a settlement date now",
    description=(
        "Nets, in one transaction, every obligation of the settlement date that is ready "
        "(cleared for its current version, SSI found, not cancelled, not yet instructed) "
        "into instructions: one per counterparty, ISIN, currency, date, SSI and payment "
        "type, or one per obligation for a counterparty with netting off. Posting again "
        "never instructs a trade twice: a run with nothing ready is recorded with no "
        "instructions. The automatic cycle (every SETTLEMENT_NETTING_INTERVAL_S seconds) "
        "runs the same thing for every date with ready obligations."
    ),
)
async def post_netting_run(
    body: NettingRunIn, principal: Operator, runtime: RuntimeDep
) -> NettingRunOut:
    run_id = await runs.run_netting(
        runtime.unit_of_work(),
        settlement_date=body.settlement_date,
        trigger="manual",
        actor=principal.actor,
        cutoff_note=body.cutoff_note,
    )
    return await _netting_run(runtime, run_id)


@router.get("/netting-runs/{run_id}", response_model=NettingRunOut, tags=["netting"])
async def get_netting_run(run_id: str, _: Reader, runtime: RuntimeDep) -> NettingRunOut:
    return await _netting_run(runtime, run_id)


async def _netting_run(runtime: RuntimeDep, run_id: str) -> NettingRunOut:
    async with runtime.sessions() as session:
        run = await session.get(NettingRunRow, run_id)
        if run is None:
            raise Problem(404, "Not found", f"no netting run '{run_id}'")
        instructions = (
            await session.execute(
                sa.select(InstructionRow)
                .where(InstructionRow.run_id == run_id)
                .order_by(InstructionRow.instruction_id)
            )
        ).scalars()
        return NettingRunOut(
            run_id=run.run_id,
            settlement_date=run.settlement_date,
            trigger=run.trigger,
            cutoff_note=run.cutoff_note,
            created_by=run.created_by,
            created_at=run.created_at,
            obligation_count=run.obligation_count,
            instruction_count=run.instruction_count,
            instructions=[
                InstructionOut.model_validate(r, from_attributes=True) for r in instructions
            ],
        )


@router.put(
    "/counterparties/{lei}/netting",
    response_model=CounterpartyNettingOut,
    tags=["netting"],
    summary="Switch netting on or off for a counterparty",
    description="Off: the counterparty's obligations settle gross, one instruction each, "
    "from the next netting run on. Every counterparty nets unless switched off.",
)
async def put_counterparty_netting(
    lei: str, body: CounterpartyNettingIn, principal: Operator, runtime: RuntimeDep
) -> CounterpartyNettingOut:
    try:
        lei = str(stdnum_lei.validate(lei))
    except StdnumError as error:
        raise Problem(
            422,
            "Validation failed",
            f"lei: not a valid LEI ({error})",
            errors=[{"field": "lei", "reason": f"not a valid LEI ({error})"}],
        ) from None
    now = datetime.now(UTC)
    values = {"enabled": body.enabled, "updated_by": principal.actor, "updated_at": now}
    uow = runtime.unit_of_work()
    async with uow:
        await uow.session.execute(
            insert(CounterpartyNettingRow)
            .values(counterparty_lei=lei, **values)
            .on_conflict_do_update(index_elements=["counterparty_lei"], set_=values)
        )
        await uow.commit()
    return CounterpartyNettingOut(counterparty_lei=lei, **values)


def _valid_lei(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(stdnum_lei.validate(value))
    except StdnumError as error:
        raise Problem(
            422,
            "Validation failed",
            f"{field}: not a valid LEI ({error})",
            errors=[{"field": field, "reason": f"not a valid LEI ({error})"}],
        ) from None


FAILS_DESCRIPTION = (
    "Every securities instruction the depository reported failed, or still pending "
    "(instructed, matched) after its intended settlement date, as of `as_of` (default "
    "today, UTC). The age is the number of business days of the market's calendar from the "
    "intended settlement date on that are over (0 on the date itself). For markets under "
    "the EU CSDR (FR, DE, NL; not the UK since Brexit, not the US) the cash penalty of "
    "Delegated Regulation (EU) 2017/389 accrued so far: per day of fail, reference value "
    "(quantity x trade price, not the CSDR closing price) x the daily rate of the asset "
    "class, or for lack of cash (MONY) the central bank overnight credit rate / 365; each "
    "day rounded to the currency's minor units half to even, then summed."
)


@router.get(
    "/fails",
    response_model=list[FailOut],
    tags=["fails"],
    summary="Failing instructions, their age and CSDR penalty",
    description=FAILS_DESCRIPTION,
)
async def list_fails(
    _: Reader,
    runtime: RuntimeDep,
    counterparty_lei: str | None = None,
    as_of: date | None = None,
) -> list[FailOut]:
    lei = _valid_lei("counterparty_lei", counterparty_lei)
    async with runtime.sessions() as session:
        return await fails.list_fails(session, as_of=as_of or fails.today(), counterparty_lei=lei)


@router.get(
    "/fails/penalties",
    response_model=list[PenaltySummaryOut],
    tags=["fails"],
    summary="Accrued CSDR penalties per counterparty and currency",
    description="The penalties of GET /v1/fails summed per counterparty and currency "
    "(fails without a penalty, outside CSDR, are not counted).",
)
async def list_fail_penalties(
    _: Reader,
    runtime: RuntimeDep,
    counterparty_lei: str | None = None,
    as_of: date | None = None,
) -> list[PenaltySummaryOut]:
    lei = _valid_lei("counterparty_lei", counterparty_lei)
    async with runtime.sessions() as session:
        found = await fails.list_fails(session, as_of=as_of or fails.today(), counterparty_lei=lei)
    return fails.penalties_per_counterparty(found)
