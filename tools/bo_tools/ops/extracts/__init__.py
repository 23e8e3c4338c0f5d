"""Read-only extracts of each service's facts for reconciliation, one module per service so
that a change of a service's tables is adapted in one place.

Read from the databases, not the APIs: a control must run when a service is down (that is
when it matters), and one query per service reads a day of trades where the per-trade
routes would take thousands of requests. Connections are read-only
(`default_transaction_read_only`), and each service is read in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine


@asynccontextmanager
async def snapshot(database_url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_async_engine(
        database_url,
        pool_size=1,
        isolation_level="REPEATABLE READ",
        connect_args={
            "server_settings": {
                "default_transaction_read_only": "on",
                "application_name": "bo-reconcile",
            },
            "timeout": 10,
        },
    )
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()
