"""Which topics compliance reads and the handler of each event type."""

from bo_common.contracts import gateway as gateway_contract
from bo_common.runtime import Subscription
from bo_common.topics import SETTLEMENT_EVENTS, TRADE_EVENTS
from compliance_monitor import handlers

subscription = Subscription(
    topics=[TRADE_EVENTS, SETTLEMENT_EVENTS],
    handlers={
        gateway_contract.TRADE_CAPTURED: handlers.evaluate_trade,
        gateway_contract.TRADE_AMENDED: handlers.evaluate_amendment,
        gateway_contract.TRADE_CANCELLED: handlers.cancel_trade,
    },
    # A run of versions is evaluated together (handlers.evaluate_versions); a cancellation
    # between them ends the run, so every event still sees the ones before it.
    batch_handlers={
        gateway_contract.TRADE_CAPTURED: handlers.evaluate_versions,
        gateway_contract.TRADE_AMENDED: handlers.evaluate_versions,
    },
)
