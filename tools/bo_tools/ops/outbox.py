"""`bo outbox republish --since`: publish again every event the services wrote since a time.

After a broker loss the events are gone from the topics but kept in each service's outbox
(the relay keeps the rows it sent). Republishing queues those rows again in each service's
database (outbox_pending); each service's own relay then sends them, in `seq` order with
acks=all, as it sent them the first time, so per-key order holds and nothing but the relay
writes a service's events. Consumers skip what they had applied (inbox).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bo_tools.ops.config import OpsConfig

# Since plumbing revision 0101 the relay sends what is queued in outbox_pending
# (bo_common.outbox.add_outbox_pending); before it, the rows whose sent_at is null.
_PENDING = "SELECT to_regclass('outbox_pending') IS NOT NULL"


async def _reset(database_url: str, since: datetime) -> int:
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            if await connection.scalar(sa.text(_PENDING)):
                statement = (
                    "INSERT INTO outbox_pending SELECT seq FROM outbox WHERE created_at >= "
                    ":since ON CONFLICT DO NOTHING"
                )
            else:
                statement = (
                    "UPDATE outbox SET sent_at = NULL "
                    "WHERE created_at >= :since AND sent_at IS NOT NULL"
                )
            result = await connection.execute(sa.text(statement), {"since": since})
            return int(result.rowcount or 0)
    finally:
        await engine.dispose()


async def unsent(database_url: str) -> int:
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            if await connection.scalar(sa.text(_PENDING)):
                statement = "SELECT count(*) FROM outbox_pending"
            else:
                statement = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            count = await connection.scalar(sa.text(statement))
            return int(count or 0)
    finally:
        await engine.dispose()


async def republish(
    config: OpsConfig, *, since: datetime, services: list[str] | None = None, wait_s: float = 0
) -> dict[str, dict[str, int]]:
    """Mark the rows unsent; with `wait_s`, wait until the relays have sent them again."""
    names = services or list(config.database_urls)
    counts = await asyncio.gather(*(_reset(config.database_urls[n], since) for n in names))
    result = {name: {"republished": count} for name, count in zip(names, counts, strict=True)}
    deadline = time.monotonic() + wait_s
    while wait_s:
        backlog = await asyncio.gather(*(unsent(config.database_urls[n]) for n in names))
        for name, count in zip(names, backlog, strict=True):
            result[name]["unsent"] = count
        if not any(backlog) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return result
