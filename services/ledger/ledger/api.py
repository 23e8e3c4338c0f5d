"""Ledger HTTP routes: the journal, balances and the trial balance."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bo_common.auth import Principal
from bo_common.runtime import READERS, RuntimeDep, roles
from ledger.tables import EntryRow, LineRow

router = APIRouter(prefix="/v1", tags=["ledger"])
Reader = Annotated[Principal, Depends(roles(*READERS))]


class LineOut(BaseModel):
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal


class EntryOut(BaseModel):
    entry_id: str
    trade_id: str
    account: str
    kind: str
    # The trade version the entry books (a reversal: the version of the entry it reverses).
    version: int
    # For a reversal, the entry it reverses.
    reverses: str | None
    posted_at: datetime
    lines: list[LineOut]


class BalanceOut(BaseModel):
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal
    balance: Decimal


class TrialBalanceOut(BaseModel):
    balanced: bool
    totals_by_unit: dict[str, Decimal]
    rows: list[BalanceOut]


@router.get("/journal", response_model=list[EntryOut])
async def journal(_: Reader, runtime: RuntimeDep, trade_id: str) -> list[EntryOut]:
    """The trade's entries in the order they were booked, reversals included."""
    async with runtime.sessions() as session:
        entries = (
            (
                await session.execute(
                    sa.select(EntryRow)
                    .where(EntryRow.trade_id == trade_id)
                    .order_by(EntryRow.posted_at, EntryRow.seq)
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
    return [
        EntryOut(
            entry_id=e.entry_id,
            trade_id=e.trade_id,
            account=e.account,
            kind=e.kind,
            version=e.version,
            reverses=e.reverses,
            posted_at=e.posted_at,
            lines=[
                LineOut(
                    ledger_account=x.ledger_account, unit=x.unit, debit=x.debit, credit=x.credit
                )
                for x in lines
                if x.entry_id == e.entry_id
            ],
        )
        for e in entries
    ]


async def _balances(runtime: RuntimeDep, account_prefix: str | None) -> list[BalanceOut]:
    query = (
        sa.select(
            LineRow.ledger_account,
            LineRow.unit,
            sa.func.sum(LineRow.debit),
            sa.func.sum(LineRow.credit),
        )
        .group_by(LineRow.ledger_account, LineRow.unit)
        .order_by(LineRow.ledger_account, LineRow.unit)
    )
    if account_prefix is not None:
        query = query.where(LineRow.ledger_account.startswith(account_prefix, autoescape=True))
    async with runtime.sessions() as session:
        rows = (await session.execute(query)).all()
    return [
        BalanceOut(ledger_account=a, unit=u, debit=d, credit=c, balance=d - c)
        for a, u, d, c in rows
    ]


@router.get("/accounts/{account}/balances", response_model=list[BalanceOut])
async def balances(account: str, _: Reader, runtime: RuntimeDep) -> list[BalanceOut]:
    return await _balances(runtime, f"client:{account}:")


@router.get("/trial-balance", response_model=TrialBalanceOut)
async def trial_balance(_: Reader, runtime: RuntimeDep) -> TrialBalanceOut:
    rows = await _balances(runtime, None)
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.unit] = totals.get(row.unit, Decimal(0)) + row.balance
    return TrialBalanceOut(
        balanced=all(v == 0 for v in totals.values()), totals_by_unit=totals, rows=rows
    )
