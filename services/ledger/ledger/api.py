"""Ledger HTTP routes: the journal, balances (as of any instant), statements, the trial
balance, the chart of accounts, limits and the exceptions they raise."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Annotated

import iso4217
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum import isin as stdnum_isin
from stdnum.exceptions import ValidationError as StdnumError

from bo_common.auth import Principal, Role
from bo_common.problems import Problem
from bo_common.runtime import READERS, RuntimeDep, roles
from ledger.domain_accounts import asset_balances, client_account_names
from ledger.schemas import (
    AccountBalanceOut,
    AssetBalanceOut,
    BalancesOut,
    ChartAccountOut,
    EntryOut,
    ExceptionOut,
    LimitIn,
    LimitOut,
    LineOut,
    StatementLineOut,
    StatementOut,
    TrialBalanceOut,
    TrialBalanceRowOut,
)
from ledger.tables import ChartRow, EntryRow, ExceptionRow, LimitRow, LineRow

router = APIRouter(prefix="/v1", tags=["ledger"])
Reader = Annotated[Principal, Depends(roles(*READERS))]
# Limits are operations' reference data; compliance reads them and the exceptions.
Operator = Annotated[Principal, Depends(roles(Role.OPS, Role.ADMIN))]
ExceptionReader = Annotated[Principal, Depends(roles(Role.OPS, Role.COMPLIANCE, Role.ADMIN))]
AccountPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
STATEMENT_MAX_LINES = 10_000


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise Problem(
            422,
            "Validation failed",
            f"{field}: a time needs a UTC offset (e.g. 2026-11-20T14:31:07Z)",
            errors=[{"field": field, "reason": "a time needs a UTC offset"}],
        )
    return value.astimezone(UTC) if value is not None else None


# --- journal ------------------------------------------------------------------------------


@router.get("/journal", response_model=list[EntryOut])
async def journal(
    _: Reader, runtime: RuntimeDep, trade_id: Annotated[str, Query(min_length=1)]
) -> list[EntryOut]:
    """The trade's entries in the order they were booked, reversals included, each with
    the event that caused it."""
    async with runtime.sessions() as session:
        entries = (
            (
                await session.execute(
                    sa.select(EntryRow).where(EntryRow.trade_id == trade_id).order_by(EntryRow.seq)
                )
            )
            .scalars()
            .all()
        )
        lines = (
            (
                await session.execute(
                    sa.select(LineRow)
                    .where(LineRow.entry_id.in_([e.entry_id for e in entries]))
                    .order_by(LineRow.entry_id, LineRow.line_no)
                )
            )
            .scalars()
            .all()
        )
    by_entry: dict[str, list[LineOut]] = {}
    for x in lines:
        by_entry.setdefault(x.entry_id, []).append(
            LineOut(ledger_account=x.ledger_account, unit=x.unit, debit=x.debit, credit=x.credit)
        )
    return [
        EntryOut(
            entry_id=e.entry_id,
            trade_id=e.trade_id,
            account=e.account,
            kind=e.kind,
            version=e.version,
            reverses=e.reverses,
            posted_at=e.posted_at,
            effective_at=e.effective_at,
            event_id=e.event_id,
            event_type=e.event_type,
            lines=by_entry.get(e.entry_id, []),
        )
        for e in entries
    ]


# --- balances -----------------------------------------------------------------------------

# As of an instant T: the daily projection up to T's UTC day, plus the lines of T's day up
# to T (one index range). The work grows with the number of days with movements, not with
# the number of lines.
_AS_OF = """
    SELECT c.ledger_account, c.unit,
      COALESCE((SELECT sum(d.amount) FROM balance_days d
                WHERE d.ledger_account = c.ledger_account AND d.unit = c.unit
                  AND d.day < :day), 0)
      + COALESCE((SELECT sum(l.debit - l.credit) FROM journal_lines l
                  WHERE l.ledger_account = c.ledger_account AND l.unit = c.unit
                    AND l.effective_at >= :day_start AND l.effective_at {bound} :instant), 0)
    FROM ledger_accounts c
    WHERE c.ledger_account = ANY(:names)
    ORDER BY c.ledger_account, c.unit
