"""Topic names, partition counts and the dead-letter naming rule."""

TRADE_EVENTS = "trade.events"
SETTLEMENT_EVENTS = "settlement.events"
LEDGER_EVENTS = "ledger.events"
COMPLIANCE_EVENTS = "compliance.events"
AUDIT_EVENTS = "audit.events"
# API keys are created in the gateway and replicated to every service through this topic,
# so that each service authenticates against its own database (no shared auth store).
ACCESS_EVENTS = "access.events"
# Published by the operations tool (reconciliation results, dead-letter replays); audit records it.
OPS_EVENTS = "ops.events"
CSD_INSTRUCTIONS = "csd.instructions"
CSD_STATUS = "csd.status"

EVENT_TOPICS = (
    TRADE_EVENTS,
    SETTLEMENT_EVENTS,
    LEDGER_EVENTS,
    COMPLIANCE_EVENTS,
    AUDIT_EVENTS,
    ACCESS_EVENTS,
    OPS_EVENTS,
)
ALL_TOPICS = (*EVENT_TOPICS, CSD_INSTRUCTIONS, CSD_STATUS)

DEFAULT_PARTITIONS = 6


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics_with_dead_letters() -> list[str]:
    return [*ALL_TOPICS, *(dead_letter_topic(t) for t in ALL_TOPICS)]
