"""Which topics settlement reads and the handler of each event type."""

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.runtime import Subscription
from bo_common.topics import COMPLIANCE_EVENTS, CSD_STATUS, TRADE_EVENTS
from settlement import handlers

subscription = Subscription(
    topics=[TRADE_EVENTS, COMPLIANCE_EVENTS],
    handlers={
        gateway_contract.TRADE_CAPTURED: handlers.create_obligation,
        gateway_contract.TRADE_AMENDED: handlers.amend_obligation,
        gateway_contract.TRADE_CANCELLED: handlers.cancel_obligation,
        compliance_contract.TRADE_CLEARED: handlers.record_compliance_decision,
        compliance_contract.TRADE_HELD: handlers.record_compliance_decision,
        "compliance.trade_released": handlers.record_compliance_decision,
        "compliance.trade_rejected": handlers.record_compliance_decision,
    },
    # The depository's ISO 20022 answers (sese.024 status advice, sese.025 confirmations):
    # XML, not envelopes; a message that fails the schema is dead-lettered with the error.
    raw_handlers={CSD_STATUS: handlers.apply_csd_status},
    raw_batch_handlers={CSD_STATUS: handlers.apply_csd_statuses},
    # A run of captures, or of decisions, is applied together: a few statements for the
    # run, where one at a time sends them for every trade.
    batch_handlers={
        gateway_contract.TRADE_CAPTURED: handlers.create_obligations,
        compliance_contract.TRADE_CLEARED: handlers.record_compliance_decisions,
        compliance_contract.TRADE_HELD: handlers.record_compliance_decisions,
        "compliance.trade_released": handlers.record_compliance_decisions,
        "compliance.trade_rejected": handlers.record_compliance_decisions,
    },
)
