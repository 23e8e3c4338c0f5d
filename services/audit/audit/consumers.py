"""Audit reads every *.events topic and records every event in it."""

from audit import handlers
from bo_common.runtime import Subscription
from bo_common.topics import EVENT_TOPICS

subscription = Subscription(
    topics=list(EVENT_TOPICS),
    handlers=handlers.ACCESS_AND_APPEND,
    default_handler=handlers.append_event,
)
