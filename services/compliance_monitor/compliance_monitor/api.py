"""Compliance HTTP routes: rules (versioned), the restricted and watch lists, counterparty
names, evaluations (one per trade version), alerts and their workflow, holds and their
four-eyes release or rejection. Reads: compliance, ops, admin; changes: compliance."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import READERS, RuntimeDep, roles
from bo_common.unit_of_work import UnitOfWork
from compliance_monitor import casework, domain, domain_rules
from compliance_monitor.schemas import (
    AlertActionOut,
    AlertDetailOut,
    AlertOut,
    AlertPage,
    CounterpartyIn,
    CounterpartyOut,
    DecisionIn,
    DecisionOut,
    EvaluationOut,
    HoldOut,
    ListEntryOut,
    ProposalOut,
    RestrictIn,
    RuleChangeIn,
    RuleName,
    RuleOut,
    WatchIn,
    _isin,
    _lei,
)
from compliance_monitor.tables import (
    AlertActionRow,
    AlertRow,
    CounterpartyRow,
    EvaluationRow,
    HoldRow,
    ListEntryRow,
    ProposalRow,
    RuleVersionRow,
)

router = APIRouter(prefix="/v1", tags=["compliance"])
Reader = Annotated[Principal, Depends(roles(*READERS))]
# Only compliance officers change rules and lists and decide on alerts and holds.
Officer = Annotated[Principal, Depends(roles(Role.COMPLIANCE))]
ReasonQuery = Annotated[str, Query(min_length=3, max_length=2000)]


@asynccontextmanager
async def _case(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    """A unit of work whose domain refusals become problems (never a 500)."""
    uow = runtime.unit_of_work()
    async with uow:
        try:
            yield uow
        except casework.NotFound as error:
            raise Problem(404, "Not found", str(error)) from None
        except domain.FourEyesViolation as error:
            raise Problem(403, "Four eyes", str(error)) from None
        except (casework.RuleKindRequired, casework.RuleKindFixed) as error:
            raise _invalid("kind", str(error)) from None
        except domain_rules.UnknownRuleKind as error:
            raise _invalid("kind", str(error)) from None
        except domain_rules.InvalidParameters as error:
            raise Problem(
                422,
                "Validation failed",
                str(error),
                errors=[{"field": f, "reason": r} for f, r in error.errors],
            ) from None
        except domain.ComplianceError as error:
            # A hold that is not open, a proposal already pending or missing, an alert
            # in a state that does not allow the step: the request conflicts with the case.
            raise Problem(409, "Conflict", str(error)) from None


def _invalid(field: str, reason: str) -> Problem:
    return Problem(
        422,
        "Validation failed",
        f"{field}: {reason}",
        errors=[{"field": field, "reason": reason}],
    )


def _validated(field: str, value: str, check: Callable[[str], str]) -> str:
    try:
        return check(value)
    except ValueError as error:
        raise _invalid(field, str(error)) from None


# -- rules ------------------------------------------------------------------------------------


def _rule(row: RuleVersionRow) -> RuleOut:
    return RuleOut.model_validate(row, from_attributes=True)


@router.get("/rules", response_model=list[RuleOut], tags=["rules"])
async def list_rules(_: Reader, runtime: RuntimeDep) -> list[RuleOut]:
    """Every rule's current version (enabled or not)."""
    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                sa.select(RuleVersionRow)
                .distinct(RuleVersionRow.name)
                .order_by(RuleVersionRow.name, RuleVersionRow.version.desc())
            )
        ).scalars()
        return [_rule(r) for r in rows]


@router.get("/rules/{name}/versions", response_model=list[RuleOut], tags=["rules"])
async def rule_versions(
    name: Annotated[str, Path(max_length=64)], _: Reader, runtime: RuntimeDep
) -> list[RuleOut]:
    """Every version of the rule, oldest first: who changed what, when and why."""
    async with runtime.sessions() as session:
        rows = list(
            (
                await session.execute(
                    sa.select(RuleVersionRow)
                    .where(RuleVersionRow.name == name)
                    .order_by(RuleVersionRow.version)
                )
            ).scalars()
        )
    if not rows:
        raise Problem(404, "Not found", f"no rule '{name}'")
    return [_rule(r) for r in rows]


