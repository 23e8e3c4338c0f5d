"""Compliance's evaluations: one per trade version."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_tools.ops.reconciliation import EvaluationFacts


async def evaluations(connection: AsyncConnection, trade_ids: list[str]) -> list[EvaluationFacts]:
    rows = await connection.execute(
        sa.text("SELECT trade_id, version, outcome FROM evaluations WHERE trade_id = ANY(:ids)"),
        {"ids": trade_ids},
    )
    return [EvaluationFacts(r.trade_id, int(r.version), r.outcome) for r in rows]
