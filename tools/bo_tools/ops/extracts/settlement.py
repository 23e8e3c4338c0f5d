"""Settlement's obligations: one per trade, with quantity, amount, version and state."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_tools.ops.reconciliation import ObligationFacts


async def obligations(connection: AsyncConnection, trade_ids: list[str]) -> list[ObligationFacts]:
    rows = await connection.execute(
        sa.text(
            "SELECT trade_id, quantity, amount, version, state FROM obligations "
            "WHERE trade_id = ANY(:ids)"
        ),
        {"ids": trade_ids},
    )
    return [
        ObligationFacts(
            trade_id=r.trade_id,
            quantity=Decimal(r.quantity),
            amount=Decimal(r.amount),
            version=int(r.version),
            state=r.state,
        )
        for r in rows
    ]


async def trade_ids(
    connection: AsyncConnection,
    *,
    settlement_date: date | None = None,
    trade_date_from: date | None = None,
    trade_date_to: date | None = None,
) -> list[str]:
    """The trades settlement holds for a settlement date or a trade-date period."""
    clauses: list[str] = []
    params: dict[str, object] = {}
    if settlement_date is not None:
        clauses.append("settlement_date = :settlement_date")
        params["settlement_date"] = settlement_date
    if trade_date_from is not None:
        clauses.append("trade_date >= :date_from")
        params["date_from"] = trade_date_from
    if trade_date_to is not None:
        clauses.append("trade_date <= :date_to")
        params["date_to"] = trade_date_to
    where = " AND ".join(clauses) or "true"
    rows = await connection.execute(
        sa.text(f"SELECT trade_id FROM obligations WHERE {where}"), params
    )
    return [r.trade_id for r in rows]
