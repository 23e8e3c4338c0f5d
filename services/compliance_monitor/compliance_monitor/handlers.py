"""Compliance use cases on trade events: evaluate each version of a trade (captured, then
each amendment) against the rules in force at the event's time, keep the projection of
the trades seen, and end the hold and close the alerts of a cancelled trade.

The events of one trade are serialised by the lock on its `trades` row; what an event
changes is decided by `domain` / `domain_rules`, and stored and published here in the
consume loop's transaction. Everything an evaluation reads is as of the event's time (rule
versions, list entries) or comes from earlier events (the projection), never the clock:
replaying the same events gives the same decisions and alerts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import sqlalchemy as sa
from prometheus_client import Histogram
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import compliance as contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
from bo_common.topics import COMPLIANCE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from compliance_monitor import domain, domain_projection, domain_rules
from compliance_monitor.reference import ReferenceCache, ReferenceData
from compliance_monitor.sessions import ExchangeSessions
from compliance_monitor.tables import (
    AlertActionRow,
    AlertRow,
    EvaluationRow,
    HoldRow,
    PositionRow,
    ProposalRow,
    TradeRow,
)

ACTOR = "service:compliance_monitor"
SOURCE = "compliance_monitor"

log = get_logger(__name__)

EVALUATION_SECONDS = Histogram(
    "bo_compliance_evaluation_seconds",
    "Time to evaluate one trade version: lock the trade, read rules, lists and projection, "
    "run every rule, store the result (inside the consumed batch's transaction)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
SESSIONS = ExchangeSessions()
EVALUATIONS = cast(sa.Table, EvaluationRow.__table__)
REFERENCE = ReferenceCache()


async def evaluate_trade(event: Envelope, uow: UnitOfWork) -> None:
    """trade.captured: evaluate version 1 (the event's data.version)."""
    await evaluate_versions([event], uow)


async def evaluate_amendment(event: Envelope, uow: UnitOfWork) -> None:
    """trade.amended: evaluate the amended terms as version n."""
    await evaluate_versions([event], uow)


async def cancel_trade(event: Envelope, uow: UnitOfWork) -> None:
    """trade.cancelled: close the open hold and every alert of the trade still open, take
    the trade out of the positions, decide nothing, ignore later versions."""
    cancelled = gateway_contract.TradeCancelled.model_validate(event.data)
    row, state = await lock_trade(uow, cancelled.trade_id, cancelled.account)
    change = domain.on_cancel(state)
    if change.ignored is not None:
        log.info("trade_event_ignored", trade_id=cancelled.trade_id, why=change.ignored)
        return
    now = datetime.now(UTC)
    row.cancelled_at = now
    row.cancel_reason = cancelled.reason
    if row.isin is not None and row.quantity is not None and row.side is not None:
        await _move_position(
            uow, row.account, row.isin, -domain_rules.signed_quantity(row.side, row.quantity)
        )
    await close_hold(uow, cancelled.trade_id, change.hold_closed, now)
    alerts = (
        await uow.session.execute(
            sa.select(AlertRow)
            .where(AlertRow.trade_id == cancelled.trade_id, AlertRow.state != "closed")
            .order_by(AlertRow.raised_at, AlertRow.alert_id)
        )
    ).scalars()
    for alert in alerts:
        record_alert_action(
            uow,
            alert,
            action="close",
            to_state="closed",
            actor=ACTOR,
            reason=f"{domain.CANCELLED_REASON}: {cancelled.reason}",
            now=now,
            cause=event,
        )


async def evaluate_versions(events: list[Envelope], uow: UnitOfWork) -> None:
    """A run of trade.captured and trade.amended events, set-based: the trades locked in one
    statement, the projection they read loaded in one (domain_projection.Needs), each version
    evaluated in order against the slice as the earlier ones left it, the slice's changes
    stored in one statement. evaluate_trade / evaluate_amendment are a run of one (what the
    consume loop applies when a run fails): a long run decides and stores exactly what its
    events one at a time do (tests/integration/test_batch_evaluation.py)."""
    started = time.perf_counter()
    trades = [
        (event, _facts(_VERSION_OF[event.type].model_validate(event.data))) for event in events
    ]
    # Changes the ORM holds for this batch (a cancellation) reach the tables first.
    await uow.session.flush()
    locked = await uow.session.execute(
        _LOCK_MANY,
        {
            "trade_ids": [t.trade_id for t in {f.trade_id: f for _, f in trades}.values()],
            "accounts": [t.account for t in {f.trade_id: f for _, f in trades}.values()],
        },
    )
    terms: dict[str, domain_projection.Terms] = {}
    states: dict[str, domain.TradeState] = {}
    for found in locked:
        terms[found.trade_id] = domain_projection.Terms(found.side, found.isin, found.quantity)
        states[found.trade_id] = domain.TradeState(
            version=found.version, cancelled=found.cancelled, open_hold=found.open_hold
        )
    reference = await REFERENCE.get(uow.session)
    planned = [
        (event, trade, rules, domain_projection.Parts.of(rules, trade.account))
        for event, trade in trades
        for rules in [reference.rules_at(event.time)]
    ]
    projection = await _load_slice(
        uow, domain_projection.needs((trade, parts) for _, trade, _, parts in planned)
    )
    for event, trade, rules, parts in planned:
        state = states[trade.trade_id]
        ignored = domain.why_ignored(state, trade.version)
        if ignored is not None:
            log.info("trade_event_ignored", trade_id=trade.trade_id, why=ignored)
            continue
        before = terms[trade.trade_id]
        lists = _lists(trade, rules, reference, event.time)
        context = projection.context(trade, before, parts, lists)
        change = domain.on_version(
            state, trade.version, domain_rules.evaluate(trade, rules, context)
        )
        projection.apply(trade, before, change.state.version)
        states[trade.trade_id] = change.state
        terms[trade.trade_id] = domain_projection.Terms(trade.side, trade.isin, trade.quantity)
        await _record(event, uow, trade, change)
    await _store_slice(uow, projection)
    each = (time.perf_counter() - started) / len(events)
    for _ in events:
        EVALUATION_SECONDS.observe(each)


_VERSION_OF: dict[str, type[gateway_contract.TradeCaptured]] = {
    gateway_contract.TRADE_CAPTURED: gateway_contract.TradeCaptured,
    gateway_contract.TRADE_AMENDED: gateway_contract.TradeAmended,
}


def _lists(
    trade: domain_rules.TradeFacts,
    rules: Sequence[domain_rules.RuleVersion],
    reference: ReferenceData,
    at: datetime,
) -> domain_rules.Context:
    """What an evaluation reads of the lists and names, as they stood at `at`."""
    kinds = {rule.kind for rule in rules if rule.enabled}
    restricted: dict[str, str] = {}
    watched_leis: dict[str, str] = {}
    if (reason := reference.reason("restricted", trade.isin, at)) is not None:
        restricted[trade.isin] = reason
    if (reason := reference.reason("watch_lei", trade.counterparty_lei, at)) is not None:
        watched_leis[trade.counterparty_lei] = reason
    return domain_rules.Context(
        restricted=restricted,
        watched_leis=watched_leis,
        watched_names=reference.names_at(at) if "watch_list" in kinds else (),
        counterparty_name=reference.names.get(trade.counterparty_lei),
        sessions=SESSIONS,
    )


async def _load_slice(
    uow: UnitOfWork, needs: domain_projection.Needs
) -> domain_projection.ProjectionSlice:
    projection = domain_projection.ProjectionSlice()
    rows = await uow.session.execute(
        _SLICE,
        {
            "want_seen": bool(needs.seen_accounts),
            "isins": needs.isins,
            "seen_accounts": needs.seen_accounts,
            "seen_not_sides": needs.seen_not_sides,
            "seen_from": needs.seen_from,
            "seen_to": needs.seen_to,
            "accounts": needs.accounts,
            "currencies": needs.currencies,
        },
    )
    for part, trade_id, account, side, isin, price, trade_time, quantity, currency in rows:
        if part == "seen":
            projection.seen[trade_id] = domain_rules.SeenTrade(
                trade_id, account, side, isin, price, trade_time
            )
        elif part == "position":
            projection.positions[(account, isin)] = quantity
        else:
            projection.last_prices[(isin, currency)] = domain_rules.PricePoint(
                price, trade_time, trade_id
            )
    return projection


async def _store_slice(uow: UnitOfWork, projection: domain_projection.ProjectionSlice) -> None:
    """The run's changes to the projection, in one statement."""
    if not projection.evaluated:
        return
    moved = sorted(projection.moved.items())
    priced = sorted(projection.priced)
    points = [projection.last_prices[key] for key in priced]
    evaluated = sorted(projection.evaluated.items())
    await uow.session.execute(
        _STORE_SLICE,
        {
            "moved_accounts": [account for (account, _), _ in moved],
            "moved_isins": [isin for (_, isin), _ in moved],
            "moved_quantities": [quantity for _, quantity in moved],
            "priced_isins": [isin for isin, _ in priced],
            "priced_currencies": [currency for _, currency in priced],
            "prices": [p.price for p in points],
            "price_times": [p.trade_time for p in points],
            "price_trades": [p.trade_id for p in points],
            "trade_ids": [trade_id for trade_id, _ in evaluated],
            "versions": [version for _, (version, _) in evaluated],
            "sides": [t.side for _, (_, t) in evaluated],
            "isins": [t.isin for _, (_, t) in evaluated],
            "quantities": [t.quantity for _, (_, t) in evaluated],
            "trade_prices": [t.price for _, (_, t) in evaluated],
            "currencies": [t.currency for _, (_, t) in evaluated],
            "trade_times": [t.trade_time for _, (_, t) in evaluated],
        },
    )
    # TradeRows of these trades loaded earlier in the batch are stale now.
    for trade_id, _ in evaluated:
        loaded = uow.session.identity_map.get(uow.session.identity_key(TradeRow, (trade_id,)))
        if loaded is not None:
            uow.session.expunge(loaded)


_LOCK_MANY = sa.text(
    "INSERT INTO trades (trade_id, account, version)"
    " SELECT l.trade_id, l.account, 0"
    " FROM unnest(CAST(:trade_ids AS text[]), CAST(:accounts AS text[])) AS l(trade_id, account)"
    " ORDER BY l.trade_id"
    " ON CONFLICT (trade_id) DO UPDATE SET account = trades.account"
    " RETURNING trade_id, version, cancelled_at IS NOT NULL AS cancelled, side, isin, quantity,"
    " (SELECT h.version FROM holds h WHERE h.trade_id = trades.trade_id AND h.state = 'open')"
    " AS open_hold"
)
_SLICE = sa.text(
    "SELECT 'seen' AS part, t.trade_id, t.account, t.side, t.isin, t.price, t.trade_time,"
    " CAST(NULL AS numeric) AS quantity, CAST(NULL AS text) AS currency"
    " FROM trades t"
    " WHERE CAST(:want_seen AS boolean) AND t.isin = ANY(CAST(:isins AS text[]))"
    " AND t.trade_time BETWEEN CAST(:seen_from AS timestamptz) AND CAST(:seen_to AS timestamptz)"
    " AND t.cancelled_at IS NULL AND EXISTS (SELECT 1 FROM unnest(CAST(:seen_accounts AS"
    " text[]), CAST(:seen_not_sides AS text[])) AS w(account, not_side)"
    " WHERE w.account = t.account AND t.side <> w.not_side)"
    " UNION ALL"
    " SELECT 'position', NULL, p.account, NULL, p.isin, NULL, NULL, p.quantity, NULL"
    " FROM positions p WHERE p.account = ANY(CAST(:accounts AS text[]))"
    " UNION ALL"
    " SELECT 'last', lp.trade_id, NULL, NULL, lp.isin, lp.price, lp.trade_time, NULL, lp.currency"
    " FROM last_prices lp"
    " WHERE lp.currency = ANY(CAST(:currencies AS text[])) AND (lp.isin = ANY(CAST(:isins AS"
    " text[])) OR lp.isin IN (SELECT p.isin FROM positions p"
    " WHERE p.account = ANY(CAST(:accounts AS text[]))))"
)
_STORE_SLICE = sa.text(
    "WITH moved AS ("
    " INSERT INTO positions (account, isin, quantity)"
    " SELECT m.account, m.isin, m.quantity FROM unnest(CAST(:moved_accounts AS text[]),"
    " CAST(:moved_isins AS text[]), CAST(:moved_quantities AS numeric[]))"
    " AS m(account, isin, quantity)"
    " ON CONFLICT (account, isin) DO UPDATE SET quantity = positions.quantity + EXCLUDED.quantity"
    "), priced AS ("
    " INSERT INTO last_prices (isin, currency, price, trade_time, trade_id)"
    " SELECT * FROM unnest(CAST(:priced_isins AS text[]), CAST(:priced_currencies AS text[]),"
    " CAST(:prices AS numeric[]), CAST(:price_times AS timestamptz[]),"
    " CAST(:price_trades AS text[]))"
    " ON CONFLICT (isin, currency) DO UPDATE SET price = EXCLUDED.price,"
    " trade_time = EXCLUDED.trade_time, trade_id = EXCLUDED.trade_id"
    " WHERE (last_prices.trade_time, last_prices.trade_id)"
    " <= (EXCLUDED.trade_time, EXCLUDED.trade_id)"
    ") UPDATE trades SET version = u.version, side = u.side, isin = u.isin,"
    " quantity = u.quantity, price = u.price, currency = u.currency, trade_time = u.trade_time"
    " FROM unnest(CAST(:trade_ids AS text[]), CAST(:versions AS integer[]),"
    " CAST(:sides AS text[]), CAST(:isins AS text[]), CAST(:quantities AS numeric[]),"
    " CAST(:trade_prices AS numeric[]), CAST(:currencies AS text[]),"
    " CAST(:trade_times AS timestamptz[]))"
    " AS u(trade_id, version, side, isin, quantity, price, currency, trade_time)"
    " WHERE trades.trade_id = u.trade_id"
)


def _facts(trade: gateway_contract.TradeCaptured) -> domain_rules.TradeFacts:
    return domain_rules.TradeFacts(
        trade_id=trade.trade_id,
        version=trade.version,
        account=trade.account,
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        price=trade.price,
        gross_amount=trade.gross_amount,
        currency=trade.currency,
        counterparty_lei=trade.counterparty_lei,
        venue=trade.venue,
        trade_time=trade.trade_time,
    )


async def _record(
    event: Envelope, uow: UnitOfWork, trade: domain_rules.TradeFacts, change: domain.Change
) -> None:
    """Store a version's decision (evaluation, hold, alerts) and publish it."""
    decision = change.decision
    if decision is None:  # why_ignored said it is evaluated
        raise domain.ComplianceError(f"version {trade.version} was not decided")
    now = datetime.now(UTC)
    # Nothing reads an evaluation back in the batch: queued, inserted at the flush.
    uow.outbox.insert_later(
        EVALUATIONS,
        {
            "trade_id": trade.trade_id,
            "version": decision.version,
            "account": trade.account,
            "outcome": "held" if decision.held else "cleared",
            "results": [o.as_json() for o in decision.outcomes],
            "evaluated_at": now,
        },
    )
    await close_hold(uow, trade.trade_id, change.hold_closed, now)
    if change.hold_opened is not None:
        uow.session.add(
            HoldRow(
                trade_id=trade.trade_id,
                version=change.hold_opened,
                account=trade.account,
                state="open",
                rules=decision.blocking_rules,
                opened_at=now,
            )
        )

    def emit(type_: str, data: dict[str, object]) -> None:
        uow.outbox.put(
            new_event(
                type=type_,
                source=SOURCE,
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
                rule_version=outcome.rule_version,
                severity=outcome.severity,
                blocking=outcome.blocking,
                detail=outcome.detail,
                evidence=dict(outcome.evidence),
                state="open",
                raised_at=now,
                updated_at=now,
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
                version=decision.version,
                rule_version=outcome.rule_version,
                severity=outcome.severity,
                blocking=outcome.blocking,
                evidence=dict(outcome.evidence),
            ).model_dump(mode="json"),
        )
    emit(
        contract.TRADE_HELD if decision.held else contract.TRADE_CLEARED,
        contract.TradeEvaluated(
            trade_id=trade.trade_id,
            account=trade.account,
            outcomes=[
                contract.RuleOutcome(
                    rule=o.rule,
                    passed=o.passed,
                    detail=o.detail,
                    rule_version=o.rule_version,
                    blocking=o.blocking,
                    severity=o.severity,
                )
                for o in decision.outcomes
            ],
            version=decision.version,
        ).model_dump(mode="json"),
    )


# -- the projection -------------------------------------------------------------------------


async def _move_position(uow: UnitOfWork, account: str, isin: str, quantity: Decimal) -> None:
    if quantity == 0:
        return
    statement = insert(PositionRow).values(account=account, isin=isin, quantity=quantity)
    await uow.session.execute(
        statement.on_conflict_do_update(
            index_elements=[PositionRow.account, PositionRow.isin],
            set_={"quantity": PositionRow.quantity + statement.excluded.quantity},
        )
    )


# -- shared with the API's use cases ----------------------------------------------------------


async def lock_trade(
    uow: UnitOfWork, trade_id: str, account: str
) -> tuple[TradeRow, domain.TradeState]:
    """The trade's row, locked until the transaction ends (created at version 0 the first
    time), and what compliance knows of the trade. One statement: the upsert's no-op
    update takes the row lock."""
    statement = (
        insert(TradeRow)
        .values(trade_id=trade_id, account=account, version=0)
        .on_conflict_do_update(
            index_elements=[TradeRow.trade_id], set_={"account": TradeRow.account}
        )
        .returning(TradeRow)
    )
    row = (
        await uow.session.scalars(statement, execution_options={"populate_existing": True})
    ).one()
    return row, await trade_state(uow, row)


async def locked_trade(uow: UnitOfWork, trade_id: str) -> TradeRow | None:
    return (
        await uow.session.execute(
            sa.select(TradeRow)
            .where(TradeRow.trade_id == trade_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def trade_state(uow: UnitOfWork, row: TradeRow) -> domain.TradeState:
    open_hold = await uow.session.scalar(
        sa.select(HoldRow.version).where(HoldRow.trade_id == row.trade_id, HoldRow.state == "open")
    )
    return domain.TradeState(
        version=row.version, cancelled=row.cancelled_at is not None, open_hold=open_hold
    )


async def close_hold(
    uow: UnitOfWork,
    trade_id: str,
    closed: domain.HoldClosed | None,
    now: datetime,
    *,
    state: str = "closed",
) -> None:
    """End the hold of a version (`closed`: superseded or cancelled; `released` or
    `rejected` by four eyes); a proposal still pending on it is void."""
    if closed is None:
        return
    await uow.session.execute(
        sa.update(HoldRow)
        .where(
            HoldRow.trade_id == trade_id,
            HoldRow.version == closed.version,
            HoldRow.state == "open",
        )
        .values(state=state, closed_at=now, close_reason=closed.reason)
        .execution_options(synchronize_session=False)
    )
    await uow.session.execute(
        sa.update(ProposalRow)
        .where(ProposalRow.trade_id == trade_id, ProposalRow.state == "pending")
        .values(state="void", decided_at=now, decided_reason=closed.reason)
        .execution_options(synchronize_session=False)
    )


def record_alert_action(
    uow: UnitOfWork,
    alert: AlertRow,
    *,
    action: str,
    to_state: str,
    actor: str,
    reason: str,
    now: datetime,
    assignee: str | None = None,
    cause: Envelope | None = None,
) -> None:
    """Move an alert to `to_state`, keep the step in its history and publish it."""
    from_state = alert.state
    alert.state = to_state
    alert.updated_at = now
    if assignee is not None:
        alert.assignee = assignee
    if to_state == "closed":
        alert.closed_reason = reason
    event = new_event(
        type=contract.ALERT_UPDATED,
        source=SOURCE,
        subject=alert.trade_id,
        correlation_id=alert.trade_id,
        cause=cause,
        actor=actor,
        data=contract.AlertUpdated(
            alert_id=alert.alert_id,
            trade_id=alert.trade_id,
            account=alert.account,
            action=action,
            from_state=from_state,
            state=to_state,
            by=actor,
            reason=reason,
            assignee=assignee,
        ).model_dump(mode="json"),
        time=now,
    )
    uow.session.add(
        AlertActionRow(
            action_id=str(event.id),
            alert_id=alert.alert_id,
            action=action,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            reason=reason,
            assignee=assignee,
            at=now,
        )
    )
    uow.outbox.put(event, topic=COMPLIANCE_EVENTS, key=alert.account)
