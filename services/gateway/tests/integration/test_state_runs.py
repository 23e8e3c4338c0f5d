"""A run of state changes applied in one statement (repository.raise_states, what the
status view's batch handler does) leaves every trade where applying them one at a time
does: the highest-ranked change that outranks the trade's state wins, the first of equals,
and a change about an older version of the trade moves nothing. Against the real
PostgreSQL, a gateway database built by its migrations."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.db import make_engine, make_sessionmaker
from bo_tools.stack import migrated_database
from gateway import domain, repository

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 2, 15, tzinfo=UTC)
TRADES = [f"T-{n}" for n in range(40)]


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = await asyncio.to_thread(migrated_database, "gateway_state_runs", "gateway")
    engine = make_engine(url, pool_size=2)
    yield engine
    await engine.dispose()


async def reset(engine: AsyncEngine, versions: dict[str, int]) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM trades"))
        for trade_id, version in versions.items():
            await connection.execute(
                sa.text(
                    "INSERT INTO trades (trade_id, client, client_trade_id, account, side, "
                    "isin, quantity, price, currency, trade_date, trade_time, venue, "
                    "counterparty_lei, settlement_type, request, request_hash, received_at, "
                    "state, state_rank, state_changed_at, version) VALUES (:id, 'c', :id, "
                    "'ACC-001', 'BUY', 'US0378331005', 1, 1, 'USD', :day, :at, 'XNYS', "
                    "'784F5XWPLTWKTBV3E584', 'DVP', '{}', 'h', :at, 'captured', 10, :at, "
                    ":version)"
                ),
                {"id": trade_id, "day": T0.date(), "at": T0, "version": version},
            )


async def states(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as connection:
        return [
            tuple(row)
            for row in await connection.execute(
                sa.text(
                    "SELECT trade_id, state, state_rank, state_changed_at FROM trades "
                    "ORDER BY trade_id"
                )
            )
        ]


async def apply(engine: AsyncEngine, runs: list[list[repository.StateChange]]) -> None:
    sessions = make_sessionmaker(engine)
    for run in runs:
        async with sessions() as session, session.begin():
            await repository.raise_states(session, run)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_a_run_of_changes_moves_each_trade_as_one_at_a_time(
    engine: AsyncEngine, seed: int
) -> None:
    rng = random.Random(seed)
    versions = {trade_id: rng.choice([1, 1, 2, 3]) for trade_id in TRADES}
    changes = []
    for n in range(400):
        trade_id = rng.choice([*TRADES, "T-unknown"])
        state, rank = rng.choice(list(domain.STATE_OF_EVENT.values()))
        changes.append(
            repository.StateChange(
                trade_id=trade_id,
                state=state,
                rank=rank,
                at=T0 + timedelta(milliseconds=n),
                version=rng.choice([None, 1, 2, 3]),
            )
        )
    await reset(engine, versions)
    await apply(engine, [[change] for change in changes])
    expected = await states(engine)
    await reset(engine, versions)
    sizes = iter(lambda: rng.choice([2, 7, 50, 400]), None)
    runs, rest = [], list(changes)
    while rest:
        size = next(sizes)
        runs.append(rest[:size])
        rest = rest[size:]
    await apply(engine, runs)
    assert await states(engine) == expected
    # The changes gave every path work: trades moved, and an older version's change that
    # outranked the rest was refused somewhere.
    assert len({row[1] for row in expected}) >= 3
    highest = {}
    for change in changes:
        highest[change.trade_id] = max(highest.get(change.trade_id, 10), change.rank)
    assert any(rank < highest[trade_id] for trade_id, _, rank, _ in expected)


async def test_a_change_never_moves_back_a_trade_changed_meanwhile(engine: AsyncEngine) -> None:
    """The run's update waits for a trade another transaction holds (a cancellation through
    the API, an amendment) and then applies only if its change still outranks the trade's
    state and is about its current version."""
    await reset(engine, {"T-0": 1, "T-1": 1})
    released, decided_v1 = (
        repository.StateChange("T-0", "released", 30, T0, None),
        repository.StateChange("T-1", "released", 30, T0, 1),
    )
    async with engine.connect() as api:
        transaction = await api.begin()
        # The API cancels T-0 and amends T-1 to version 2 (back to captured), not committed.
        await api.execute(
            sa.text("UPDATE trades SET state = 'cancelled', state_rank = 95 WHERE trade_id = 'T-0'")
        )
        await api.execute(
            sa.text(
                "UPDATE trades SET version = 2, state = 'captured', state_rank = 10 "
                "WHERE trade_id = 'T-1'"
            )
        )
        run = asyncio.create_task(apply(engine, [[released, decided_v1]]))
        await asyncio.sleep(0.5)
        assert not run.done()  # waiting for the rows
        await transaction.commit()
        await asyncio.wait_for(run, timeout=10)
    assert [row[:3] for row in await states(engine)] == [
        ("T-0", "cancelled", 95),
        ("T-1", "captured", 10),
    ]