"""
# One bound operator each (an OR of the two would not bound the index range).
_AS_OF_INCLUSIVE = sa.text(_AS_OF.format(bound="<="))
_AS_OF_EXCLUSIVE = sa.text(_AS_OF.format(bound="<"))


async def balances_as_of(
    session: AsyncSession, names: Sequence[str], instant: datetime, *, inclusive: bool = True
) -> list[tuple[str, str, Decimal]]:
    """Each (account, unit) of these ledger accounts with its balance from the lines
    effective at or before `instant` (before it when not `inclusive`)."""
    day = instant.astimezone(UTC).date()
    rows = await session.execute(
        _AS_OF_INCLUSIVE if inclusive else _AS_OF_EXCLUSIVE,
        {
            "names": list(names),
            "day": day,
            "day_start": datetime.combine(day, time(), tzinfo=UTC),
            "instant": instant,
        },
    )
    return [(a, u, b) for a, u, b in rows]


@router.get("/accounts/{account}/balances", response_model=BalancesOut)
async def balances(
    account: AccountPath,
    _: Reader,
    runtime: RuntimeDep,
    as_of: Annotated[
        datetime | None,
        Query(description="effective time (ISO 8601 with offset); now when left out"),
    ] = None,
) -> BalancesOut:
    """Per asset, the settled and the pending balance of the client account at `as_of`:
    every line whose effective time is at or before it, including lines recorded after it
    with an earlier effective time (a late posting corrects the past it belongs to)."""
    instant = _aware(as_of, "as_of") or datetime.now(UTC)
    async with runtime.sessions() as session:
        if as_of is None:
            result = await session.execute(
                sa.text(
                    "SELECT ledger_account, unit, balance FROM account_balances "
                    "WHERE ledger_account = ANY(:names) ORDER BY 1, 2"
                ),
                {"names": list(client_account_names(account))},
            )
            rows = [(a, u, b) for a, u, b in result]
        else:
            rows = await balances_as_of(session, client_account_names(account), instant)
    if not rows:
        known = await _known_account(runtime, account)
        if not known:
            raise Problem(404, "Not found", f"the ledger has no account '{account}'")
    return BalancesOut(
        account=account,
        as_of=instant,
        assets=[
            AssetBalanceOut(
                unit=a.unit,
                asset_class=a.asset_class,
                settled=a.settled,
                pending=a.pending,
                position=a.position,
            )
            for a in asset_balances(rows)
        ],
        accounts=[AccountBalanceOut(ledger_account=a, unit=u, balance=b) for a, u, b in rows],
    )


async def _known_account(runtime: RuntimeDep, account: str) -> bool:
    async with runtime.sessions() as session:
        return (
            await session.scalar(
                sa.select(sa.literal(True)).where(
                    ChartRow.ledger_account.in_(client_account_names(account))
                )
            )
        ) is not None


@router.get("/accounts/{account}/statement", response_model=StatementOut)
async def statement(
    account: AccountPath,
    _: Reader,
    runtime: RuntimeDep,
    period_from: Annotated[datetime, Query(alias="from", description="effective time, inclusive")],
    period_to: Annotated[datetime, Query(alias="to", description="effective time, exclusive")],
    unit: Annotated[str | None, Query(description="one currency or ISIN")] = None,
) -> StatementOut:
    """Opening balances at `from`, every line effective in [from, to) in effective-time
    order with the running balance of its ledger account, and closing balances."""
    start = _aware(period_from, "from") or period_from
    end = _aware(period_to, "to") or period_to
    if end <= start:
        raise Problem(
            422,
            "Validation failed",
            "to: must be after from",
            errors=[{"field": "to", "reason": "must be after from"}],
        )
    names = client_account_names(account)
    async with runtime.sessions() as session:
        opening = [
            row
            for row in await balances_as_of(session, names, start, inclusive=False)
            if unit is None or row[1] == unit
        ]
        query = (
            sa.select(
                LineRow.effective_at,
                EntryRow.posted_at,
                LineRow.entry_id,
                EntryRow.trade_id,
                EntryRow.kind,
                LineRow.ledger_account,
                LineRow.unit,
                LineRow.debit,
                LineRow.credit,
            )
            .join(EntryRow, EntryRow.entry_id == LineRow.entry_id)
            .where(
                LineRow.ledger_account.in_(names),
                LineRow.effective_at >= start,
                LineRow.effective_at < end,
            )
            .order_by(LineRow.effective_at, EntryRow.seq, LineRow.line_no)
            .limit(STATEMENT_MAX_LINES + 1)
        )
        if unit is not None:
            query = query.where(LineRow.unit == unit)
        lines = (await session.execute(query)).all()
    if len(lines) > STATEMENT_MAX_LINES:
        raise Problem(
            422,
            "Period too long",
            f"more than {STATEMENT_MAX_LINES} lines in the period: ask for a shorter one",
            errors=[{"field": "to", "reason": f"over {STATEMENT_MAX_LINES} lines"}],
        )
    running = {(a, u): b for a, u, b in opening}
    out: list[StatementLineOut] = []
    for effective_at, posted_at, entry_id, trade_id, kind, ledger_account, line_unit, d, c in lines:
        key = (ledger_account, line_unit)
        running[key] = running.get(key, Decimal(0)) + d - c
        out.append(
            StatementLineOut(
                effective_at=effective_at,
                posted_at=posted_at,
                entry_id=entry_id,
                trade_id=trade_id,
                kind=kind,
                ledger_account=ledger_account,
                unit=line_unit,
                debit=d,
                credit=c,
                balance=running[key],
            )
        )
    return StatementOut(
        account=account,
        period_from=start,
        period_to=end,
        opening=[AccountBalanceOut(ledger_account=a, unit=u, balance=b) for a, u, b in opening],
        lines=out,
        closing=[
            AccountBalanceOut(ledger_account=a, unit=u, balance=b)
            for (a, u), b in sorted(running.items())
        ],
    )


@router.get("/trial-balance", response_model=TrialBalanceOut, response_model_exclude_none=True)
async def trial_balance(
    _: Reader,
    runtime: RuntimeDep,
    accounts: Annotated[bool, Query(description="also list every account's balance")] = False,
) -> TrialBalanceOut:
    """Per unit, the sum of every account's balance: zero in a balanced book; any unit
    that is not is named in `non_zero_units`."""
    async with runtime.sessions() as session:
        totals = {
            unit: total
            for unit, total in await session.execute(
                sa.text(
                    "SELECT unit, sum(balance) FROM account_balances GROUP BY unit ORDER BY unit"
                )
            )
        }
        rows = None
        if accounts:
            result = await session.execute(
                sa.text(
                    "SELECT ledger_account, unit, balance FROM account_balances "
                    "WHERE balance <> 0 ORDER BY 1, 2"
                )
            )
            rows = [TrialBalanceRowOut(ledger_account=a, unit=u, balance=b) for a, u, b in result]
    non_zero = [unit for unit, total in totals.items() if total != 0]
    return TrialBalanceOut(
        balanced=not non_zero, totals_by_unit=totals, non_zero_units=non_zero, rows=rows
    )


@router.get("/chart", response_model=list[ChartAccountOut])
async def chart(
    _: Reader,
    runtime: RuntimeDep,
    owner: str | None = None,
    account_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[ChartAccountOut]:
    """The chart of accounts: every ledger account and unit with its type and normal side."""
    query = sa.select(ChartRow).order_by(ChartRow.ledger_account, ChartRow.unit).limit(limit)
    if owner is not None:
        query = query.where(ChartRow.owner == owner)
    if account_type is not None:
        query = query.where(ChartRow.account_type == account_type)
    async with runtime.sessions() as session:
        rows = (await session.execute(query)).scalars().all()
    return [
        ChartAccountOut(
            ledger_account=r.ledger_account,
            unit=r.unit,
            account_type=r.account_type,
            normal_side=r.normal_side,
            owner=r.owner,
            asset_class=r.asset_class,
            phase=r.phase,
            created_at=r.created_at,
        )
        for r in rows
    ]


# --- limits and exceptions ----------------------------------------------------------------


def _unit(value: str) -> str:
    """A currency (ISO 4217) or an ISIN (check digit), as the journal names units."""
    code = value.strip().upper()
    if len(code) == 3:
        try:
            iso4217.Currency(code)
        except (ValueError, KeyError):
            pass
        else:
            return code
    try:
        return str(stdnum_isin.validate(code))
    except StdnumError as error:
        raise Problem(
            422,
            "Validation failed",
            f"unit: not an ISO 4217 currency nor a valid ISIN ({error})",
            errors=[{"field": "unit", "reason": "not an ISO 4217 currency nor a valid ISIN"}],
        ) from None


def _limit_out(row: LimitRow) -> LimitOut:
    return LimitOut(
        account=row.account,
        unit=row.unit,
        min_position=row.min_position,
        set_by=row.set_by,
        set_at=row.set_at,
    )


@router.put("/accounts/{account}/limits/{unit}", response_model=LimitOut)
async def set_limit(
    account: AccountPath, unit: str, body: LimitIn, principal: Operator, runtime: RuntimeDep
) -> LimitOut:
    """The lowest trade-date position the client account may have in the unit (0 on a
    currency: no overdraft; 0 on an ISIN: no short sale). A posting of new terms that
    would go below it is refused into the exception queue."""
    code = _unit(unit)
    if not body.min_position.is_finite():
        raise Problem(
            422,
            "Validation failed",
            "min_position: must be a finite number",
            errors=[{"field": "min_position", "reason": "must be a finite number"}],
        )
    values = {
        "account": account,
        "unit": code,
        "min_position": body.min_position,
        "set_by": principal.actor,
        "set_at": datetime.now(UTC),
    }
    async with runtime.sessions() as session, session.begin():
        row = (
            await session.execute(
                insert(LimitRow)
                .values(**values)
                .on_conflict_do_update(
                    index_elements=[LimitRow.account, LimitRow.unit],
                    set_={k: values[k] for k in ("min_position", "set_by", "set_at")},
                )
                .returning(LimitRow)
            )
        ).scalar_one()
        return _limit_out(row)


@router.delete("/accounts/{account}/limits/{unit}", status_code=204)
async def remove_limit(account: AccountPath, unit: str, _: Operator, runtime: RuntimeDep) -> None:
    code = _unit(unit)
    async with runtime.sessions() as session, session.begin():
        removed = await session.scalar(
            sa.delete(LimitRow)
            .where(LimitRow.account == account, LimitRow.unit == code)
            .returning(LimitRow.unit)
        )
    if removed is None:
        raise Problem(404, "Not found", f"no limit on {account} in {code}")


@router.get("/accounts/{account}/limits", response_model=list[LimitOut])
async def list_limits(account: AccountPath, _: Reader, runtime: RuntimeDep) -> list[LimitOut]:
    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                sa.select(LimitRow).where(LimitRow.account == account).order_by(LimitRow.unit)
            )
        ).scalars()
        return [_limit_out(r) for r in rows]


@router.get("/exceptions", response_model=list[ExceptionOut])
async def list_exceptions(
    _: ExceptionReader,
    runtime: RuntimeDep,
    account: str | None = None,
    trade_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ExceptionOut]:
    """Postings refused by an account limit, newest first."""
    query = sa.select(ExceptionRow).order_by(ExceptionRow.seq.desc()).limit(limit)
    if account is not None:
        query = query.where(ExceptionRow.account == account)
    if trade_id is not None:
        query = query.where(ExceptionRow.trade_id == trade_id)
    async with runtime.sessions() as session:
        rows = (await session.execute(query)).scalars().all()
    return [
        ExceptionOut(
            exception_id=r.exception_id,
            trade_id=r.trade_id,
            account=r.account,
            version=r.version,
            event_id=r.event_id,
            event_type=r.event_type,
            reason=r.reason,
            breaches=r.breaches,
            lines=r.lines,
            raised_at=r.raised_at,
        )
        for r in rows
    ]
