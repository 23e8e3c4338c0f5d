"""Gateway HTTP routes: parse, authorise, call the use case, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import PrincipalDep, RuntimeDep, roles
from gateway import domain, handlers, repository
from gateway.schemas import TimelineEntry, TradeIn, TradeList, TradeOut
from gateway.tables import TimelineRow, TradeRow

router = APIRouter(prefix="/v1", tags=["trades"])

ANY_ROLE_THAT_READS_TRADES = (Role.TRADER, Role.COMPLIANCE, Role.OPS, Role.ADMIN)
TradeWriter = Annotated[Principal, Depends(roles(Role.TRADER, Role.OPS))]
TradeReader = Annotated[Principal, Depends(roles(*ANY_ROLE_THAT_READS_TRADES))]

PROBLEM = {"content": {"application/problem+json": {}}}
ERRORS = {
    401: {"description": "No valid API key", **PROBLEM},
    403: {"description": "The key's role or desk may not do this", **PROBLEM},
    422: {"description": "The trade is invalid; `errors` names each field and why", **PROBLEM},
}


def to_out(row: TradeRow, timeline: list[TimelineRow] | None = None) -> TradeOut:
    return TradeOut(
        trade_id=row.trade_id,
        client_trade_id=row.client_trade_id,
        account=row.account,
        side=row.side,
        isin=row.isin,
        quantity=row.quantity.normalize(),
        price=row.price.normalize(),
        currency=row.currency,
        trade_date=row.trade_date,
        trade_time=row.trade_time,
        venue=row.venue,
        counterparty_lei=row.counterparty_lei,
        settlement_type=row.settlement_type,
        state=row.state,
        received_at=row.received_at,
        timeline=[
            TimelineEntry(
                event_id=str(t.event_id),
                type=t.event_type,
                source=t.source,
                time=t.occurred_at,
                data=t.data,
            )
            for t in timeline or []
        ],
    )


@router.post(
    "/trades",
    status_code=201,
    response_model=TradeOut,
    responses={
        200: {"description": "A retry of a trade already captured", "model": TradeOut},
        409: {"description": "client_trade_id reused with a different body", **PROBLEM},
        **ERRORS,
    },
    summary="Capture a trade (idempotent on client_trade_id)",
)
async def capture_trade(
    body: TradeIn, principal: TradeWriter, runtime: RuntimeDep, response: Response
) -> TradeOut:
    try:
        result = await handlers.capture_trade(
            body.model_dump(), principal=principal, uow=runtime.unit_of_work()
        )
    except handlers.DuplicateWithDifferentBody as error:
        raise Problem(
            409,
            "Conflicting retry",
            str(error),
            field=error.field,
            trade_id=error.existing.trade_id,
        ) from None
    except domain.AccountNotAllowed as error:
        raise Problem(403, "Account not allowed", str(error), field="account") from None
    except domain.TradeDateInFuture as error:
        raise Problem(
            422,
            "Validation failed",
            f"trade_date: {error}",
            errors=[{"field": "trade_date", "reason": str(error)}],
        ) from None
    if not result.created:
        response.status_code = 200
    return to_out(result.trade)


async def _visible_accounts(principal: Principal, runtime: RuntimeDep) -> list[str] | None:
    if principal.role is not Role.TRADER:
        return None
    async with runtime.sessions() as session:
        return await repository.accounts_of_desk(session, principal.desk)


@router.get(
    "/trades/{trade_id}",
    response_model=TradeOut,
    summary="A trade, its state and timeline",
    responses={404: {"description": "No such trade (or not the desk's)", **PROBLEM}, **ERRORS},
)
async def get_trade(trade_id: str, principal: TradeReader, runtime: RuntimeDep) -> TradeOut:
    visible = await _visible_accounts(principal, runtime)
    async with runtime.sessions() as session:
        row = await repository.get_trade(session, trade_id)
        if row is None or (visible is not None and row.account not in visible):
            raise Problem(404, "Not found", f"no trade '{trade_id}'")
        events = await repository.timeline(session, trade_id)
    return to_out(row, events)


@router.get("/trades", response_model=TradeList, summary="Find trades", responses=ERRORS)
async def list_trades(
    principal: TradeReader,
    runtime: RuntimeDep,
    client_trade_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TradeList:
    visible = await _visible_accounts(principal, runtime)
    async with runtime.sessions() as session:
        rows = await repository.find_trades(
            session, client_trade_id=client_trade_id, accounts=visible, limit=limit
        )
    return TradeList(items=[to_out(row) for row in rows])


@router.get("/whoami", tags=["access"], summary="The key's name, role and desk")
async def whoami(principal: PrincipalDep) -> dict[str, str | None]:
    return {"name": principal.name, "role": principal.role.value, "desk": principal.desk}
