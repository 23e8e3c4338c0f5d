"""A ledger database built by the real migrations (on the local PostgreSQL server), and a
harness that delivers events to the real handlers, one transaction each, as the consume
loop does."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bo_common.db import make_sessionmaker, run_migrations
from bo_common.envelope import Envelope, new_event
from bo_common.unit_of_work import UnitOfWork

SERVER = os.environ.get("LEDGER_TEST_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432")
SERVICE_DIR = Path(__file__).resolve().parents[2]

Handler = Callable[[Envelope, UnitOfWork], Awaitable[None]]


async def _recreate(name: str) -> None:
    engine = create_async_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    name = f"bo_ledger_it_{os.getpid()}"
    try:
        await _recreate(name)
    except OSError as error:
        pytest.skip(f"no PostgreSQL server at {SERVER}: {error}")
    url = f"{SERVER}/{name}"
    await asyncio.to_thread(run_migrations, SERVICE_DIR, url)
    engine = create_async_engine(url, pool_size=4)
    yield engine
    await engine.dispose()
    admin = create_async_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


class Ledger:
    """Delivers events to the handlers and reads what they wrote."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = make_sessionmaker(engine)

    async def deliver(self, handler: Handler, event: Envelope) -> None:
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            await handler(event, uow)
            await uow.flush()

    async def deliver_batch(self, deliveries: list[tuple[Handler, Envelope]]) -> None:
        """Several events in one transaction, flushed once at the end, as the consume loop
        applies a batch."""
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            for handler, event in deliveries:
                await handler(event, uow)
            await uow.flush()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as connection:
            return list(await connection.execute(sa.text(sql), params))

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as connection:
            return await connection.scalar(sa.text(sql), params)

    @staticmethod
    def event(type_: str, data: dict[str, Any], *, at: datetime | None = None) -> Envelope:
        return new_event(
            type=type_,
            source="test",
            subject=str(data.get("trade_id", "x")),
            correlation_id=str(data.get("trade_id", "x")),
            actor="test:ledger",
            data=data,
            time=at or datetime.now(UTC),
        )

    @staticmethod
    def fresh(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    async def net(self, **where: str) -> dict[tuple[str, str], Decimal]:
        """Debit - credit per ledger account and unit over the journal lines (optionally of
        one trade), non-zero only."""
        condition = "WHERE e.trade_id = :trade_id" if "trade_id" in where else ""
        rows = await self.rows(
            "SELECT l.ledger_account, l.unit, sum(l.debit - l.credit) FROM journal_lines l "
            f"JOIN journal_entries e USING (entry_id) {condition} GROUP BY 1, 2",
            **where,
        )
        return {(a, u): t for a, u, t in rows if t != 0}


@pytest.fixture
def ledger(engine: AsyncEngine) -> Ledger:
    return Ledger(engine)