@router.get("/rules/{name}", response_model=RuleOut, tags=["rules"])
async def get_rule(
    name: Annotated[str, Path(max_length=64)], _: Reader, runtime: RuntimeDep
) -> RuleOut:
    return (await rule_versions(name, _, runtime))[-1]


@router.put(
    "/rules/{name}",
    response_model=RuleOut,
    tags=["rules"],
    summary="Change (or create) a rule: a new version, for the trades of later events only",
)
async def change_rule(
    name: Annotated[RuleName, Path()],
    body: RuleChangeIn,
    principal: Officer,
    runtime: RuntimeDep,
) -> RuleOut:
    async with _case(runtime) as uow:
        row = await casework.change_rule(
            uow,
            name=name,
            kind=body.kind,
            enabled=body.enabled,
            action=body.action,
            severity=body.severity,
            parameters=body.parameters,
            reason=body.reason,
            actor=principal.actor,
        )
    return _rule(row)


# -- lists ------------------------------------------------------------------------------------


async def _entries(
    runtime: RuntimeDep, lists: tuple[str, ...], removed: bool
) -> list[ListEntryOut]:
    query = sa.select(ListEntryRow).where(ListEntryRow.list.in_(lists))
    if not removed:
        query = query.where(ListEntryRow.removed_at.is_(None))
    async with runtime.sessions() as session:
        rows = (await session.execute(query.order_by(ListEntryRow.added_at))).scalars()
        return [ListEntryOut.model_validate(r, from_attributes=True) for r in rows]


def _entry_response(row: ListEntryRow, created: bool) -> JSONResponse:
    return JSONResponse(
        ListEntryOut.model_validate(row, from_attributes=True).model_dump(mode="json"),
        status_code=201 if created else 200,
    )


@router.get("/restricted-list", response_model=list[ListEntryOut], tags=["lists"])
async def restricted_list(
    _: Reader, runtime: RuntimeDep, include_removed: bool = False
) -> list[ListEntryOut]:
    return await _entries(runtime, ("restricted",), include_removed)


@router.put(
    "/restricted-list/{isin}",
    response_model=ListEntryOut,
    status_code=201,
    tags=["lists"],
    summary="Restrict an ISIN: trades in it from now on are held (200 if already listed)",
)
async def restrict(
    isin: str, body: RestrictIn, principal: Officer, runtime: RuntimeDep
) -> Response:
    isin = _validated("isin", isin, _isin)
    async with _case(runtime) as uow:
        row, created = await casework.add_list_entry(
            uow, list_="restricted", value=isin, reason=body.reason, actor=principal.actor
        )
    return _entry_response(row, created)


@router.delete("/restricted-list/{isin}", response_model=ListEntryOut, tags=["lists"])
async def unrestrict(
    isin: str, reason: ReasonQuery, principal: Officer, runtime: RuntimeDep
) -> ListEntryOut:
    """End the ISIN's entry (kept, with who removed it and why)."""
    isin = _validated("isin", isin, _isin)
    async with _case(runtime) as uow:
        row = await casework.remove_list_entry(
            uow, list_="restricted", value=isin, reason=reason, actor=principal.actor
        )
    return ListEntryOut.model_validate(row, from_attributes=True)


@router.get("/watch-list", response_model=list[ListEntryOut], tags=["lists"])
async def watch_list(
    _: Reader, runtime: RuntimeDep, include_removed: bool = False
) -> list[ListEntryOut]:
    return await _entries(runtime, ("watch_lei", "watch_name"), include_removed)


@router.post(
    "/watch-list",
    response_model=ListEntryOut,
    status_code=201,
    tags=["lists"],
    summary="Watch a counterparty LEI, or a name matched fuzzily against counterparty names",
)
async def watch(body: WatchIn, principal: Officer, runtime: RuntimeDep) -> Response:
    list_, value = ("watch_lei", body.lei) if body.lei is not None else ("watch_name", body.name)
    assert value is not None
    async with _case(runtime) as uow:
        row, created = await casework.add_list_entry(
            uow, list_=list_, value=value, reason=body.reason, actor=principal.actor
        )
    return _entry_response(row, created)


