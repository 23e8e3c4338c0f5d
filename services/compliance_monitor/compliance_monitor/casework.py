"""What compliance officers do through the API, each in one transaction with the events it
causes: change a rule (a new version), add to or remove from the restricted and watch lists,
name a counterparty, work an alert, and release or reject a held trade (four eyes)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bo_common.auth import Principal
from bo_common.contracts import compliance as contract
from bo_common.envelope import new_event
from bo_common.topics import COMPLIANCE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from compliance_monitor import domain, domain_rules
from compliance_monitor.handlers import (
    SOURCE,
    close_hold,
    locked_trade,
    record_alert_action,
    trade_state,
)
from compliance_monitor.reference import IN_FORCE_DELAY
from compliance_monitor.tables import (
    AlertRow,
    CounterpartyRow,
    HoldRow,
    ListEntryRow,
    ProposalRow,
    RuleVersionRow,
)


class NotFound(domain.ComplianceError):
    pass


class RuleKindRequired(domain.ComplianceError):
    pass


class RuleKindFixed(domain.ComplianceError):
    pass


def _emit(
    uow: UnitOfWork,
    type_: str,
    data: dict[str, Any],
    *,
    subject: str,
    key: str,
    actor: str,
    now: datetime,
) -> None:
    uow.outbox.put(
        new_event(type=type_, source=SOURCE, subject=subject, actor=actor, data=data, time=now),
        topic=COMPLIANCE_EVENTS,
        key=key,
    )


async def _lock(uow: UnitOfWork, what: str) -> None:
    """Serialise the changes of one rule or list value across requests and replicas."""
    await uow.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(what))))


# -- rules ------------------------------------------------------------------------------------


async def change_rule(
    uow: UnitOfWork,
    *,
    name: str,
    kind: str | None,
    enabled: bool | None,
    action: str | None,
    severity: str | None,
    parameters: Mapping[str, Any] | None,
    reason: str,
    actor: str,
) -> RuleVersionRow:
    """A new version of the rule (or its first), in force from now: for the trades of
    later events only. Fields not given keep their current values; `parameters` given
    replace the current ones key by key."""
    await _lock(uow, f"rule:{name}")
    current = await uow.session.scalar(
        sa.select(RuleVersionRow)
        .where(RuleVersionRow.name == name)
        .order_by(RuleVersionRow.version.desc())
        .limit(1)
    )
    if current is None and kind is None:
        raise RuleKindRequired(f"rule '{name}' does not exist: give its kind to create it")
    if current is not None and kind is not None and kind != current.kind:
        raise RuleKindFixed(
            f"rule '{name}' is a {current.kind} rule; a rule's kind never changes "
            "(create a rule under another name)"
        )
    kind = current.kind if current is not None else kind
    assert kind is not None
    merged = {**(current.parameters if current is not None else {}), **(parameters or {})}
    parsed = domain_rules.parse_parameters(kind, merged)
    now = datetime.now(UTC)
    effective_from = now + IN_FORCE_DELAY
    row = RuleVersionRow(
        name=name,
        version=(current.version + 1) if current is not None else 1,
        kind=kind,
        enabled=enabled if enabled is not None else (current.enabled if current else True),
        action=action or (current.action if current else "alert"),
        severity=severity or (current.severity if current else "medium"),
        parameters=domain_rules.parameters_json(parsed),
        effective_from=effective_from,
        changed_by=actor,
        reason=reason,
    )
    uow.session.add(row)
    _emit(
        uow,
        contract.RULE_CHANGED,
        contract.RuleChanged(
            rule=name,
            version=row.version,
            kind=kind,
            enabled=row.enabled,
            action=row.action,
            severity=row.severity,
            parameters=row.parameters,
            effective_from=effective_from,
            changed_by=actor,
            reason=reason,
        ).model_dump(mode="json"),
        subject=f"rule:{name}",
        key=f"rule:{name}",
        actor=actor,
        now=now,
    )
    await uow.commit()
    return row


# -- lists and counterparty names ---------------------------------------------------------------


async def add_list_entry(
    uow: UnitOfWork, *, list_: str, value: str, reason: str, actor: str
) -> tuple[ListEntryRow, bool]:
    """The live entry for the value, and whether it was added now (False: it was listed)."""
    await _lock(uow, f"list:{list_}:{value}")
    live = await _live_entry(uow, list_, value)
    if live is not None:
        return live, False
    now = datetime.now(UTC)
    row = ListEntryRow(
        entry_id=str(uuid.uuid4()),
        list=list_,
        value=value,
        reason=reason,
        added_at=now + IN_FORCE_DELAY,
        added_by=actor,
    )
    uow.session.add(row)
    _list_changed(uow, row, "added", reason, actor, now)
    await uow.commit()
    return row, True


async def remove_list_entry(
    uow: UnitOfWork, *, list_: str, value: str, reason: str, actor: str
) -> ListEntryRow:
    await _lock(uow, f"list:{list_}:{value}")
    live = await _live_entry(uow, list_, value)
    if live is None:
        raise NotFound(f"'{value}' is not on the {list_.replace('_', ' ')} list")
    now = datetime.now(UTC)
    live.removed_at = now + IN_FORCE_DELAY
    live.removed_by, live.removal_reason = actor, reason
    _list_changed(uow, live, "removed", reason, actor, now)
    await uow.commit()
    return live


async def _live_entry(uow: UnitOfWork, list_: str, value: str) -> ListEntryRow | None:
    return await uow.session.scalar(
        sa.select(ListEntryRow).where(
            ListEntryRow.list == list_,
            ListEntryRow.value == value,
            ListEntryRow.removed_at.is_(None),
        )
    )


def _list_changed(
    uow: UnitOfWork, row: ListEntryRow, change: str, reason: str, actor: str, now: datetime
) -> None:
    _emit(
        uow,
        contract.LIST_CHANGED,
        contract.ListChanged(
            list=row.list,
            change=change,
            entry_id=row.entry_id,
            value=row.value,
            reason=reason,
            by=actor,
            # When the change is in force (IN_FORCE_DELAY after it was made).
            at=row.removed_at if change == "removed" and row.removed_at else row.added_at,
        ).model_dump(mode="json"),
        subject=f"list:{row.list}",
        key=f"list:{row.list}",
        actor=actor,
        now=now,
    )


async def name_counterparty(uow: UnitOfWork, *, lei: str, name: str, actor: str) -> CounterpartyRow:
    now = datetime.now(UTC)
    row = await uow.session.get(CounterpartyRow, lei, with_for_update=True)
    if row is None:
        row = CounterpartyRow(lei=lei, name=name, updated_at=now, updated_by=actor)
        uow.session.add(row)
    else:
        row.name, row.updated_at, row.updated_by = name, now, actor
    _emit(
        uow,
        contract.COUNTERPARTY_NAMED,
        contract.CounterpartyNamed(lei=lei, name=name, by=actor).model_dump(mode="json"),
        subject=f"counterparty:{lei}",
        key=f"counterparty:{lei}",
        actor=actor,
        now=now,
    )
    await uow.commit()
    return row


# -- alerts and holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Worked:
    alert: AlertRow
    # For a four-eyes step: the proposal as it now stands.
    proposal: ProposalRow | None = None


def officer(principal: Principal) -> domain.Officer:
    return domain.Officer(key_id=str(principal.key_id), name=principal.name)


async def _alert_and_trade(uow: UnitOfWork, alert_id: str) -> tuple[AlertRow, domain.TradeState]:
    trade_id = await uow.session.scalar(
        sa.select(AlertRow.trade_id).where(AlertRow.alert_id == alert_id)
    )
    if trade_id is None:
        raise NotFound(f"no alert '{alert_id}'")
    # The trade's lock first, as the consumer takes it: decisions and evaluations of one
    # trade never interleave.
    trade = await locked_trade(uow, trade_id)
    if trade is None:
        raise NotFound(f"no trade '{trade_id}'")
    alert = await uow.session.get(AlertRow, alert_id, with_for_update=True, populate_existing=True)
    assert alert is not None
    return alert, await trade_state(uow, trade)


def _holds_trade(alert: AlertRow, state: domain.TradeState) -> bool:
    return alert.blocking and state.open_hold == alert.version and not state.cancelled


async def work_alert(
    uow: UnitOfWork,
    *,
    alert_id: str,
    action: domain.AlertAction,
    reason: str,
    assignee: str | None,
    principal: Principal,
) -> Worked:
    alert, state = await _alert_and_trade(uow, alert_id)
    to_state = domain.next_alert_state(
        alert.state,  # type: ignore[arg-type]
        action,
        holds_trade=_holds_trade(alert, state),
    )
    record_alert_action(
        uow,
        alert,
        action=action,
        to_state=to_state,
        actor=principal.actor,
        reason=reason,
        now=datetime.now(UTC),
        assignee=assignee,
    )
    await uow.commit()
    return Worked(alert)


async def _pending(
    uow: UnitOfWork, trade_id: str
) -> tuple[ProposalRow | None, domain.Proposal | None]:
    row = await uow.session.scalar(
        sa.select(ProposalRow)
        .where(ProposalRow.trade_id == trade_id, ProposalRow.state == "pending")
        .with_for_update()
    )
    if row is None:
        return None, None
    return row, domain.Proposal(
        decision=row.decision,  # type: ignore[arg-type]
        version=row.version,
        proposed_by=domain.Officer(row.proposed_by_key, row.proposed_by),
        reason=row.reason,
    )


async def propose(
    uow: UnitOfWork,
    *,
    alert_id: str,
    decision: domain.HoldDecision,
    reason: str,
    principal: Principal,
) -> Worked:
    alert, state = await _alert_and_trade(uow, alert_id)
    if not alert.blocking:
        raise domain.NoOpenHold(
            f"alert '{alert_id}' ({alert.rule}) does not hold its trade: nothing to {decision}"
        )
    _, pending = await _pending(uow, alert.trade_id)
    proposal = domain.propose(
        state,
        pending,
        version=alert.version,
        decision=decision,
        officer=officer(principal),
        reason=reason,
    )
    now = datetime.now(UTC)
    row = ProposalRow(
        proposal_id=str(uuid.uuid4()),
        trade_id=alert.trade_id,
        version=proposal.version,
        decision=proposal.decision,
        state="pending",
        proposed_by_key=proposal.proposed_by.key_id,
        proposed_by=proposal.proposed_by.name,
        reason=reason,
        proposed_at=now,
    )
    uow.session.add(row)
    _emit(
        uow,
        contract.DECISION_PROPOSED,
        contract.DecisionProposed(
            trade_id=alert.trade_id,
            account=alert.account,
            version=proposal.version,
            decision=decision,
            proposed_by=principal.actor,
            reason=reason,
        ).model_dump(mode="json"),
        subject=alert.trade_id,
        key=alert.account,
        actor=principal.actor,
        now=now,
    )
    await uow.commit()
    return Worked(alert, row)


async def approve(uow: UnitOfWork, *, alert_id: str, reason: str, principal: Principal) -> Worked:
    """The second officer's approval: the hold ends, released or rejected, its blocking
    alerts close, and the decision is published for settlement (and, through it, the
    ledger) and the status view."""
    alert, state = await _alert_and_trade(uow, alert_id)
    row, pending = await _pending(uow, alert.trade_id)
    approved, _ = domain.approve(state, pending, officer=officer(principal), reason=reason)
    assert row is not None
    now = datetime.now(UTC)
    decision = approved.proposal.decision
    await close_hold(
        uow,
        alert.trade_id,
        domain.HoldClosed(approved.proposal.version, approved.close_reason),
        now,
        state="released" if decision == "release" else "rejected",
    )
    # close_hold voids the pending proposal: this one was approved.
    row.state = "approved"
    row.decided_by_key, row.decided_by = str(principal.key_id), principal.name
    row.decided_reason, row.decided_at = reason, now
    blocking = (
        await uow.session.execute(
            sa.select(AlertRow)
            .where(
                AlertRow.trade_id == alert.trade_id,
                AlertRow.version == approved.proposal.version,
                AlertRow.blocking,
                AlertRow.state != "closed",
            )
            .order_by(AlertRow.alert_id)
            .execution_options(populate_existing=True)
        )
    ).scalars()
    for each in blocking:
        record_alert_action(
            uow,
            each,
            action="close",
            to_state="closed",
            actor=principal.actor,
            reason=approved.close_reason,
            now=now,
        )
    _emit(
        uow,
        contract.TRADE_RELEASED if decision == "release" else contract.TRADE_REJECTED,
        contract.HoldDecided(
            trade_id=alert.trade_id,
            account=alert.account,
            version=approved.proposal.version,
            reason=approved.close_reason,
            proposed_by=f"key:{approved.proposal.proposed_by.name}",
            proposal_reason=approved.proposal.reason,
            approved_by=principal.actor,
            approval_reason=reason,
        ).model_dump(mode="json"),
        subject=alert.trade_id,
        key=alert.account,
        actor=principal.actor,
        now=now,
    )
    await uow.flush()
    await uow.commit()
    return Worked(alert, row)


async def decline(uow: UnitOfWork, *, alert_id: str, reason: str, principal: Principal) -> Worked:
    alert, _ = await _alert_and_trade(uow, alert_id)
    row, pending = await _pending(uow, alert.trade_id)
    proposal = domain.decline(pending)
    assert row is not None
    now = datetime.now(UTC)
    row.state = "declined"
    row.decided_by_key, row.decided_by = str(principal.key_id), principal.name
    row.decided_reason, row.decided_at = reason, now
    _emit(
        uow,
        contract.PROPOSAL_DECLINED,
        contract.ProposalDeclined(
            trade_id=alert.trade_id,
            account=alert.account,
            version=proposal.version,
            decision=proposal.decision,
            proposed_by=f"key:{proposal.proposed_by.name}",
            declined_by=principal.actor,
            reason=reason,
        ).model_dump(mode="json"),
        subject=alert.trade_id,
        key=alert.account,
        actor=principal.actor,
        now=now,
    )
    await uow.commit()
    return Worked(alert, row)


async def hold_of(uow: UnitOfWork, trade_id: str, version: int) -> HoldRow | None:
    return await uow.session.get(HoldRow, (trade_id, version))
