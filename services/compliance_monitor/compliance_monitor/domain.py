"""Compliance decisions on trades: each version of a trade (capture, amendments) is evaluated
once against the rules (`domain_rules`); a breach of a `hold` rule holds that version until
two different compliance officers release or reject it (four eyes); a cancellation ends the
hold and closes the trade's alerts. Alerts are worked through open, assigned, escalated and
closed. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from compliance_monitor.domain_rules import (
    Context,
    Outcome,
    PricePoint,
    RuleVersion,
    SeenTrade,
    TradeFacts,
    evaluate,
    in_force,
    newer_price,
)


class ComplianceError(Exception):
    pass


def held(outcomes: Iterable[Outcome]) -> bool:
    """A version is held when a rule whose action is `hold` is breached."""
    return any(o.blocking for o in outcomes)


# -- versions: capture, amendment, cancellation ----------------------------------------------
# A trade is evaluated once per version (capture is 1, each amendment adds one). Compliance
# keeps, per trade, the latest version it evaluated, whether the trade is cancelled and which
# version's hold is open (at most one). `on_version` and `on_cancel` say what an event
# changes; the handlers store and publish exactly that.


@dataclass(frozen=True)
class TradeState:
    """What compliance knows of one trade. `version` 0: no version evaluated yet."""

    version: int = 0
    cancelled: bool = False
    # The version whose hold is open (that version was held), or None.
    open_hold: int | None = None


@dataclass(frozen=True)
class HoldClosed:
    version: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """The evaluation of one version: stored, published (cleared or held) with `version`."""

    version: int
    outcomes: tuple[Outcome, ...]

    @property
    def held(self) -> bool:
        return held(self.outcomes)

    @property
    def breaches(self) -> tuple[Outcome, ...]:
        """The failed rules: each raises an alert for this version (blocking or not)."""
        return tuple(o for o in self.outcomes if not o.passed)

    @property
    def blocking_rules(self) -> list[str]:
        return [o.rule for o in self.outcomes if o.blocking]


@dataclass(frozen=True)
class Change:
    """What one event does to a trade. `ignored` says why an event changes nothing."""

    state: TradeState
    decision: Decision | None = None
    hold_closed: HoldClosed | None = None
    hold_opened: int | None = None
    ignored: str | None = None


CANCELLED_REASON = "trade cancelled"


def superseded_reason(version: int) -> str:
    return f"superseded by amendment {version}"


def why_ignored(state: TradeState, version: int) -> str | None:
    """Why a version of the trade's terms changes nothing, or None if it is to be evaluated
    (so that a handler need not evaluate what would be ignored)."""
    if version < 1:
        raise ComplianceError(f"a trade version starts at 1, not {version}")
    if state.cancelled:
        return f"version {version} arrived after the cancellation"
    if version <= state.version:
        return f"version {version} is not after version {state.version}, already evaluated"
    return None


def on_version(state: TradeState, version: int, outcomes: list[Outcome]) -> Change:
    """A version of the trade's terms (captured or amended) with its rule outcomes.

    A cancelled trade, or a version not newer than the latest evaluated one (a redelivery,
    a replay or a late arrival), changes nothing. Otherwise the version's decision is made;
    an open hold of an older version is superseded (closed) and, if this version breaches a
    rule, a hold is opened for it."""
    ignored = why_ignored(state, version)
    if ignored is not None:
        return Change(state, ignored=ignored)
    decision = Decision(version, tuple(outcomes))
    closed = (
        HoldClosed(state.open_hold, superseded_reason(version))
        if state.open_hold is not None
        else None
    )
    opened = version if decision.held else None
    return Change(
        TradeState(version=version, cancelled=False, open_hold=opened),
        decision=decision,
        hold_closed=closed,
        hold_opened=opened,
    )


def on_cancel(state: TradeState) -> Change:
    """The trade is cancelled: its open hold, if any, is closed; nothing is decided, and
    every later version is ignored. A second cancellation changes nothing."""
    if state.cancelled:
        return Change(state, ignored="the trade is already cancelled")
    closed = HoldClosed(state.open_hold, CANCELLED_REASON) if state.open_hold is not None else None
    return Change(
        TradeState(version=state.version, cancelled=True, open_hold=None), hold_closed=closed
    )


def alert_id(trade_id: str, version: int, rule: str) -> str:
    """Deterministic, so a re-applied evaluation raises the same alert. Version 1 keeps the
    id alerts had before trades had versions."""
    name = f"alert:{trade_id}:{rule}" if version == 1 else f"alert:{trade_id}:v{version}:{rule}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


# -- four eyes: releasing or rejecting a held version ----------------------------------------
# One compliance officer proposes, with a reason; another approves. The same officer (the
# same key, or another key under the same name) can never do both.

HoldDecision = Literal["release", "reject"]


@dataclass(frozen=True)
class Officer:
    key_id: str
    name: str

    def same_person(self, other: Officer) -> bool:
        return self.key_id == other.key_id or self.name == other.name


@dataclass(frozen=True)
class Proposal:
    decision: HoldDecision
    version: int
    proposed_by: Officer
    reason: str


@dataclass(frozen=True)
class Approved:
    """The hold of `version` ends: released (settlement instructs the trade) or rejected
    (the trade is cancelled downstream)."""

    proposal: Proposal
    approved_by: Officer
    reason: str

    @property
    def close_reason(self) -> str:
        verb = "released" if self.proposal.decision == "release" else "rejected"
        return (
            f"{verb}: proposed by {self.proposal.proposed_by.name} "
            f"({self.proposal.reason}), approved by {self.approved_by.name} ({self.reason})"
        )


class NoOpenHold(ComplianceError):
    pass


class ProposalPending(ComplianceError):
    pass


class NoPendingProposal(ComplianceError):
    pass


class FourEyesViolation(ComplianceError):
    pass


def propose(
    state: TradeState,
    pending: Proposal | None,
    *,
    version: int,
    decision: HoldDecision,
    officer: Officer,
    reason: str,
) -> Proposal:
    if state.cancelled or state.open_hold != version:
        raise NoOpenHold(f"version {version} of the trade has no open hold to {decision}")
    if pending is not None:
        raise ProposalPending(
            f"{pending.proposed_by.name} already proposed to {pending.decision} version "
            f"{pending.version}: approve or decline that proposal first"
        )
    return Proposal(decision=decision, version=version, proposed_by=officer, reason=reason)


def approve(
    state: TradeState, pending: Proposal | None, *, officer: Officer, reason: str
) -> tuple[Approved, TradeState]:
    """The second officer approves the pending proposal: the hold ends."""
    if pending is None:
        raise NoPendingProposal("there is no proposal to approve: propose a release or rejection")
    if state.cancelled or state.open_hold != pending.version:
        raise NoOpenHold(f"version {pending.version} of the trade is no longer held")
    if officer.same_person(pending.proposed_by):
        raise FourEyesViolation(
            f"{officer.name} proposed this {pending.decision}; another compliance officer "
            "must approve it (four eyes)"
        )
    return Approved(pending, officer, reason), replace(state, open_hold=None)


def decline(pending: Proposal | None) -> Proposal:
    """Any compliance officer may decline (or the proposer withdraw) a pending proposal."""
    if pending is None:
        raise NoPendingProposal("there is no proposal to decline")
    return pending


# -- alert workflow ----------------------------------------------------------------------

AlertState = Literal["open", "assigned", "escalated", "closed"]
AlertAction = Literal["assign", "escalate", "close"]
ALERT_STATES: tuple[AlertState, ...] = ("open", "assigned", "escalated", "closed")


class AlertTransitionRefused(ComplianceError):
    pass


def next_alert_state(
    state: AlertState, action: AlertAction, *, holds_trade: bool = False
) -> AlertState:
    """assign: from open, assigned or escalated; escalate: from open or assigned; close:
    from any state but closed, except an alert that holds its trade, which ends only with
    a four-eyes release or rejection of the hold."""
    if state == "closed":
        raise AlertTransitionRefused("the alert is closed")
    if action == "assign":
        return "assigned"
    if action == "escalate":
        if state == "escalated":
            raise AlertTransitionRefused("the alert is already escalated")
        return "escalated"
    if holds_trade:
        raise AlertTransitionRefused(
            "the alert holds its trade: propose a release or a rejection instead, which a "
            "second compliance officer approves"
        )
    return "closed"


# -- the projection: what the monitor knows of the trades it has seen --------------------
# The service keeps it in tables; `Projection` is the same in memory, for replays. Both
# apply exactly these changes: a version evaluated replaces the trade's terms (its signed
# quantity moves the account's position, its price may become the ISIN's last price); a
# cancellation removes the trade's quantity from the position.


def price_point(trade: TradeFacts) -> PricePoint:
    return PricePoint(trade.price, trade.trade_time, trade.trade_id)


@dataclass
class Projection:
    trades: dict[str, TradeFacts] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    last_prices: dict[tuple[str, str], PricePoint] = field(default_factory=dict)

    def context(self, trade: TradeFacts, lists: Context) -> Context:
        previous = self.trades.get(trade.trade_id)
        position = self.positions.get((trade.account, trade.isin), Decimal(0))
        if previous is not None and previous.isin == trade.isin:
            position -= previous.signed_quantity
        holdings = {
            isin: (quantity, self.last_prices[(isin, trade.currency)].price)
            for (account, isin), quantity in self.positions.items()
            if account == trade.account and (isin, trade.currency) in self.last_prices
        }
        recent = [
            SeenTrade(t.trade_id, t.account, t.side, t.isin, t.price, t.trade_time)
            for t in self.trades.values()
            if t.isin == trade.isin and t.trade_id not in self.cancelled
        ]
        return replace(
            lists,
            recent_trades=recent,
            position_before=position,
            other_holdings=holdings,
            last_price=self.last_prices.get((trade.isin, trade.currency)),
        )

    def apply_version(self, trade: TradeFacts) -> None:
        old = self.trades.get(trade.trade_id)
        if old is not None:  # an amendment may change the ISIN: move the quantity over
            self._move(old.account, old.isin, -old.signed_quantity)
        self._move(trade.account, trade.isin, trade.signed_quantity)
        self.trades[trade.trade_id] = trade
        point = price_point(trade)
        if newer_price(self.last_prices.get((trade.isin, trade.currency)), point):
            self.last_prices[(trade.isin, trade.currency)] = point

    def _move(self, account: str, isin: str, quantity: Decimal) -> None:
        self.positions[(account, isin)] = self.positions.get((account, isin), Decimal(0)) + quantity

    def apply_cancel(self, trade_id: str) -> None:
        old = self.trades.get(trade_id)
        if old is None or trade_id in self.cancelled:
            return
        self.cancelled.add(trade_id)
        self._move(old.account, old.isin, -old.signed_quantity)


@dataclass(frozen=True)
class RaisedAlert:
    alert_id: str
    trade_id: str
    version: int
    rule: str
    rule_version: int
    blocking: bool
    severity: str
    detail: str
    evidence: Mapping[str, object]


@dataclass(frozen=True)
class Cancelled:
    trade_id: str


def replay(
    events: Sequence[TradeFacts | Cancelled],
    rules: Sequence[RuleVersion],
    lists: Context,
) -> list[RaisedAlert]:
    """Evaluate a recorded sequence of trade versions and cancellations from empty state,
    as the service does (rules in force at each trade's time): the alerts raised, in order.
    The same sequence always gives the same alerts."""
    projection = Projection()
    states: dict[str, TradeState] = {}
    raised: list[RaisedAlert] = []
    for event in events:
        if isinstance(event, Cancelled):
            change = on_cancel(states.get(event.trade_id, TradeState()))
            states[event.trade_id] = change.state
            if change.ignored is None:
                projection.apply_cancel(event.trade_id)
            continue
        state = states.get(event.trade_id, TradeState())
        if why_ignored(state, event.version) is not None:
            continue
        outcomes = evaluate(
            event, in_force(rules, event.trade_time), projection.context(event, lists)
        )
        change = on_version(state, event.version, outcomes)
        states[event.trade_id] = change.state
        projection.apply_version(event)
        for outcome in change.decision.breaches if change.decision else ():
            raised.append(
                RaisedAlert(
                    alert_id=alert_id(event.trade_id, event.version, outcome.rule),
                    trade_id=event.trade_id,
                    version=event.version,
                    rule=outcome.rule,
                    rule_version=outcome.rule_version,
                    blocking=outcome.blocking,
                    severity=outcome.severity,
                    detail=outcome.detail,
                    evidence=outcome.evidence,
                )
            )
    return raised