@router.delete("/watch-list/{entry_id}", response_model=ListEntryOut, tags=["lists"])
async def unwatch(
    entry_id: Annotated[str, Path(max_length=64)],
    reason: ReasonQuery,
    principal: Officer,
    runtime: RuntimeDep,
) -> ListEntryOut:
    async with _case(runtime) as uow:
        entry = await uow.session.get(ListEntryRow, entry_id)
        if entry is None or entry.list not in ("watch_lei", "watch_name"):
            raise casework.NotFound(f"no watch-list entry '{entry_id}'")
        row = await casework.remove_list_entry(
            uow, list_=entry.list, value=entry.value, reason=reason, actor=principal.actor
        )
    return ListEntryOut.model_validate(row, from_attributes=True)


@router.get("/counterparties", response_model=list[CounterpartyOut], tags=["lists"])
async def counterparties(_: Reader, runtime: RuntimeDep) -> list[CounterpartyOut]:
    async with runtime.sessions() as session:
        rows = await session.execute(sa.select(CounterpartyRow).order_by(CounterpartyRow.lei))
        return [CounterpartyOut.model_validate(r, from_attributes=True) for r in rows.scalars()]


@router.put(
    "/counterparties/{lei}",
    response_model=CounterpartyOut,
    tags=["lists"],
    summary="The counterparty's legal name, screened against the watched names",
)
async def name_counterparty(
    lei: str, body: CounterpartyIn, principal: Officer, runtime: RuntimeDep
) -> CounterpartyOut:
    lei = _validated("lei", lei, _lei)
    async with _case(runtime) as uow:
        row = await casework.name_counterparty(uow, lei=lei, name=body.name, actor=principal.actor)
    return CounterpartyOut.model_validate(row, from_attributes=True)


# -- evaluations ------------------------------------------------------------------------------


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


# -- holds ------------------------------------------------------------------------------------


async def _holds_out(session: AsyncSession, rows: list[HoldRow]) -> list[HoldOut]:
    proposals: dict[tuple[str, int], list[ProposalOut]] = {}
    if rows:
        found = await session.execute(
            sa.select(ProposalRow)
            .where(ProposalRow.trade_id.in_({r.trade_id for r in rows}))
            .order_by(ProposalRow.proposed_at)
        )
        for p in found.scalars():
            proposals.setdefault((p.trade_id, p.version), []).append(
                ProposalOut.model_validate(p, from_attributes=True)
            )
    return [
        HoldOut.model_validate(r, from_attributes=True).model_copy(
            update={"proposals": proposals.get((r.trade_id, r.version), [])}
        )
        for r in rows
    ]


HoldState = Literal["open", "released", "rejected", "closed"]


@router.get("/holds", response_model=list[HoldOut], tags=["holds"])
async def holds(
    _: Reader,
    runtime: RuntimeDep,
    trade_id: Annotated[str | None, Query(max_length=64)] = None,
    state: HoldState | None = None,
) -> list[HoldOut]:
    """Holds, newest first: one per held trade version, `open` until two officers release
    or reject it, or until a newer version supersedes it or the trade is cancelled
    (`closed`; `close_reason` says which), with the four-eyes proposals on it."""
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
        rows = list((await session.execute(query)).scalars())
        return await _holds_out(session, rows)


# -- alerts -----------------------------------------------------------------------------------

AlertStateFilter = Literal["open", "assigned", "escalated", "closed"]
SeverityFilter = Literal["low", "medium", "high", "critical"]


