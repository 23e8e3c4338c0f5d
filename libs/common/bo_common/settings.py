"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Kafka client options, explicit because aiokafka's defaults are unsafe for us.

    The timing defaults suit both Apache Kafka and the Tansu development broker, whose
    JoinGroup waits half the session timeout and whose fetch never returns early
    (docs/broker.md).
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    # Real Kafka supports the idempotent producer; Tansu does not, so it is a setting.
    enable_idempotence: bool = False
    session_timeout_ms: int = 3000
    heartbeat_interval_ms: int = 500
    fetch_max_wait_ms: int = 50
    max_poll_records: int = 500
    linger_ms: int = 5
    compression_type: str | None = None
    request_timeout_ms: int = 30000


class ServiceSettings(BaseSettings):
    """Fields every service has; subclasses set env_prefix (GATEWAY_, LEDGER_, ...)."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/backoffice"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    consumer_group: str | None = None
    # "all": one process serves the API, relays the outbox and consumes. "api" serves the API
    # only and "worker" relays and consumes, so that a burst of events never delays an HTTP
    # answer (the gateway runs split; any service can).
    role: Literal["all", "api", "worker"] = "all"
    # How often a handler is tried before its message goes to the dead letters.
    handler_attempts: int = 3
    # How often the relay looks for unsent events; it also looks at once after this
    # process commits a consumed batch (events caused by events).
    outbox_poll_interval_ms: int = 50
    outbox_batch_size: int = 1000
    # Connections per process, and as many again under a burst: 6 services of 2 x 5 stay
    # well inside PostgreSQL's default of 100 connections.
    db_pool_size: int = 5
    # Per API key and process (token bucket); a client can have its own (`bo keys limit`).
    rate_limit_per_s: float = Field(default=200.0, gt=0)
    rate_limit_burst: int = Field(default=400, ge=1)
    # Larger request bodies get 413 before they are read (a batch of 1,000 trades is ~400 kB).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # SIGTERM: how long the process may take to finish its batch and commit (three
    # quarters of it; a batch still running then is rolled back and read again at the next
    # start) and flush its outbox. An orchestrator's grace period must be longer, with the
    # time open HTTP requests take: docker-compose and Kubernetes give 45 s.
    shutdown_timeout_s: float = Field(default=15.0, gt=0)
    # /readyz turns false when the consume loop has neither committed a batch nor found
    # nothing to do for this long (a handler stuck on a lock, a batch failing over and over).
    consumer_stall_timeout_s: float = Field(default=60.0, gt=0)
    # How often the lag, outbox and dead-letter gauges are refreshed from broker and database.
    ops_sample_interval_s: float = Field(default=15.0, gt=0)
    # What `GET /v1/ops/status` reports as the version; images set BO_VERSION, otherwise
    # the installed package's version.
    # Spans are always recorded (trace ids in logs, outbox rows and Kafka headers); exporting
    # them is off unless "otlp" (to OTEL_EXPORTER_OTLP_ENDPOINT) or "console".
    traces_exporter: Literal["none", "otlp", "console"] = Field(
        default="none", validation_alias=AliasChoices("OTEL_TRACES_EXPORTER", "traces_exporter")
    )
    version: str | None = Field(
        default=None, validation_alias=AliasChoices("BO_VERSION", "version")
    )

    @property
    def group_id(self) -> str:
        return self.consumer_group or self.service_name
