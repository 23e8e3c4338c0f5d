"""The audit records of a set of trades (by correlation id)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_tools.ops.reconciliation import AuditedEvent


async def records(connection: AsyncConnection, trade_ids: list[str]) -> list[AuditedEvent]:
    rows = await connection.execute(
        sa.text(
            # The hash of the stored bytes, computed here: two records of one event have
            # the same bytes whatever the service's own hashing scheme is.
            "SELECT event_id::text AS event_id, event_type, correlation_id,"
            " encode(sha256(payload), 'hex') AS payload_hash"
            " FROM audit_records WHERE correlation_id = ANY(:ids)"
        ),
        {"ids": trade_ids},
    )
    return [AuditedEvent(r.event_id, r.event_type, r.correlation_id, r.payload_hash) for r in rows]
