"""Gateway HTTP routes: parse, authorise, call the use case, shape the response."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import ValidationError

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import PrincipalDep, RuntimeDep, roles
from gateway import domain, handlers, repository
from gateway.schemas import (
    TRADE_EXAMPLE,
    AmendIn,
    BatchIn,
    BatchItem,
    BatchOut,
    CancelIn,
    FieldError,
    State,
    TimelineEntry,
    TradeIn,
    TradeList,
    TradeOut,
)
from gateway.tables import TimelineRow, TradeRow

router = APIRouter(prefix="/v1", tags=["trades"])

ID_PATTERN = r"^[A-Za-z0-9._:\-/]+$"
TradeId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]

ANY_ROLE_THAT_READS_TRADES = (Role.TRADER, Role.COMPLIANCE, Role.OPS, Role.ADMIN)
TradeWriter = Annotated[Principal, Depends(roles(Role.TRADER, Role.OPS))]
TradeReader = Annotated[Principal, Depends(roles(*ANY_ROLE_THAT_READS_TRADES))]


def _problem(title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "content": {
            "application/problem+json": {
                "example": {
                    "type": "about:blank",
                    "title": title,
                    "status": extra.pop("status"),
                    "detail": detail,
                    "instance": "/v1/trades",
                    **extra,
                }
            }
        }
    }


def _error(status: int, description: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **_problem(title, detail, status=status, **extra)}


UNAUTHENTICATED = _error(401, "No valid API key", "Not authenticated", "unknown or revoked API key")
FORBIDDEN = _error(
    403,
    "The key's role may not do this, or the account is not of its desk",
    "Forbidden",
    "role 'compliance' may not do this (needs: trader, ops)",
)
TOO_MANY = {
    **_error(
        429,
        "Over the key's rate limit; wait `Retry-After` seconds",
        "Too many requests",
        "rate limit of 200 requests/s for this key exceeded; retry after 1 s",
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
}
TOO_LARGE = _error(
    413,
    "The body is over the size limit",
    "Request too large",
    "the request body is over the limit of 1048576 bytes",
)
INVALID = _error(
    422,
    "Invalid input; `errors` names each field and the rule it breaks",
    "Validation failed",
    "isin: not a valid ISIN (The number's checksum or check digit is invalid.)",
    errors=[{"field": "isin", "reason": "not a valid ISIN"}],
)
NOT_FOUND = _error(404, "No such trade (or not one of the desk's)", "Not found", "no trade 'x'")
UNAVAILABLE = {
    **_error(
        503,
        "The database is unavailable or busy; nothing was applied, retry after `Retry-After`",
        "Service unavailable",
        "the database is unavailable or busy; nothing was applied, retry shortly",
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
}
ACCESS: dict[int | str, dict[str, Any]] = {
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    429: TOO_MANY,
    503: UNAVAILABLE,
}
WRITES: dict[int | str, dict[str, Any]] = {**ACCESS, 413: TOO_LARGE, 422: INVALID}

TRADE_OUT_EXAMPLE = {
    **TRADE_EXAMPLE,
    "trade_id": "6f1c2f55-5a8e-4c39-9b8e-2f3a1d0c9e11",
    "cusip": None,
    "state": "captured",
    "version": 1,
    "received_at": "2026-11-20T14:31:07.456Z",
    "timeline": [],
}


def _ok(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


def plain_decimal(value: Decimal) -> str:
    """100.00000000 -> "100", 0.00000001 -> "0.00000001": never an exponent."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_out(row: TradeRow, timeline: list[TimelineRow] | None = None) -> TradeOut:
    return TradeOut(
        trade_id=row.trade_id,
        client_trade_id=row.client_trade_id,
        account=row.account,
        side=row.side,
        isin=row.isin,
        cusip=row.cusip,
        quantity=plain_decimal(row.quantity),
        price=plain_decimal(row.price),
        currency=row.currency,
        trade_date=row.trade_date,
        trade_time=row.trade_time,
        venue=row.venue,
        counterparty_lei=row.counterparty_lei,
        settlement_type=row.settlement_type,
        state=row.state,  # type: ignore[arg-type]
        version=row.version,
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


def _invalid(errors: list[tuple[str, str]]) -> Problem:
    field, reason = errors[0]
    return Problem(
        422,
        "Validation failed",
        f"{field}: {reason}",
        errors=[{"field": f, "reason": r} for f, r in errors],
    )


def _refusal(outcome: handlers.Outcome) -> Problem:
    if outcome.status == 409:
        field = outcome.errors[0][0]
        return Problem(409, "Conflicting retry", outcome.detail, field=field)
    if outcome.status == 403:
        return Problem(403, "Account not allowed", outcome.detail, field="account")
    return _invalid(outcome.errors)


@router.post(
    "/trades",
    status_code=201,
    response_model=TradeOut,
    responses={
        201: _ok("The trade was captured", TRADE_OUT_EXAMPLE),
        200: {
            "description": "A retry of a trade already captured: the original trade",
            "model": TradeOut,
            **_ok("", TRADE_OUT_EXAMPLE),
        },
        409: _error(
            409,
            "client_trade_id reused with a different body; `field` is the first difference",
            "Conflicting retry",
            "client_trade_id 'FO-1' was already used for trade 6f1c… with a different 'quantity'",
            field="quantity",
        ),
        **WRITES,
    },
    summary="Capture a trade (idempotent on client_trade_id)",
)
async def capture_trade(
    body: TradeIn, principal: TradeWriter, runtime: RuntimeDep, response: Response
) -> TradeOut:
    [outcome] = await handlers.capture_trades(
        [(0, body.model_dump())], principal=principal, uow=runtime.unit_of_work()
    )
    if outcome.trade is None:
        raise _refusal(outcome)
    if not outcome.created:
        response.status_code = 200
    return to_out(outcome.trade)


def _item_errors(error: ValidationError) -> list[tuple[str, str]]:
    return [
        (".".join(str(p) for p in item["loc"]) or "body", str(item["msg"]))
        for item in error.errors()
    ]


@router.post(
    "/trades/batch",
    response_model=BatchOut,
    responses={
        200: _ok(
            "Every trade's outcome by index: created, existing (a retry) or rejected",
            {
                "created": 1,
                "existing": 0,
                "rejected": 1,
                "items": [
                    {
                        "index": 0,
                        "client_trade_id": "FO-2026-000123",
                        "status": "created",
                        "trade_id": "6f1c2f55-5a8e-4c39-9b8e-2f3a1d0c9e11",
                        "errors": [],
                    },
                    {
                        "index": 1,
                        "client_trade_id": "FO-2026-000124",
                        "status": "rejected",
                        "trade_id": None,
                        "errors": [{"field": "isin", "reason": "not a valid ISIN"}],
                    },
                ],
            },
        ),
        **WRITES,
    },
    summary="Capture up to 1,000 trades: valid ones together, invalid ones reported",
)
async def capture_batch(body: BatchIn, principal: TradeWriter, runtime: RuntimeDep) -> BatchOut:
    items: list[BatchItem] = []
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(body.trades):
        try:
            valid.append((index, TradeIn.model_validate(raw).model_dump()))
        except ValidationError as error:
            ctid = raw.get("client_trade_id")
            items.append(
                BatchItem(
                    index=index,
                    client_trade_id=ctid if isinstance(ctid, str) else None,
                    status="rejected",
                    errors=[FieldError(field=f, reason=r) for f, r in _item_errors(error)],
                )
            )
    outcomes = (
        await handlers.capture_trades(valid, principal=principal, uow=runtime.unit_of_work())
        if valid
        else []
    )
    for outcome in outcomes:
        items.append(
            BatchItem(
                index=outcome.index,
                client_trade_id=outcome.client_trade_id,
                status="rejected"
                if outcome.trade is None
                else ("created" if outcome.created else "existing"),
                trade_id=outcome.trade.trade_id if outcome.trade is not None else None,
                errors=[FieldError(field=f, reason=r) for f, r in outcome.errors],
            )
        )
    items.sort(key=lambda item: item.index)
    return BatchOut(
        created=sum(1 for i in items if i.status == "created"),
        existing=sum(1 for i in items if i.status == "existing"),
        rejected=sum(1 for i in items if i.status == "rejected"),
        items=items,
    )


async def _visible_accounts(principal: Principal, runtime: RuntimeDep) -> list[str] | None:
    if principal.role is not Role.TRADER:
        return None
    async with runtime.sessions() as session:
        return await repository.accounts_of_desk(session, principal.desk)


def _validate_terms(terms: dict[str, Any]) -> dict[str, Any]:
    try:
        return TradeIn.model_validate(terms).model_dump()
    except ValidationError as error:
        raise _invalid(_item_errors(error)) from None


CHANGE_REFUSED = _error(
    409,
    "The trade can no longer change (instructed, settled or cancelled)",
    "Change refused",
    "cannot amend trade: the trade is instructed: settlement has instructed it, so it can no "
    "longer change here; ask operations to unwind it at the depository",
    state="instructed",
)


@router.post(
    "/trades/{trade_id}/amend",
    response_model=TradeOut,
    responses={
        200: _ok(
            "The trade's new terms (version + 1), or as it was if nothing changed",
            {**TRADE_OUT_EXAMPLE, "quantity": "150", "version": 2},
        ),
        404: NOT_FOUND,
        409: CHANGE_REFUSED,
        **WRITES,
    },
    summary="Amend a trade's terms until settlement instructs it",
)
async def amend_trade(
    trade_id: TradeId, body: AmendIn, principal: TradeWriter, runtime: RuntimeDep
) -> TradeOut:
    visible = await _visible_accounts(principal, runtime)
    try:
        row, _changed = await handlers.amend_trade(
            trade_id,
            validate=_validate_terms,
            changes=body.changes(),
            reason=body.reason,
            principal=principal,
            visible=visible,
            uow=runtime.unit_of_work(),
        )
    except handlers.NotFound as error:
        raise Problem(404, "Not found", str(error)) from None
    except domain.ChangeNotAllowed as error:
        if error.field is not None:
            raise _invalid([(error.field, str(error))]) from None
        raise Problem(409, "Change refused", str(error)) from None
    except domain.InvalidTerms as error:
        raise _invalid(error.errors) from None
    return to_out(row)


@router.post(
    "/trades/{trade_id}/cancel",
    response_model=TradeOut,
    responses={
        200: _ok(
            "The cancelled trade (also for a repeated cancellation)",
            {**TRADE_OUT_EXAMPLE, "state": "cancelled"},
        ),
        404: NOT_FOUND,
        409: CHANGE_REFUSED,
        **WRITES,
    },
    summary="Cancel a trade until settlement instructs it",
)
async def cancel_trade(
    trade_id: TradeId, body: CancelIn, principal: TradeWriter, runtime: RuntimeDep
) -> TradeOut:
    visible = await _visible_accounts(principal, runtime)
    try:
        row, _changed = await handlers.cancel_trade(
            trade_id,
            reason=body.reason,
            principal=principal,
            visible=visible,
            uow=runtime.unit_of_work(),
        )
    except handlers.NotFound as error:
        raise Problem(404, "Not found", str(error)) from None
    except domain.ChangeNotAllowed as error:
        raise Problem(409, "Change refused", str(error)) from None
    return to_out(row)


@router.get(
    "/trades/{trade_id}",
    response_model=TradeOut,
    summary="A trade, its state and the timeline of every service's events",
    responses={
        200: _ok(
            "The trade",
            {
                **TRADE_OUT_EXAMPLE,
                "state": "settled",
                "timeline": [
                    {
                        "event_id": "0b6d5a3e-8d7c-4f7e-9f9d-1a2b3c4d5e6f",
                        "type": "trade.captured",
                        "source": "gateway",
                        "time": "2026-11-20T14:31:07.456Z",
                        "data": {"trade_id": "6f1c2f55-5a8e-4c39-9b8e-2f3a1d0c9e11"},
                    }
                ],
            },
        ),
        404: NOT_FOUND,
        422: INVALID,
        **ACCESS,
    },
)
async def get_trade(trade_id: TradeId, principal: TradeReader, runtime: RuntimeDep) -> TradeOut:
    visible = await _visible_accounts(principal, runtime)
    async with runtime.sessions() as session:
        row = await repository.get_trade(session, trade_id)
        if row is None or (visible is not None and row.account not in visible):
            raise Problem(404, "Not found", f"no trade '{trade_id}'")
        events = await repository.timeline(session, trade_id)
    return to_out(row, events)


def encode_cursor(row: TradeRow) -> str:
    raw = json.dumps([row.received_at.isoformat(), row.trade_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        received_at, trade_id = json.loads(base64.urlsafe_b64decode(padded))
        at = datetime.fromisoformat(received_at)
        if not isinstance(trade_id, str) or at.tzinfo is None or "\x00" in trade_id:
            raise ValueError("bad cursor")
        at.astimezone(UTC)
        return at, trade_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise Problem(
            422,
            "Validation failed",
            "cursor: not a cursor this service returned",
            errors=[{"field": "cursor", "reason": "not a cursor this service returned"}],
        ) from None


@router.get(
    "/trades",
    response_model=TradeList,
    summary="Find trades, newest first, a page at a time",
    responses={
        200: _ok("A page of trades", {"items": [TRADE_OUT_EXAMPLE], "next_cursor": "WyIy…"}),
        422: INVALID,
        **ACCESS,
    },
)
async def list_trades(
    principal: TradeReader,
    runtime: RuntimeDep,
    client_trade_id: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
    account: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
    state: State | None = None,
    trade_date: date | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TradeList:
    after = decode_cursor(cursor) if cursor is not None else None
    visible = await _visible_accounts(principal, runtime)
    async with runtime.sessions() as session:
        rows = await repository.find_trades(
            session,
            accounts=visible,
            client_trade_id=client_trade_id,
            account=account,
            state=state,
            trade_date=trade_date,
            after=after,
            limit=limit + 1,
        )
    page = rows[:limit]
    more = len(rows) > limit
    return TradeList(
        items=[to_out(row) for row in page],
        next_cursor=encode_cursor(page[-1]) if more else None,
    )


@router.get(
    "/whoami",
    tags=["access"],
    summary="The key's name, role and desk",
    responses={200: _ok("The key", {"name": "fo-eq", "role": "trader", "desk": "EQ"}), **ACCESS},
)
async def whoami(principal: PrincipalDep) -> dict[str, str | None]:
    return {"name": principal.name, "role": principal.role.value, "desk": principal.desk}
