"""`bo status`: every service process's readiness, version, consumer lag per topic and
partition, outbox backlog, dead letters and last event times, from its `GET /v1/ops/status`.

A process that does not answer is shown as down, and its consumer group's lag is read from
the broker here (committed offsets against high-water marks, as the services do it), so
that a stopped consumer's growing lag is visible while it is stopped.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime
from typing import Any

import httpx

from bo_common.settings import KafkaSettings
from bo_common.topics import ACCESS_EVENTS
from bo_tools.ops.config import OpsConfig
from bo_tools.stack import SERVICES


def _subscribed_topics(service: str) -> list[str]:
    """What a service's consume loop reads (its subscription, as the runtime builds it)."""
    module = importlib.import_module(f"{service}.consumers")
    subscription = module.subscription
    return list(dict.fromkeys([*subscription.topics, *subscription.raw_handlers, ACCESS_EVENTS]))


def _group_of(process: str) -> str:
    # The gateway's worker consumes as the gateway's group; every other group is its service.
    return "gateway" if process == "gateway_worker" else process


async def _lag_from_broker(config: OpsConfig, process: str) -> dict[str, Any] | None:
    if process == "csd_simulator":
        return None
    from bo_common.ops import LagProbe

    service = _group_of(process)
    probe = LagProbe(KafkaSettings(bootstrap_servers=config.bootstrap_servers), client_id="bo")
    try:
        lag = await probe.lag(service, _subscribed_topics(service), timeout_s=10)
    finally:
        await probe.close()
    answer: dict[str, Any] = lag.model_dump(mode="json")
    return answer


async def _one(client: httpx.AsyncClient, config: OpsConfig, process: str) -> dict[str, Any]:
    base = config.urls[process]
    try:
        response = await client.get(base + "/v1/ops/status", headers=config.headers())
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            body["process"] = process
            body["reachable"] = True
            return body
        readyz = await client.get(base + "/readyz")
        answer: dict[str, Any] = {
            "process": process,
            "service": _group_of(process),
            "reachable": True,
            "ready": readyz.status_code == 200,
            "checks": _checks(readyz),
        }
        if response.status_code != 404:  # 404: a process without the route (CSD simulator)
            answer["error"] = f"/v1/ops/status answered {response.status_code}"
        return answer
    except httpx.HTTPError as error:
        return {
            "process": process,
            "service": _group_of(process),
            "reachable": False,
            "ready": False,
            "error": f"unreachable: {type(error).__name__}",
            "consumer": await _lag_from_broker(config, process),
        }


def _checks(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body.get("checks", body) if isinstance(body, dict) else {}


async def collect(config: OpsConfig) -> list[dict[str, Any]]:
    config.headers()  # fail early without a key
    async with httpx.AsyncClient(timeout=config.timeout_s) as client:
        return list(await asyncio.gather(*(_one(client, config, s.name) for s in SERVICES)))


def _age(value: str | None) -> str:
    if not value:
        return "-"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(value)).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def render(statuses: list[dict[str, Any]], *, all_partitions: bool = False) -> str:
    header = (
        f"{'PROCESS':<20} {'READY':<6} {'VERSION':<9} {'LAG':>7} {'OUTBOX':>7} "
        f"{'OLDEST':>8} {'DLQ':>5}  {'LAST CONSUMED':<14} {'LAST PUBLISHED':<14}"
    )
    lines = [header]
    details: list[str] = []
    for s in statuses:
        consumer = s.get("consumer") or {}
        outbox = s.get("outbox") or {}
        letters = s.get("dead_letters") or {}
        lag = consumer.get("total_lag") if consumer and not consumer.get("error") else None
        oldest = outbox.get("oldest_unsent_age_seconds")
        lines.append(
            f"{s['process']:<20} {('yes' if s.get('ready') else 'NO'):<6} "
            f"{s.get('version', '-')!s:<9} {('-' if lag is None else lag):>7} "
            f"{outbox.get('unsent', '-')!s:>7} "
            f"{('-' if oldest is None else f'{oldest:.1f}s'):>8} "
            f"{letters.get('total', '-')!s:>5}  "
            f"{_age(s.get('last_consumed_at')):<14} {_age(s.get('last_published_at')):<14}"
        )
        problems = [
            f"{k}: {v}" for k, v in (s.get("checks") or {}).items() if v not in ("ok", "ready")
        ]
        if s.get("error"):
            problems.insert(0, str(s["error"]))
        if consumer.get("error"):
            problems.append(f"lag unknown: {consumer['error']}")
        for problem in problems:
            details.append(f"  {s['process']}: {problem}")
        for p in consumer.get("partitions") or []:
            if all_partitions or p.get("lag"):
                details.append(
                    f"  {s['process']}: {p['topic']}[{p['partition']}] lag {p['lag']} "
                    f"(committed {p.get('committed_offset')}, end {p['high_water_mark']})"
                )
    return "\n".join(lines + (["", *details] if details else []))
