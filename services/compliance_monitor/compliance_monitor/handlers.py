"""Compliance use cases: evaluate each captured trade against the enabled rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import compliance as contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import COMPLIANCE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from compliance_monitor import domain
from compliance_monitor.tables import AlertRow, EvaluationRow, RestrictedRow, RuleRow

ACTOR = "service:compliance_monitor"


async def evaluate_trade(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    facts = domain.TradeFacts(
        trade_id=trade.trade_id,
        account=trade.account,
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        gross_amount=trade.gross_amount,
        currency=trade.currency,
        counterparty_lei=trade.counterparty_lei,
    )
    rules = [
        domain.Rule(r.name, r.kind, r.parameters)
        for r in (
            await uow.session.execute(
                sa.select(RuleRow).where(RuleRow.enabled).order_by(RuleRow.name)
            )
        ).scalars()
    ]
    restricted = await uow.session.scalar(
        sa.select(RestrictedRow.isin).where(RestrictedRow.isin == trade.isin)
    )
    outcomes = domain.evaluate(facts, rules, frozenset({restricted} if restricted else ()))
    held = domain.held(outcomes)
    now = datetime.now(UTC)
    results = [{"rule": o.rule, "passed": o.passed, "detail": o.detail} for o in outcomes]
    inserted = await uow.session.scalar(
        insert(EvaluationRow)
        .values(
            trade_id=trade.trade_id,
            account=trade.account,
            outcome="held" if held else "cleared",
            results=results,
            evaluated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(EvaluationRow.trade_id)
    )
    if inserted is None:
        return

    def emit(type_: str, data: dict[str, object]) -> None:
        uow.outbox.put(
            new_event(
                type=type_,
                source="compliance_monitor",
                subject=trade.trade_id,
                cause=event,
                actor=ACTOR,
                data=data,
                time=now,
            ),
            topic=COMPLIANCE_EVENTS,
            key=trade.account,
        )

    for outcome in outcomes:
        if outcome.passed:
            continue
        alert_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"alert:{trade.trade_id}:{outcome.rule}"))
        uow.session.add(
            AlertRow(
                alert_id=alert_id,
                trade_id=trade.trade_id,
                account=trade.account,
                rule=outcome.rule,
                detail=outcome.detail,
                state="open",
                raised_at=now,
            )
        )
        emit(
            contract.ALERT_RAISED,
            contract.AlertRaised(
                alert_id=alert_id,
                trade_id=trade.trade_id,
                account=trade.account,
                rule=outcome.rule,
                detail=outcome.detail,
            ).model_dump(mode="json"),
        )
    emit(
        contract.TRADE_HELD if held else contract.TRADE_CLEARED,
        contract.TradeEvaluated(
            trade_id=trade.trade_id,
            account=trade.account,
            outcomes=[
                contract.RuleOutcome(rule=o.rule, passed=o.passed, detail=o.detail)
                for o in outcomes
            ],
        ).model_dump(mode="json"),
    )
