"""Audit reads every *.events topic and records every event in it."""

from audit import handlers
from bo_common.runtime import Subscription
from bo_common.topics import EVENT_TOPICS

subscription = Subscription(
    topics=list(EVENT_TOPICS),
    handlers=handlers.ACCESS_AND_APPEND,
    default_handler=handlers.append_event,
    # A run of events in one call, without a span of its own for each (runs in the loop).
    default_batch_handler=handlers.append_events,
    # The log is its own inbox: every event consumed is appended once, keyed by its id.
    applied_ids=handlers.recorded,
    last_applied_at=handlers.last_recorded_at,
)
