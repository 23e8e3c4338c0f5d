"""What the intake API's latency rests on, checked on the running processes: the workers
yield the CPU to it within one scheduling group, and it opens no database connection
under a burst (docs/architecture.md, "The intake path and CPU")."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_tools.stack import SERVICES, Stack
from tests.conftest import a_trade, auth

pytestmark = pytest.mark.e2e

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SCHED_IDLE and sessions as on Linux"
)


@linux_only
def test_every_process_shares_the_starting_session_and_only_the_api_runs_in_front(
    stack: Stack,
) -> None:
    me = os.getsid(0)
    for service in SERVICES:
        pid = stack.processes[service.name].pid
        # A group of its own for signals, but the session (the scheduling group) of the
        # command that started it: in a session of its own a worker was the API's equal.
        assert os.getpgid(pid) == pid, service.name
        assert os.getsid(pid) == me, service.name
        policy, nice = os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)
        if service.name == "gateway":
            assert (policy, nice) == (os.SCHED_OTHER, 0)
        elif service.name == "compliance_monitor":
            assert (policy, nice) == (os.SCHED_OTHER, 19)
        else:
            assert policy == os.SCHED_IDLE, service.name
    if stack.broker_pid is not None:
        assert os.getsid(stack.broker_pid) == me
        assert os.sched_getscheduler(stack.broker_pid) == os.SCHED_IDLE


async def _api_backends(engine: AsyncEngine, api_pid: int) -> set[int]:
    """The server processes of the stack's API process's connections (matched by the
    client port: another API of the suite may be connected too)."""
    process = psutil.Process(api_pid)
    connections = getattr(process, "net_connections", process.connections)  # psutil < 6
    ports = {
        c.laddr.port
        for c in connections(kind="tcp")
        if c.raddr and c.raddr.port == (engine.url.port or 5432)
    }
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = 'gateway-api'"
        )
        return {pid for pid, port in rows if port in ports}


async def test_the_api_holds_its_pool_open_and_opens_no_connection_under_a_burst(
    stack: Stack, keys: dict[str, str], databases: dict[str, AsyncEngine]
) -> None:
    engine = databases["gateway"]
    if not engine.url.host:
        pytest.skip("the server is reached by a unix socket: no client ports to match")
    api_pid = stack.processes["gateway"].pid
    before = await _api_backends(engine, api_pid)
    assert len(before) == 10  # 2 x GATEWAY_DB_POOL_SIZE, all opened at start
    seen: set[int] = set()
    done = asyncio.Event()

    async def watch() -> None:  # what connects while the burst runs
        while not done.is_set():
            seen.update(await _api_backends(engine, api_pid))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=60, limits=limits
    ) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
                for _ in range(60)
            )
        )
    done.set()
    await watcher
    assert [r.status_code for r in responses] == [201] * 60
    # With overflow allowed, the burst opened connections and closed them again.
    assert seen == before
    assert await _api_backends(engine, api_pid) == before


@linux_only
async def test_the_api_and_its_database_sessions_run_in_the_intake_cpu_group(
    stack: Stack, databases: dict[str, AsyncEngine]
) -> None:
    """PostgreSQL's processes are a scheduling group of their own, where the API's
    statements waited for the CPU behind the workers' (bo_tools.cpu_group)."""
    group = stack.intake_group
    if group is None:
        pytest.skip("this machine lets the stack make no cgroup (its log says why)")
    engine = databases["gateway"]
    if not engine.url.host:
        pytest.skip("the server is reached by a unix socket: no client ports to match")
    stack.place_intake_sessions()  # a connection the API opened again since it was ready
    if engine.url.host not in ("127.0.0.1", "localhost", "::1") or os.geteuid() != 0:
        pytest.skip("the server's processes may not be on this machine, or not ours to move")
    api_pid = stack.processes["gateway"].pid
    sessions = await _api_backends(engine, api_pid)
    assert len(sessions) == 10
    members = group.members()
    assert {api_pid} | sessions <= members
    # Nothing else: no listener (the postmaster), no other client's server process.
    assert members - {api_pid} - sessions == set()
    assert group.weight == (10 * 1024 if group.hierarchy.version == 1 else 10 * 100)
    for service in SERVICES:
        if service.background:
            assert stack.processes[service.name].pid not in group.members(), service.name
