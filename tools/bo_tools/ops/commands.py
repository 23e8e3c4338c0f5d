"""The ops commands of `bo`: argument parsing and output (readable, or `--json`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bo_tools.ops.config import ConfigError, OpsConfig


def _config(args: argparse.Namespace) -> OpsConfig:
    return OpsConfig.from_env(
        key=args.key, keys_file=args.keys_file, bootstrap_servers=args.bootstrap_servers
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _since(text: str) -> datetime:
    """An ISO-8601 time (UTC if no offset) or an age such as 90s, 15m, 2h, 1d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--since: {text!r} is neither an ISO-8601 time nor an age like 15m"
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from error


# -- status -------------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    from bo_tools.ops import status

    statuses = asyncio.run(status.collect(_config(args)))
    if args.json:
        _print_json(statuses)
    else:
        print(status.render(statuses, all_partitions=args.partitions))
    # 1 when a process is not ready or could not say (e.g. a key without the ops role).
    return 0 if all(s.get("ready") and not s.get("error") for s in statuses) else 1


# -- dead letters -------------------------------------------------------------------------
def _dlq_list(args: argparse.Namespace) -> int:
    from bo_tools.ops.dead_letters import read_dead_letters

    letters = asyncio.run(read_dead_letters(_config(args), topics=args.topic or None))
    if args.open:
        letters = [d for d in letters if d.status == "open"]
    if args.json:
        _print_json([d.summary() for d in letters])
        return 0
    if not letters:
        print("no dead letters")
        return 0
    print(
        f"{'ID':<36} {'STATUS':<8} {'TOPIC':<18} {'PART':>4} {'OFFSET':>7} {'CONSUMER':<18} ERROR"
    )
    for d in letters:
        print(
            f"{d.id:<36} {d.status:<8} {d.topic:<18} {d.partition:>4} {d.offset:>7} "
            f"{d.consumer:<18} {' '.join(d.error.split())[:90]}"
        )
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    from bo_tools.ops.dead_letters import DeadLetterError, find, read_dead_letters

    try:
        letter = find(asyncio.run(read_dead_letters(_config(args))), args.id)
    except DeadLetterError as error:
        print(f"bo dlq show: {error}", file=sys.stderr)
        return 2
    detail = letter.detail()
    if args.json:
        _print_json(detail)
        return 0
    for name in ("id", "status", "topic", "partition", "offset", "key", "consumer", "attempts"):
        print(f"{name:<10} {detail[name]}")
    print(f"{'failed_at':<10} {detail['failed_at']}")
    print(f"{'error':<10} {detail['error']}")
    for replay in detail["replays"]:
        print(
            f"{'replayed':<10} {replay.get('at')} "
            f"to partition {replay.get('replayed_to_partition')}"
        )
    print("value:")
    print(detail.get("value", detail.get("value_base64")))
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from bo_tools.ops.dead_letters import DeadLetterError, find, read_dead_letters, replay

    config = _config(args)
    try:
        corrected = Path(args.value_file).read_bytes() if args.value_file else None
    except OSError as error:
        print(f"bo dlq replay: --value-file: {error}", file=sys.stderr)
        return 2
    try:
        letter = find(asyncio.run(read_dead_letters(config)), args.id)
        result = asyncio.run(replay(config, letter, corrected=corrected, force=args.force))
    except DeadLetterError as error:
        print(f"bo dlq replay: {error}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(result)
    elif result["replayed"]:
        print(
            f"replayed {result['id']} to {result['topic']}[{result['partition']}] "
            f"at offset {result['offset']}" + (" (corrected)" if result["corrected"] else "")
        )
    else:
        print(f"{result['id']}: already replayed, nothing done (--force to replay again)")
    return 0


# -- trace --------------------------------------------------------------------------------
def _trace(args: argparse.Namespace) -> int:
    from bo_tools.ops import trace

    found = asyncio.run(trace.collect(_config(args), args.trade_id))
    if args.json:
        _print_json(found)
    else:
        print(trace.render(found))
    return 0 if found["gateway"] else 1


# -- outbox -------------------------------------------------------------------------------
def _outbox_republish(args: argparse.Namespace) -> int:
    from bo_tools.ops.outbox import republish

    result = asyncio.run(
        republish(_config(args), since=args.since, services=args.service or None, wait_s=args.wait)
    )
    if args.json:
        _print_json(result)
    else:
        for name, counts in result.items():
            left = f", {counts['unsent']} not yet sent" if "unsent" in counts else ""
            print(f"{name:<20} {counts['republished']} event(s) marked for republishing{left}")
    return 1 if any(c.get("unsent") for c in result.values()) else 0


# -- reconcile ----------------------------------------------------------------------------
def _scope(args: argparse.Namespace) -> Any:
    from bo_tools.ops.reconcile import Scope

    if args.trade_id:
        return Scope(trade_ids=tuple(args.trade_id))
    if args.settlement_date:
        return Scope(settlement_date=args.settlement_date)
    today = datetime.now(UTC).date()
    start = args.date_from or args.date or today
    end = args.date_to or args.date or (start if args.date_from is None else today)
    return Scope(trade_date_from=start, trade_date_to=end)


def _reconcile(args: argparse.Namespace) -> int:
    from bo_tools.ops.reconcile import report_json, report_text, run

    config = _config(args)
    if args.every:
        return _reconcile_on_schedule(args, config)
    scope = _scope(args)
    run_id, report = asyncio.run(run(config, scope, wait_s=args.wait, publish=not args.no_publish))
    if args.json:
        _print_json(report_json(scope, report, run_id=run_id))
    else:
        print(report_text(scope, report, run_id=run_id))
    return 0 if report.clean else 1


def _reconcile_on_schedule(args: argparse.Namespace, config: OpsConfig) -> int:
    """Every `--every` seconds, today's trades (or the scope given), until SIGTERM/Ctrl-C;
    each result is published on ops.events (so audit records every run)."""
    from bo_tools.ops.reconcile import report_text, run

    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            scope = _scope(args)
            started = time.monotonic()
            try:
                run_id, report = asyncio.run(run(config, scope, publish=not args.no_publish))
                print(report_text(scope, report, run_id=run_id), flush=True)
            except Exception as error:  # a service or the broker away: try again next time
                print(f"bo reconcile: run failed: {error!r}", file=sys.stderr, flush=True)
            while not stopping and time.monotonic() - started < args.every:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return 0


def _wrap(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
        except ConfigError as error:
            print(f"bo {args.command}: {error}", file=sys.stderr)
            return 2
        return result

    return run


def add_ops_commands(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--key", help="ops API key (default: BO_OPS_KEY, else var/dev-keys.json)")
    common.add_argument("--keys-file", type=Path, help="a dev-keys.json to take the ops key from")
    common.add_argument(
        "--bootstrap-servers", help="the broker (default: KAFKA_BOOTSTRAP_SERVERS, 127.0.0.1:9092)"
    )

    status = commands.add_parser(
        "status",
        parents=[common],
        help="every service: ready, version, lag, outbox backlog, dead letters, last events",
    )
    status.add_argument(
        "--partitions", action="store_true", help="every partition, not only lagging ones"
    )
    status.set_defaults(func=_wrap(_status))

    dlq = commands.add_parser("dlq", help="dead letters").add_subparsers(
        dest="action", required=True
    )
    dlq_list = dlq.add_parser("list", parents=[common], help="the dead letters of every topic")
    dlq_list.add_argument("--topic", action="append", help="only this source topic (repeatable)")
    dlq_list.add_argument("--open", action="store_true", help="only those not replayed")
    dlq_list.set_defaults(func=_wrap(_dlq_list))
    dlq_show = dlq.add_parser("show", parents=[common], help="one dead letter, with its message")
    dlq_show.add_argument("id", help="its id, or a unique prefix of it")
    dlq_show.set_defaults(func=_wrap(_dlq_show))
    dlq_replay = dlq.add_parser(
        "replay", parents=[common], help="publish a dead letter's message again to its topic"
    )
    dlq_replay.add_argument("id", help="its id, or a unique prefix of it")
    dlq_replay.add_argument(
        "--value-file",
        help="a corrected message (an event must keep its id) instead of the original",
    )
    dlq_replay.add_argument(
        "--force", action="store_true", help="replay even if it was replayed before"
    )
    dlq_replay.set_defaults(func=_wrap(_dlq_replay))

    trace = commands.add_parser(
        "trace", parents=[common], help="where a trade is in every service, and what it waits for"
    )
    trace.add_argument("trade_id")
    trace.set_defaults(func=_wrap(_trace))

    outbox = commands.add_parser("outbox", help="the services' outboxes").add_subparsers(
        dest="action", required=True
    )
    republish = outbox.add_parser(
        "republish",
        parents=[common],
        help="publish again every event written since a time (after a broker loss)",
    )
    republish.add_argument(
        "--since", type=_since, required=True, help="ISO-8601 time, or an age: 90s, 15m, 2h, 1d"
    )
    republish.add_argument("--service", action="append", help="only this service (repeatable)")
    republish.add_argument(
        "--wait", type=float, default=0, help="seconds to wait for the relays to send them"
    )
    republish.set_defaults(func=_wrap(_outbox_republish))

    reconcile = commands.add_parser(
        "reconcile",
        parents=[common],
        help="compare every service's facts for a period; report the breaks; publish the result",
    )
    scope = reconcile.add_mutually_exclusive_group()
    scope.add_argument("--date", type=_date, help="one trade date (default: today, UTC)")
    scope.add_argument("--from", dest="date_from", type=_date, help="first trade date")
    scope.add_argument("--settlement-date", type=_date, help="the trades settling on this date")
    scope.add_argument("--trade-id", action="append", help="only these trades (repeatable)")
    reconcile.add_argument("--to", dest="date_to", type=_date, help="last trade date (with --from)")
    reconcile.add_argument(
        "--wait",
        type=float,
        default=0,
        help="seconds to keep reconciling until clean (trades in flight are breaks until applied)",
    )
    reconcile.add_argument(
        "--every", type=float, help="run on a schedule, every this many seconds, until stopped"
    )
    reconcile.add_argument(
        "--no-publish", action="store_true", help="do not publish the result on ops.events"
    )
    reconcile.set_defaults(func=_wrap(_reconcile))
