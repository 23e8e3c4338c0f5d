"""The whole cluster for cross-service tests: real PostgreSQL (databases bo_test_*), a real
broker, and every service as its own process on free ports."""

from __future__ import annotations

import asyncio
import os
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from stdnum.iso7064 import mod_97_10

from bo_common.kafka import start_producer
from bo_common.settings import KafkaSettings
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


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[sa.Row[Any]]:
    async with engine.connect() as connection:
        return list(await connection.execute(sa.text(sql), params))


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        yield client


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    """A producer to the test broker, for tests that put events on topics themselves."""
    producer = await start_producer(
        KafkaSettings(bootstrap_servers=stack.bootstrap, enable_idempotence=False),
        client_id="tests",
    )
    try:
        yield producer
    finally:
        await producer.stop()


def fresh_lei() -> str:
    """A valid LEI no SSI exists for: a trade with it waits in needs_ssi, never instructed."""
    body = "5493" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(14)
    )
    return body + mod_97_10.calc_check_digits(body)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    """The first truthy result of `check`, polled until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.1)
