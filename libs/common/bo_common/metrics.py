"""Prometheus metrics shared by the consume loop, the outbox relay and the HTTP layer."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter(
    "bo_messages_consumed_total", "Messages read from Kafka", ["consumer", "topic"]
)
EVENTS_APPLIED = Counter(
    "bo_events_applied_total", "Events applied by a handler", ["consumer", "event_type", "topic"]
)
EVENT_SECONDS = Histogram(
    "bo_event_processing_seconds",
    "Time to apply one consumed event (its handler, inside the batch's transaction)",
    ["consumer", "topic"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENTS_DUPLICATE = Counter(
    "bo_events_duplicate_total", "Redelivered events skipped by the inbox", ["consumer"]
)
EVENTS_DEAD_LETTERED = Counter(
    "bo_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["consumer", "topic"]
)
HANDLER_RETRIES = Counter(
    "bo_handler_retries_total", "Handler attempts that failed and were retried", ["consumer"]
)
BATCH_SECONDS = Histogram(
    "bo_consumer_batch_seconds", "Time to apply and commit one consumed batch", ["consumer"]
)
CONSUMER_LAG = Gauge(
    "bo_consumer_lag_messages", "High-water mark minus position", ["consumer", "topic", "partition"]
)
OUTBOX_PUBLISHED = Counter("bo_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("bo_outbox_pending", "Outbox rows not yet published", ["service"])
HTTP_REQUESTS = Counter(
    "bo_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "bo_http_request_seconds", "HTTP request duration", ["service", "method", "route"]
)