def _encode_cursor(row: AlertRow) -> str:
    raw = json.dumps([row.raised_at.isoformat(), row.alert_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raised_at, alert_id = json.loads(base64.urlsafe_b64decode(padded))
        at = datetime.fromisoformat(raised_at)
        if not isinstance(alert_id, str) or at.tzinfo is None:
            raise ValueError("bad cursor")
        return at.astimezone(UTC), alert_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise _invalid("cursor", "not a cursor this service returned") from None


@router.get("/alerts", response_model=AlertPage, tags=["alerts"])
async def alerts(
    _: Reader,
    runtime: RuntimeDep,
    trade_id: Annotated[str | None, Query(max_length=64)] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    state: AlertStateFilter | None = None,
    severity: SeverityFilter | None = None,
    blocking: bool | None = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    raised_from: datetime | None = None,
    raised_to: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertPage:
    """Alerts, newest first, a page at a time (`next_cursor` to the next page)."""
    for name, value in (("raised_from", raised_from), ("raised_to", raised_to)):
        if value is not None and value.tzinfo is None:
            raise _invalid(name, "needs a UTC offset (e.g. 2026-12-02T10:00:00Z)")
    query = sa.select(AlertRow)
    filters = {
        AlertRow.trade_id: trade_id,
        AlertRow.account: account,
        AlertRow.rule: rule,
        AlertRow.state: state,
        AlertRow.severity: severity,
        AlertRow.blocking: blocking,
        AlertRow.assignee: assignee,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if raised_from is not None:
        query = query.where(AlertRow.raised_at >= raised_from)
    if raised_to is not None:
        query = query.where(AlertRow.raised_at < raised_to)
    if cursor is not None:
        at, alert_id = _decode_cursor(cursor)
        query = query.where(sa.tuple_(AlertRow.raised_at, AlertRow.alert_id) < (at, alert_id))
    query = query.order_by(AlertRow.raised_at.desc(), AlertRow.alert_id.desc()).limit(limit + 1)
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    page = rows[:limit]
    return AlertPage(
        items=[AlertOut.model_validate(r, from_attributes=True) for r in page],
        next_cursor=_encode_cursor(page[-1]) if len(rows) > limit else None,
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut, tags=["alerts"])
async def alert(
    alert_id: Annotated[str, Path(max_length=64)], _: Reader, runtime: RuntimeDep
) -> AlertDetailOut:
    """The alert, its evidence and its workflow history."""
    async with runtime.sessions() as session:
        row = await session.get(AlertRow, alert_id)
        if row is None:
            raise Problem(404, "Not found", f"no alert '{alert_id}'")
        history = (
            await session.execute(
                sa.select(AlertActionRow)
                .where(AlertActionRow.alert_id == alert_id)
                .order_by(AlertActionRow.at)
            )
        ).scalars()
        return AlertDetailOut.model_validate(
            {
                **AlertOut.model_validate(row, from_attributes=True).model_dump(),
                "history": [
                    AlertActionOut.model_validate(h, from_attributes=True) for h in history
                ],
            }
        )


@router.post(
    "/alerts/{alert_id}/decision",
    response_model=DecisionOut,
    tags=["alerts"],
    summary="Work an alert, or release or reject the trade it holds (four eyes)",
)
async def decide(
    alert_id: Annotated[str, Path(max_length=64)],
    body: DecisionIn,
    principal: Officer,
    runtime: RuntimeDep,
) -> DecisionOut:
    async with _case(runtime) as uow:
        if body.action in ("assign", "escalate", "close"):
            worked = await casework.work_alert(
                uow,
                alert_id=alert_id,
                action=body.action,  # type: ignore[arg-type]
                reason=body.reason,
                assignee=body.assignee,
                principal=principal,
            )
        elif body.action in ("propose_release", "propose_reject"):
            worked = await casework.propose(
                uow,
                alert_id=alert_id,
                decision="release" if body.action == "propose_release" else "reject",
                reason=body.reason,
                principal=principal,
            )
        elif body.action == "approve":
            worked = await casework.approve(
                uow, alert_id=alert_id, reason=body.reason, principal=principal
            )
        else:
            worked = await casework.decline(
                uow, alert_id=alert_id, reason=body.reason, principal=principal
            )
    async with runtime.sessions() as session:
        alert_row = await session.get(AlertRow, alert_id)
        hold = await session.get(HoldRow, (worked.alert.trade_id, worked.alert.version))
        holds_out = await _holds_out(session, [hold] if hold is not None else [])
    assert alert_row is not None
    return DecisionOut(
        alert=AlertOut.model_validate(alert_row, from_attributes=True),
        proposal=ProposalOut.model_validate(worked.proposal, from_attributes=True)
        if worked.proposal is not None
        else None,
        hold=holds_out[0] if holds_out else None,
    )
