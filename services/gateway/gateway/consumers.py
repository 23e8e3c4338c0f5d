"""Which topics the gateway reads: every event of a trade's chain feeds the status view."""

from bo_common.runtime import Subscription
from bo_common.topics import COMPLIANCE_EVENTS, LEDGER_EVENTS, SETTLEMENT_EVENTS, TRADE_EVENTS
from gateway.handlers import record_progress, record_progress_of

subscription = Subscription(
    topics=[TRADE_EVENTS, SETTLEMENT_EVENTS, LEDGER_EVENTS, COMPLIANCE_EVENTS],
    handlers={},
    default_handler=record_progress,
    # A run of events: their timeline entries in one insert, the states in one update.
    default_batch_handler=record_progress_of,
)
