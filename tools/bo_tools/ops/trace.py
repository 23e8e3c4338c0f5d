"""`bo trace TRADE_ID`: where a trade is, service by service, and what it is waiting for,
from each service's API (with the ops key) and the dead letters that name it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bo_tools.ops.config import OpsConfig
from bo_tools.ops.dead_letters import read_dead_letters

# What an obligation in each state waits for (settlement/domain.py ObligationState).
WAITING_IN_SETTLEMENT = {
    "awaiting_compliance": "a compliance decision (compliance.events)",
    "held": "a compliance officer to release the hold (POST /v1/alerts/{id}/decision)",
    "needs_ssi": "a standing settlement instruction for its counterparty and market"
    " (POST /v1/ssis)",
    "ready": "the next netting run (every SETTLEMENT_NETTING_INTERVAL_S, or POST /v1/netting-runs)",
    "instructed": "the depository to match the instruction (csd.status)",
    "matched": "the depository to settle on the intended settlement date (csd.status)",
    "partially_settled": "the depository to settle the rest (csd.status)",
    "failed": "operations: the depository failed the instruction (GET /v1/fails)",
}


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as error:
        return {"unreachable": type(error).__name__}
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        return {"error": response.status_code}
    return response.json()


async def collect(config: OpsConfig, trade_id: str) -> dict[str, Any]:
    headers = config.headers()
    u = config.urls
    async with httpx.AsyncClient(timeout=config.timeout_s) as client:
        trade, obligations, journal, evaluation, audit = await asyncio.gather(
            _get(client, f"{u['gateway']}/v1/trades/{trade_id}", headers),
            _get(client, f"{u['settlement']}/v1/obligations?trade_id={trade_id}", headers),
            _get(client, f"{u['ledger']}/v1/journal?trade_id={trade_id}", headers),
            _get(client, f"{u['compliance_monitor']}/v1/evaluations/{trade_id}", headers),
            _get(client, f"{u['audit']}/v1/events?trade_id={trade_id}&limit=1000", headers),
        )
    try:
        letters = [
            d.summary() for d in await read_dead_letters(config) if trade_id.encode() in d.value
        ]
    except Exception as error:  # the broker away: the rest of the trace still helps
        letters = [{"unreachable": repr(error)}]
    obligation = obligations[0] if isinstance(obligations, list) and obligations else None
    trace: dict[str, Any] = {
        "trade_id": trade_id,
        "gateway": trade,
        "settlement": obligation,
        "ledger": journal,
        "compliance_monitor": evaluation,
        "audit": audit.get("items") if isinstance(audit, dict) and "items" in audit else audit,
        "dead_letters": letters,
    }
    trace["waiting_for"] = waiting_for(trace)
    return trace


def _has(value: Any) -> bool:
    return bool(value) and not (
        isinstance(value, dict) and ("unreachable" in value or "error" in value)
    )


def waiting_for(trace: dict[str, Any]) -> list[str]:
    """What the trade waits for, from what each service holds."""
    waits: list[str] = []
    for service, value in trace.items():
        if isinstance(value, dict) and "unreachable" in value:
            waits.append(f"{service} to come back (unreachable: {value['unreachable']})")
    trade = trace["gateway"]
    if not _has(trade):
        return [*waits, "nothing: the gateway never captured this trade"]
    state = trade.get("state")
    if trace["dead_letters"]:
        waits.append(
            f"operations: {len(trace['dead_letters'])} dead letter(s) name it (bo dlq list)"
        )
    if state in ("cancelled", "rejected"):
        return waits or [f"nothing: the trade is {state}"]
    if not _has(trace["compliance_monitor"]):
        waits.append("compliance_monitor to apply trade.captured (bo status: its lag)")
    obligation = trace["settlement"]
    if not _has(obligation):
        waits.append("settlement to apply trade.captured (bo status: its lag)")
    else:
        why = WAITING_IN_SETTLEMENT.get(str(obligation.get("state")))
        if why:
            waits.append(f"settlement: {why}")
    if not _has(trace["ledger"]):
        waits.append("ledger to apply trade.captured (bo status: its lag)")
    elif (
        obligation
        and obligation.get("state") == "settled"
        and not any(e.get("kind") == "settled" for e in trace["ledger"])
    ):
        waits.append("ledger to apply settlement.settled (bo status: its lag)")
    if obligation and obligation.get("state") == "settled" and state != "settled":
        waits.append("the gateway's status view (gateway_worker) to apply settlement.settled")
    return waits or ["nothing: settled and booked everywhere"]


def render(trace: dict[str, Any]) -> str:
    lines = [f"trade {trace['trade_id']}"]
    trade = trace["gateway"]
    if _has(trade):
        lines.append(
            f"  gateway            {trade.get('state')} (v{trade.get('version')}), "
            f"{trade.get('side')} {trade.get('quantity')} {trade.get('isin')} "
            f"@ {trade.get('price')} {trade.get('currency')}, account {trade.get('account')}"
        )
    else:
        lines.append(f"  gateway            {trade or 'unknown trade'}")
    obligation = trace["settlement"]
    if _has(obligation):
        lines.append(
            f"  settlement         obligation {obligation.get('state')} "
            f"(v{obligation.get('version')}), settles {obligation.get('settlement_date')}"
        )
    else:
        lines.append(f"  settlement         {obligation or 'no obligation'}")
    evaluation = trace["compliance_monitor"]
    if _has(evaluation):
        lines.append(
            f"  compliance_monitor {evaluation.get('outcome')} (v{evaluation.get('version')})"
        )
    else:
        lines.append(f"  compliance_monitor {evaluation or 'no evaluation'}")
    journal = trace["ledger"]
    if isinstance(journal, list) and journal:
        kinds = ", ".join(f"{e.get('kind')} v{e.get('version')}" for e in journal)
        lines.append(f"  ledger             {len(journal)} entries: {kinds}")
    else:
        lines.append(f"  ledger             {journal or 'no entries'}")
    audit = trace["audit"]
    if isinstance(audit, list):
        lines.append(f"  audit              {len(audit)} records")
        for item in audit:
            event = item.get("event", {})
            lines.append(f"    {event.get('time', ''):<32} {event.get('type')}")
    else:
        lines.append(f"  audit              {audit or 'no records'}")
    for letter in trace["dead_letters"]:
        if "id" not in letter:
            lines.append(f"  dead letters       {letter}")
            continue
        error = " ".join(str(letter["error"]).split())[:80]
        lines.append(
            f"  dead letter        {letter['id']} ({letter['status']}) {letter['consumer']} "
            f"on {letter['topic']}: {error}"
        )
    lines.append("  waiting for:")
    lines += [f"    - {w}" for w in trace["waiting_for"]]
    return "\n".join(lines)
