"""The `bo` command: run the stack, administer keys and desks, migrate, create topics, bench,
and operate the cluster (status, dead letters, trace, outbox republish, reconcile)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from bo_common.auth import Role

BENCH_PARTS = ("pipeline", "compliance", "ledger", "audit")
"""What `bo bench` measures by default; `bo_tools.bench.PARTS` is this."""
DIAGNOSTIC_BENCH_PARTS = ("series",)
"""Parts only measured when asked for (`--parts series`): see bo_tools.bench.series."""

if TYPE_CHECKING:
    from bo_tools.stack import Stack


def _keys_create(args: argparse.Namespace) -> int:
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from gateway import admin
    from gateway.config import Settings

    async def work() -> str:
        engine = make_engine(Settings().database_url, pool_size=1)
        try:
            return await admin.create_key(
                UnitOfWork(make_sessionmaker(engine)),
                role=Role(args.role),
                name=args.name,
                desk=args.desk,
            )
        finally:
            await engine.dispose()

    try:
        print(asyncio.run(work()))
    except admin.AdminError as error:
        print(f"bo keys create: {error}", file=sys.stderr)
        return 2
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from gateway import admin
    from gateway.config import Settings

    async def work() -> int:
        engine = make_engine(Settings().database_url, pool_size=1)
        try:
            return await admin.revoke_key(UnitOfWork(make_sessionmaker(engine)), name=args.name)
        finally:
            await engine.dispose()

    count = asyncio.run(work())
    print(f"revoked {count} key(s) named {args.name}")
    return 0 if count else 1


def _keys_limit(args: argparse.Namespace) -> int:
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from gateway import admin
    from gateway.config import Settings

    async def work() -> None:
        engine = make_engine(Settings().database_url, pool_size=1)
        try:
            await admin.set_client_limit(
                UnitOfWork(make_sessionmaker(engine)),
                client=args.name,
                per_second=None if args.default else args.per_second,
                burst=args.burst,
            )
        finally:
            await engine.dispose()

    if not args.default and args.per_second is None:
        print("bo keys limit: give --per-second or --default", file=sys.stderr)
        return 2
    try:
        asyncio.run(work())
    except admin.AdminError as error:
        print(f"bo keys limit: {error}", file=sys.stderr)
        return 2
    return 0


def _desks_create(args: argparse.Namespace) -> int:
    from bo_common.db import make_engine, make_sessionmaker
    from bo_common.unit_of_work import UnitOfWork
    from gateway import admin
    from gateway.config import Settings

    async def work() -> None:
        engine = make_engine(Settings().database_url, pool_size=1)
        try:
            await admin.create_desk(
                UnitOfWork(make_sessionmaker(engine)), name=args.name, accounts=args.accounts
            )
        finally:
            await engine.dispose()

    try:
        asyncio.run(work())
    except admin.AdminError as error:
        print(f"bo desks create: {error}", file=sys.stderr)
        return 2
    return 0


def _migrate(_: argparse.Namespace) -> int:
    import importlib

    from bo_common.db import run_migrations
    from bo_tools.stack import DATABASE_SERVICES

    for service in DATABASE_SERVICES:
        settings = importlib.import_module(f"{service.name}.config").Settings()
        run_migrations(service.migrations.parent, settings.database_url)
        print(f"{service.name}: migrated")
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    from bo_common.kafka import create_topics
    from bo_common.settings import KafkaSettings
    from bo_common.topics import all_topics_with_dead_letters

    created = asyncio.run(
        create_topics(KafkaSettings(), all_topics_with_dead_letters(), partitions=args.partitions)
    )
    print(f"created {len(created)} topic(s)")
    return 0


def _stack_name(value: str) -> str:
    """A name that makes valid database names (bo_NAME_<service>) and a folder under var/."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: a stack's name is 1 to 40 lower-case letters, digits and _, "
            "starting with a letter"
        )
    return value


