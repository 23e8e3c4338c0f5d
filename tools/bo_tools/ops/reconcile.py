"""`bo reconcile`: extract each service's facts for a scope, compare them
(bo_tools.ops.reconciliation), publish the result on ops.events, on demand or on a schedule."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from iso4217 import Currency

from bo_common.contracts.ops import (
    RECONCILIATION_COMPLETED,
    RECONCILIATION_COMPLETED_VERSION,
    ReconciliationBreak,
    ReconciliationCompleted,
)
from bo_common.envelope import new_event
from bo_common.kafka import start_producer
from bo_common.settings import KafkaSettings
from bo_common.topics import OPS_EVENTS
from bo_tools.ops.config import ConfigError, OpsConfig
from bo_tools.ops.extracts import audit, compliance, gateway, ledger, outboxes, settlement, snapshot
from bo_tools.ops.reconciliation import Facts, Report, reconcile

# A trade settles at most this long after its trade date (T+2 plus long holiday runs): the
# trades captured this far before a settlement date are looked at for it.
SETTLEMENT_LOOKBACK = timedelta(days=14)
EVENT_BREAKS_LIMIT = 100


@dataclass(frozen=True)
class Scope:
    trade_date_from: date | None = None
    trade_date_to: date | None = None
    settlement_date: date | None = None
    trade_ids: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.trade_ids is not None:
            return f"{len(self.trade_ids)} named trade(s)"
        if self.settlement_date is not None:
            return f"settlement date {self.settlement_date}"
        if self.trade_date_from == self.trade_date_to:
            return f"trade date {self.trade_date_from}"
        return f"trade dates {self.trade_date_from} to {self.trade_date_to}"


def _exponent(currency: str) -> int:
    try:
        return int(Currency(currency).exponent or 0)
    except ValueError:
        return 2


async def _audit_verification(config: OpsConfig) -> tuple[bool | None, str]:
    try:
        headers = config.headers()
    except ConfigError as error:
        return None, str(error)
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.get(config.urls["audit"] + "/v1/verify", headers=headers)
    except httpx.HTTPError as error:
        return None, f"audit unreachable: {error!r}"
    if response.status_code != 200:
        return None, f"audit /v1/verify answered {response.status_code}"
    body = response.json()
    if body.get("valid") is True:
        return True, f"{body.get('records_checked')} records verified"
    return False, f"chain invalid at seq {body.get('first_invalid_seq')}: {body.get('reason')}"


async def collect(config: OpsConfig, scope: Scope) -> Facts:
    db = config.database_urls
    uncaptured: dict[str, list[str]] = {}
    unknown: list[str] = []
    async with snapshot(db["gateway"]) as gateway_db, snapshot(db["settlement"]) as settlement_db:
        if scope.settlement_date is not None:
            settling = await settlement.trade_ids(
                settlement_db, settlement_date=scope.settlement_date
            )
            # The trades of the dates that could settle then which settlement never saw.
            candidates = await gateway.captured(
                gateway_db,
                trade_date_from=scope.settlement_date - SETTLEMENT_LOOKBACK,
                trade_date_to=scope.settlement_date,
            )
            anywhere = set(await settlement.trade_ids(settlement_db))
            captured = await gateway.captured(gateway_db, trade_ids=settling)
            captured += [c for c in candidates if c.trade_id not in anywhere]
            known = {c.trade_id for c in captured}
            uncaptured["settlement"] = [t for t in settling if t not in known]
        elif scope.trade_ids is not None:
            captured = await gateway.captured(gateway_db, trade_ids=list(scope.trade_ids))
            known = {c.trade_id for c in captured}
            missing = [t for t in scope.trade_ids if t not in known]
            held = {o.trade_id for o in await settlement.obligations(settlement_db, missing)}
            uncaptured["settlement"] = [t for t in missing if t in held]
            unknown = [t for t in missing if t not in held]
        else:
            captured = await gateway.captured(
                gateway_db,
                trade_date_from=scope.trade_date_from,
                trade_date_to=scope.trade_date_to,
            )
            known = {c.trade_id for c in captured}
            in_period = await settlement.trade_ids(
                settlement_db,
                trade_date_from=scope.trade_date_from,
                trade_date_to=scope.trade_date_to,
            )
            uncaptured["settlement"] = [t for t in in_period if t not in known]
        ids = sorted(known)
        obligations = await settlement.obligations(settlement_db, ids)
        published = await outboxes.published(gateway_db, "gateway", ids)
        published += await outboxes.published(settlement_db, "settlement", ids)
    async with snapshot(db["compliance_monitor"]) as compliance_db:
        evaluations = await compliance.evaluations(compliance_db, ids)
        published += await outboxes.published(compliance_db, "compliance_monitor", ids)
    async with snapshot(db["ledger"]) as ledger_db:
        ledger_facts = await ledger.facts(
            ledger_db, {c.trade_id: (c.isin, c.currency) for c in captured}
        )
        trial_balance = await ledger.trial_balance(ledger_db)
        published += await outboxes.published(ledger_db, "ledger", ids)
    async with snapshot(db["audit"]) as audit_db:
        audited = await audit.records(audit_db, ids)
    verified, detail = await _audit_verification(config)
    return Facts(
        captured=captured,
        obligations=obligations,
        evaluations=evaluations,
        ledger=ledger_facts,
        published=published,
        audited=audited,
        uncaptured={k: v for k, v in uncaptured.items() if v},
        unknown=unknown,
        trial_balance=trial_balance,
        audit_verified=verified,
        audit_verification_detail=detail,
    )


async def run_once(config: OpsConfig, scope: Scope) -> Report:
    facts = await collect(config, scope)
    currencies = {c.currency for c in facts.captured}
    return reconcile(facts, currency_exponents={c: _exponent(c) for c in currencies})


async def run(
    config: OpsConfig, scope: Scope, *, wait_s: float = 0, publish: bool = True
) -> tuple[str, Report]:
    """Reconcile; with `wait_s`, again every few seconds until clean or the time is up (in-flight
    trades are breaks until every service has applied them). The final result is published."""
    deadline = time.monotonic() + wait_s
    report = await run_once(config, scope)
    while not report.clean and time.monotonic() < deadline:
        await asyncio.sleep(2)
        report = await run_once(config, scope)
    run_id = str(uuid.uuid4())
    if publish:
        await publish_result(config, scope, report, run_id=run_id)
    return run_id, report


def result_data(scope: Scope, report: Report, *, run_id: str) -> ReconciliationCompleted:
    return ReconciliationCompleted(
        run_id=run_id,
        trade_date_from=scope.trade_date_from,
        trade_date_to=scope.trade_date_to,
        settlement_date=scope.settlement_date,
        trade_ids=list(scope.trade_ids) if scope.trade_ids is not None else None,
        trades=report.trades,
        quantity=report.quantity,
        gross_amounts=dict(report.gross_amounts),
        checked=dict(report.checked),
        clean=report.clean,
        break_count=len(report.breaks),
        breaks=[ReconciliationBreak(**asdict(b)) for b in report.breaks[:EVENT_BREAKS_LIMIT]],
    )


async def publish_result(config: OpsConfig, scope: Scope, report: Report, *, run_id: str) -> None:
    data = result_data(scope, report, run_id=run_id)
    event = new_event(
        type=RECONCILIATION_COMPLETED,
        version=RECONCILIATION_COMPLETED_VERSION,
        source="ops",
        subject=f"reconciliation:{run_id}",
        correlation_id=f"reconciliation:{run_id}",
        actor="bo reconcile",
        data=data.model_dump(mode="json"),
        event_id=uuid.UUID(run_id),
    )
    producer = await start_producer(
        KafkaSettings(bootstrap_servers=config.bootstrap_servers), client_id="bo-reconcile"
    )
    try:
        await producer.send_and_wait(OPS_EVENTS, event.to_bytes(), key=b"reconciliation")
    finally:
        await producer.stop()


def report_json(scope: Scope, report: Report, *, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = result_data(scope, report, run_id=run_id).model_dump(mode="json")
    body["breaks"] = [asdict(b) for b in report.breaks]
    body["scope"] = scope.describe()
    return body


def _plain(value: Decimal) -> str:
    """Without trailing zeros or an exponent: 23885, 244821.25."""
    return format(value.normalize(), "f")


def report_text(scope: Scope, report: Report, *, run_id: str) -> str:
    lines = [
        f"reconciliation {run_id} at {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z, {scope.describe()}",
        f"  trades captured   {report.trades}   quantity {_plain(report.quantity)}",
    ]
    for currency, amount in report.gross_amounts.items():
        lines.append(f"  gross amount      {_plain(amount)} {currency}")
    for what, count in report.checked.items():
        lines.append(f"  {what:<17} {count}")
    if report.clean:
        lines.append("  CLEAN: every trade is in every service once, with the same terms")
        return "\n".join(lines)
    lines.append(f"  {len(report.breaks)} BREAK(S):")
    for b in report.breaks:
        lines.append(f"    {b.trade_id or '-':<40} {b.service:<18} {b.kind:<16} {b.detail}")
    return "\n".join(lines)
