"""Which topics the ledger reads and the handler of each event type."""

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.runtime import Subscription
from bo_common.topics import COMPLIANCE_EVENTS, SETTLEMENT_EVENTS, TRADE_EVENTS
from ledger import handlers

subscription = Subscription(
    topics=[TRADE_EVENTS, SETTLEMENT_EVENTS, COMPLIANCE_EVENTS],
    handlers={
        gateway_contract.TRADE_CAPTURED: handlers.post_trade_capture,
        gateway_contract.TRADE_AMENDED: handlers.post_trade_amendment,
        gateway_contract.TRADE_CANCELLED: handlers.post_trade_cancellation,
        settlement_contract.SETTLED: handlers.post_settlement,
        handlers.PARTIALLY_SETTLED: handlers.post_partial_settlement,
        handlers.TRADE_REJECTED: handlers.post_trade_rejection,
    },
)
