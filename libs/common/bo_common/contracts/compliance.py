"""Events compliance_monitor publishes on compliance.events (keyed by account for trade
events; by rule name, list or alert for the others)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bo_common.contracts._base import EventData

TRADE_CLEARED = "compliance.trade_cleared"
TRADE_HELD = "compliance.trade_held"
ALERT_RAISED = "compliance.alert_raised"
# The four-eyes decisions on a held version: settlement instructs a released trade and
# never a rejected one (which it cancels, and the ledger reverses its pending entries).
TRADE_RELEASED = "compliance.trade_released"
TRADE_REJECTED = "compliance.trade_rejected"
DECISION_PROPOSED = "compliance.decision_proposed"
PROPOSAL_DECLINED = "compliance.proposal_declined"
ALERT_UPDATED = "compliance.alert_updated"
RULE_CHANGED = "compliance.rule_changed"
LIST_CHANGED = "compliance.list_changed"
COUNTERPARTY_NAMED = "compliance.counterparty_named"


class RuleOutcome(EventData):
    rule: str
    passed: bool
    detail: str
    # Added with versioned rules (optional, so older events still read).
    rule_version: int | None = None
    blocking: bool | None = None
    severity: str | None = None


class TradeEvaluated(EventData):
    """trade_cleared (no rule that holds was breached) or trade_held (one was)."""

    trade_id: str
    account: str
    outcomes: list[RuleOutcome]
    # The trade version evaluated (trade.captured is 1, each trade.amended adds one).
    version: int = 1


class AlertRaised(EventData):
    alert_id: str
    trade_id: str
    account: str
    rule: str
    detail: str
    version: int | None = None
    rule_version: int | None = None
    severity: str | None = None
    blocking: bool | None = None
    evidence: dict[str, Any] | None = None


class HoldDecided(EventData):
    """trade_released or trade_rejected: the hold of `version` ended by two officers."""

    trade_id: str
    account: str
    version: int
    reason: str
    proposed_by: str
    proposal_reason: str
    approved_by: str
    approval_reason: str


class DecisionProposed(EventData):
    trade_id: str
    account: str
    version: int
    decision: str  # release | reject
    proposed_by: str
    reason: str


class ProposalDeclined(EventData):
    trade_id: str
    account: str
    version: int
    decision: str
    proposed_by: str
    declined_by: str
    reason: str


class AlertUpdated(EventData):
    alert_id: str
    trade_id: str
    account: str
    action: str  # assign | escalate | close
    from_state: str
    state: str
    by: str
    reason: str
    assignee: str | None = None


class RuleChanged(EventData):
    rule: str
    version: int
    kind: str
    enabled: bool
    action: str
    severity: str
    parameters: dict[str, Any]
    effective_from: datetime
    changed_by: str
    reason: str


class ListChanged(EventData):
    list: str  # restricted | watch_lei | watch_name
    change: str  # added | removed
    entry_id: str
    value: str
    reason: str
    by: str
    at: datetime


class CounterpartyNamed(EventData):
    lei: str
    name: str
    by: str
