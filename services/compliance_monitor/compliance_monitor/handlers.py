"""Compliance use cases: evaluate each version of a trade (captured, then each amendment)
against the enabled rules, and end the hold of a cancelled trade.

The events of one trade are serialised by the lock on its `trades` row; what an event
changes is decided by `domain.on_version` / `domain.on_cancel`, and stored and published
here in the consume loop's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import compliance as contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
from bo_common.topics import COMPLIANCE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from compliance_monitor import domain
from compliance_monitor.tables import (
    AlertRow,
    EvaluationRow,
    HoldRow,
    RestrictedRow,
    RuleRow,
    TradeRow,
)

ACTOR = "service:compliance_monitor"

log = get_logger(__name__)


async def evaluate_trade(event: Envelope, uow: UnitOfWork) -> None:
    """trade.captured: evaluate version 1 (the event's data.version)."""
    await _evaluate_version(event, uow, gateway_contract.TradeCaptured.model_validate(event.data))


async def evaluate_amendment(event: Envelope, uow: UnitOfWork) -> None:
    """trade.amended: evaluate the amended terms as version n."""
    await _evaluate_version(event, uow, gateway_contract.TradeAmended.model_validate(event.data))


async def cancel_trade(event: Envelope, uow: UnitOfWork) -> None:
    """trade.cancelled: close the open hold, decide nothing, ignore later versions."""
    cancelled = gateway_contract.TradeCancelled.model_validate(event.data)
    row, state = await _lock_trade(uow, cancelled.trade_id, cancelled.account)
    change = domain.on_cancel(state)
    if change.ignored is not None:
        log.info("trade_event_ignored", trade_id=cancelled.trade_id, why=change.ignored)
        return
    now = datetime.now(UTC)
    row.cancelled_at = now
    row.cancel_reason = cancelled.reason
    await _close_hold(uow, cancelled.trade_id, change.hold_closed, now)


async def _evaluate_version(
    event: Envelope, uow: UnitOfWork, trade: gateway_contract.TradeCaptured
) -> None:
    row, state = await _lock_trade(uow, trade.trade_id, trade.account)
    ignored = domain.why_ignored(state, trade.version)
    if ignored is not None:  # a redelivery, a replay, a late arrival or a cancelled trade
        log.info("trade_event_ignored", trade_id=trade.trade_id, why=ignored)
        return
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
    change = domain.on_version(state, trade.version, outcomes)
    decision = change.decision
    assert decision is not None  # why_ignored said it is evaluated

    now = datetime.now(UTC)
    row.version = change.state.version
    uow.session.add(
        EvaluationRow(
            trade_id=trade.trade_id,
            version=decision.version,
            account=trade.account,
            outcome="held" if decision.held else "cleared",
            results=[
                {"rule": o.rule, "passed": o.passed, "detail": o.detail} for o in decision.outcomes
            ],
            evaluated_at=now,
        )
    )
    await _close_hold(uow, trade.trade_id, change.hold_closed, now)
    if change.hold_opened is not None:
        uow.session.add(
            HoldRow(
                trade_id=trade.trade_id,
                version=change.hold_opened,
                account=trade.account,
                state="open",
                rules=[o.rule for o in decision.breaches],
                opened_at=now,
            )
        )

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

    # Alerts of older versions stay as they are (an analyst closes them); each breach of
    # this version raises its own.
    for outcome in decision.breaches:
        alert_id = domain.alert_id(trade.trade_id, decision.version, outcome.rule)
        uow.session.add(
            AlertRow(
                alert_id=alert_id,
                trade_id=trade.trade_id,
                account=trade.account,
                version=decision.version,
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
        contract.TRADE_HELD if decision.held else contract.TRADE_CLEARED,
        contract.TradeEvaluated(
            trade_id=trade.trade_id,
            account=trade.account,
            outcomes=[
                contract.RuleOutcome(rule=o.rule, passed=o.passed, detail=o.detail)
                for o in decision.outcomes
            ],
            version=decision.version,
        ).model_dump(mode="json"),
    )


async def _lock_trade(
    uow: UnitOfWork, trade_id: str, account: str
) -> tuple[TradeRow, domain.TradeState]:
    """The trade's row, locked until the transaction ends (created at version 0 the first
    time), and what compliance knows of the trade."""
    await uow.session.execute(
        insert(TradeRow)
        .values(trade_id=trade_id, account=account, version=0)
        .on_conflict_do_nothing(index_elements=[TradeRow.trade_id])
    )
    row = (
        await uow.session.execute(
            sa.select(TradeRow)
            .where(TradeRow.trade_id == trade_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    open_hold = await uow.session.scalar(
        sa.select(HoldRow.version).where(HoldRow.trade_id == trade_id, HoldRow.state == "open")
    )
    state = domain.TradeState(
        version=row.version, cancelled=row.cancelled_at is not None, open_hold=open_hold
    )
    return row, state


async def _close_hold(
    uow: UnitOfWork, trade_id: str, closed: domain.HoldClosed | None, now: datetime
) -> None:
    if closed is None:
        return
    await uow.session.execute(
        sa.update(HoldRow)
        .where(
            HoldRow.trade_id == trade_id,
            HoldRow.version == closed.version,
            HoldRow.state == "open",
        )
        .values(state="closed", closed_at=now, close_reason=closed.reason)
        .execution_options(synchronize_session=False)
    )
