"""The events a service published (its outbox rows, kept after sending) for a set of trades:
what the audit trail must hold."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_common.topics import EVENT_TOPICS
from bo_tools.ops.reconciliation import PublishedEvent


async def published(
    connection: AsyncConnection, service: str, trade_ids: list[str]
) -> list[PublishedEvent]:
    rows = await connection.execute(
        sa.text(
            "SELECT event_id::text AS event_id, event_type, correlation_id FROM ("
            " SELECT event_id, event_type,"
            " convert_from(payload, 'UTF8')::jsonb ->> 'correlation_id' AS correlation_id"
            " FROM outbox WHERE topic = ANY(:topics) AND event_type <> 'dead_letter'"
            ") o WHERE correlation_id = ANY(:ids)"
        ),
        {"topics": list(EVENT_TOPICS), "ids": trade_ids},
    )
    return [PublishedEvent(r.event_id, r.event_type, service, r.correlation_id) for r in rows]
