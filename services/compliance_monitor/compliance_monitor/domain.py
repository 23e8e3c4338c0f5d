"""Pre-settlement compliance rules. Each rule is a pure function of the trade and its
parameters; a trade that fails any rule is held and raises an alert. Each version of a trade
(capture, amendments) is evaluated once; a cancellation ends its hold. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class ComplianceError(Exception):
    pass


class UnknownRule(ComplianceError):
    pass


@dataclass(frozen=True)
class TradeFacts:
    trade_id: str
    account: str
    side: str
    isin: str
    quantity: Decimal
    gross_amount: Decimal
    currency: str
    counterparty_lei: str


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    rule: str
    passed: bool
    detail: str


def _notional_limit(
    trade: TradeFacts, parameters: Mapping[str, Any], restricted: frozenset[str]
) -> Outcome:
    limits = parameters.get("limits", {})
    limit = limits.get(trade.currency, parameters.get("default_limit"))
    if limit is None:
        return Outcome("", True, f"no notional limit for {trade.currency}")
    limit_amount = Decimal(str(limit))
    if trade.gross_amount > limit_amount:
        return Outcome(
            "",
            False,
            f"gross amount {trade.gross_amount} {trade.currency} exceeds the limit "
            f"of {limit_amount} {trade.currency}",
        )
    return Outcome("", True, f"within {limit_amount} {trade.currency}")


def _restricted_list(
    trade: TradeFacts, parameters: Mapping[str, Any], restricted: frozenset[str]
) -> Outcome:
    if trade.isin in restricted:
        return Outcome("", False, f"{trade.isin} is on the restricted list")
    return Outcome("", True, "not restricted")


RULE_KINDS: dict[str, Callable[[TradeFacts, Mapping[str, Any], frozenset[str]], Outcome]] = {
    "notional_limit": _notional_limit,
    "restricted_list": _restricted_list,
}


def evaluate(trade: TradeFacts, rules: list[Rule], restricted: frozenset[str]) -> list[Outcome]:
    outcomes = []
    for rule in rules:
        check = RULE_KINDS.get(rule.kind)
        if check is None:
            raise UnknownRule(f"rule '{rule.name}' has unknown kind '{rule.kind}'")
        result = check(trade, rule.parameters, restricted)
        outcomes.append(Outcome(rule.name, result.passed, result.detail))
    return outcomes


def held(outcomes: list[Outcome]) -> bool:
    return any(not o.passed for o in outcomes)


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
        return held(list(self.outcomes))

    @property
    def breaches(self) -> tuple[Outcome, ...]:
        """The failed rules: each raises an alert for this version."""
        return tuple(o for o in self.outcomes if not o.passed)


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
