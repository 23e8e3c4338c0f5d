"""Prometheus metrics shared by the consume loop, the outbox relay and the HTTP layer.

Names follow the Prometheus conventions (base units, `_total` for counters); every metric
of a service process has the `bo_` prefix. The dashboard in deploy/grafana and the alert
rules in deploy/prometheus read these names: rename with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool

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
EVENT_DELIVERY_SECONDS = Histogram(
    "bo_event_delivery_seconds",
    "Time from an event's publication (its Kafka record's timestamp) to its application",
    ["consumer", "topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
CONSUMER_LAG = Gauge(
    "bo_consumer_lag_messages", "High-water mark minus position", ["consumer", "topic", "partition"]
)
CONSUMER_STALLED = Gauge(
    "bo_consumer_stalled",
    "1 while the consume loop has made no progress for longer than its bound",
    ["consumer"],
)
OUTBOX_PUBLISHED = Counter("bo_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("bo_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "bo_outbox_oldest_unsent_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
DEAD_LETTERS = Gauge(
    "bo_dead_letters",
    "Dead letters this service has written, from its outbox (survives restarts)",
    ["service", "topic"],
)
HTTP_REQUESTS = Counter(
    "bo_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "bo_http_request_seconds", "HTTP request duration", ["service", "method", "route"]
)


class PoolCollector(Collector):
    """The SQLAlchemy connection pool of this process, read at scrape time."""

    def __init__(
        self, service: str, pool: Callable[[], Pool | None], limit: int | None = None
    ) -> None:
        self._service = service
        self._pool = pool
        self._limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self._pool()
        size = GaugeMetricFamily(
            "bo_db_pool_size", "Connections the pool keeps (overflow excluded)", labels=["service"]
        )
        limit = GaugeMetricFamily(
            "bo_db_pool_limit",
            "Connections the process may hold at once (pooled and overflow)",
            labels=["service"],
        )
        if self._limit is not None:
            limit.add_metric([self._service], self._limit)
        connections = GaugeMetricFamily(
            "bo_db_pool_connections",
            "Connections by state: checked_out (in use), idle (in the pool), overflow",
            labels=["service", "state"],
        )
        if pool is not None:
            # QueuePool has these; another pool class reports nothing rather than fail.
            status = {
                name: getattr(pool, name)()
                for name in ("size", "checkedout", "checkedin", "overflow")
                if hasattr(pool, name)
            }
            if "size" in status:
                size.add_metric([self._service], status["size"])
            for state, name in (
                ("checked_out", "checkedout"),
                ("idle", "checkedin"),
                ("overflow", "overflow"),
            ):
                if name in status:
                    connections.add_metric([self._service, state], max(status[name], 0))
        yield size
        yield limit
        yield connections

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


_pool_collectors: dict[str, PoolCollector] = {}


def watch_pool(service: str, pool: Callable[[], Pool | None], *, limit: int | None = None) -> None:
    """Report this process's pool (once per service name: a re-created app replaces it);
    `limit` is how many connections it may hold, overflow included."""
    previous = _pool_collectors.pop(service, None)
    if previous is not None:
        REGISTRY.unregister(previous)
    collector = _pool_collectors[service] = PoolCollector(service, pool, limit)
    REGISTRY.register(collector)