def _run(args: argparse.Namespace) -> int:
    from bo_tools.demo import set_up_demo
    from bo_tools.stack import SERVICES, Stack, StackConfig, isolated_config, log

    config = isolated_config(args.isolated) if args.isolated else StackConfig()
    stack = Stack(config)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    reconciler: subprocess.Popen[bytes] | None = None
    try:
        stack.prepare()
        stack.start_all()
        stack.wait_ready()
        keys = set_up_demo(stack, config.var_dir / "dev-keys.json")
        reconciler = _start_reconciler(stack, keys["ops"])
        print()
        for service in SERVICES:
            print(f"  {service.name:<20} {stack.url(service.name)}   (docs: /docs)")
        print(f"  {'broker':<20} {stack.bootstrap}")
        print(f"  logs in {config.log_dir}, keys in {config.var_dir / 'dev-keys.json'}")
        print("\nReady. Ctrl-C stops everything.\n", flush=True)
        checked_at = time.monotonic()
        while not stopping:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    log(f"{name} exited ({process.returncode}); restarting it")
                    stack.start(name)
            if time.monotonic() - checked_at > 10:
                # A restarted API's connections (or any it opened again) join its group.
                checked_at = time.monotonic()
                stack.place_intake_sessions()
            if reconciler is not None and reconciler.poll() is not None:
                reconciler = _start_reconciler(stack, keys["ops"])
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        # The stop is bounded (each process gets SIGTERM, then SIGKILL after its timeout):
        # a second Ctrl-C (or the INT a terminal or `timeout` sends the whole group) must
        # not break it off halfway and leave the services and the broker running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("stopping (a second Ctrl-C changes nothing: every process is stopped)...")
        if reconciler is not None:
            reconciler.terminate()
        stack.stop_all()
        if reconciler is not None:
            try:
                reconciler.wait(timeout=10)
            except subprocess.TimeoutExpired:
                reconciler.kill()
        log("stopped")
    return 0


def _start_reconciler(stack: Stack, ops_key: str) -> subprocess.Popen[bytes]:
    """The scheduled reconciliation: `bo reconcile --every BO_RECONCILE_INTERVAL_S` (900 s)
    beside the services, each result published on ops.events; its output in the logs."""
    from bo_tools.ops.config import OpsConfig
    from bo_tools.stack import lower_priority

    interval = os.environ.get("BO_RECONCILE_INTERVAL_S", "900")
    out = open(stack.config.log_dir / "reconcile.log", "ab")  # noqa: SIM115 (the process's)
    return subprocess.Popen(
        [sys.executable, "-m", "bo_tools.cli", "reconcile", "--every", interval],
        env={**os.environ, **OpsConfig.for_stack(stack, ops_key=ops_key).environment()},
        stdout=out,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=lambda: lower_priority(10),
    )


def _bench(args: argparse.Namespace) -> int:
    from bo_tools.bench import main as bench_main

    return bench_main(
        trades=args.trades,
        rate=args.rate,
        batch_trades=args.batch_trades,
        parts=tuple(args.parts),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from bo_tools.ops.commands import add_ops_commands

    add_ops_commands(commands)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--desk", help="the desk of a trader key")
    create.set_defaults(func=_keys_create)
    revoke = keys.add_parser("revoke", help="revoke every key of this name")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(func=_keys_revoke)
    limit = keys.add_parser("limit", help="a client's own rate limit (all keys of the name)")
    limit.add_argument("--name", required=True)
    limit.add_argument("--per-second", type=float)
    limit.add_argument("--burst", type=int, help="default: twice the rate")
    limit.add_argument("--default", action="store_true", help="back to the service default")
    limit.set_defaults(func=_keys_limit)

    desks = commands.add_parser("desks", help="desks").add_subparsers(dest="action", required=True)
    desk_create = desks.add_parser("create", help="create a desk or add accounts to it")
    desk_create.add_argument("name")
    desk_create.add_argument("--accounts", nargs="+", default=[])
    desk_create.set_defaults(func=_desks_create)

    commands.add_parser("migrate", help="migrate every service database").set_defaults(
        func=_migrate
    )
    topics = commands.add_parser("topics", help="topics").add_subparsers(
        dest="action", required=True
    )
    topics_create = topics.add_parser("create", help="create every topic and dead-letter topic")
    topics_create.add_argument("--partitions", type=int, default=6)
    topics_create.set_defaults(func=_topics_create)
    run = commands.add_parser("run", help="run everything locally (make run)")
    run.add_argument(
        "--isolated",
        metavar="NAME",
        type=_stack_name,
        help="a stack of its own beside another: databases bo_NAME_*, free ports, its own "
        "broker, files under var/NAME (its databases are reset at start)",
    )
    run.set_defaults(func=_run)
    bench = commands.add_parser("bench", help="measure intake and end-to-end (make bench)")
    bench.add_argument(
        "--trades", type=int, default=2000, help="single trades, sent at --rate (open loop)"
    )
    bench.add_argument("--rate", type=float, default=200.0, help="single trades a second")
    bench.add_argument(
        "--batch-trades", type=int, default=20000, help="trades sent in batches of 1,000"
    )
    bench.add_argument(
        "--parts",
        nargs="+",
        choices=[*BENCH_PARTS, *DIAGNOSTIC_BENCH_PARTS],
        default=list(BENCH_PARTS),
        help=f"what to measure (default: {' '.join(BENCH_PARTS)})",
    )
    bench.set_defaults(func=_bench)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
