"""The gateway's captured trades (current version and status view state)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_tools.ops.reconciliation import CapturedTrade

_COLUMNS = (
    "trade_id, account, side, isin, quantity, price, currency, settlement_type, version, state"
)


async def captured(
    connection: AsyncConnection,
    *,
    trade_date_from: date | None = None,
    trade_date_to: date | None = None,
    trade_ids: list[str] | None = None,
) -> list[CapturedTrade]:
    clauses: list[str] = []
    params: dict[str, object] = {}
    if trade_date_from is not None:
        clauses.append("trade_date >= :date_from")
        params["date_from"] = trade_date_from
    if trade_date_to is not None:
        clauses.append("trade_date <= :date_to")
        params["date_to"] = trade_date_to
    if trade_ids is not None:
        clauses.append("trade_id = ANY(:ids)")
        params["ids"] = trade_ids
    where = " AND ".join(clauses) or "true"
    rows = await connection.execute(
        sa.text(f"SELECT {_COLUMNS} FROM trades WHERE {where} ORDER BY trade_id"), params
    )
    return [
        CapturedTrade(
            trade_id=r.trade_id,
            account=r.account,
            side=r.side,
            isin=r.isin,
            quantity=Decimal(r.quantity),
            # As the gateway computes it for trade.captured (handlers.py): exact.
            gross_amount=Decimal(r.quantity) * Decimal(r.price),
            currency=r.currency,
            settlement_type=r.settlement_type,
            version=int(r.version),
            state=r.state,
        )
        for r in rows
    ]


async def known(connection: AsyncConnection, trade_ids: list[str]) -> set[str]:
    rows = await connection.execute(
        sa.text("SELECT trade_id FROM trades WHERE trade_id = ANY(:ids)"), {"ids": trade_ids}
    )
    return {r.trade_id for r in rows}
