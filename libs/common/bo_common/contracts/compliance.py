"""Events compliance_monitor publishes on compliance.events (keyed by account)."""

from __future__ import annotations

from bo_common.contracts._base import EventData

TRADE_CLEARED = "compliance.trade_cleared"
TRADE_HELD = "compliance.trade_held"
ALERT_RAISED = "compliance.alert_raised"


class RuleOutcome(EventData):
    rule: str
    passed: bool
    detail: str


class TradeEvaluated(EventData):
    """trade_cleared (every rule passed) or trade_held (at least one did not)."""

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
