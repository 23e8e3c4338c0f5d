"""The whole cluster for cross-service tests: real PostgreSQL (databases bo_test_*), a real
broker, and every service as its own process on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bo_tools.demo import sample_trade, set_up_demo
from bo_tools.stack import Stack, isolated_config


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # BO_TEST_STACK names the databases (bo_<name>_*) and var/<name>: two suites can run at
    # once on one machine when they use different names.
    config = isolated_config(
        os.environ.get("BO_TEST_STACK", "test"),
        extra_env={
            # Tansu holds a JoinGroup for half the session timeout: keep rebalances short.
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "400",
            "LOG_LEVEL": "INFO",
        },
    )
    stack = Stack(config)
    try:
        stack.prepare()
        stack.start_all()
        stack.wait_ready(timeout_s=90)
        stack.keys = set_up_demo(stack, keys_file=None)  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="session")
def keys(stack: Stack) -> dict[str, str]:
    return stack.keys  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="session")
async def databases(stack: Stack) -> AsyncIterator[dict[str, AsyncEngine]]:
    from bo_tools.stack import DATABASE_SERVICES

    engines = {
        s.name: create_async_engine(stack.database_url(s), pool_size=2) for s in DATABASE_SERVICES
    }
    yield engines
    for engine in engines.values():
        await engine.dispose()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def a_trade(**overrides: Any) -> dict[str, Any]:
    return sample_trade(**overrides)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return await connection.scalar(sa.text(sql), params)


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        yield client
