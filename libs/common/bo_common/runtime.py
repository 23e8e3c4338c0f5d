"""A service process: engine, producer, outbox relay, consume loops, and the FastAPI app
around them with health, readiness, metrics, auth and problem handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bo_common.auth import ACCESS_HANDLERS, ClientLimits, KeyStore, Principal, Role, require_role
from bo_common.consumer import (
    AppliedIds,
    BatchHandler,
    ConsumeLoop,
    Handler,
    RawBatchHandler,
    RawHandler,
)
from bo_common.db import make_engine, make_sessionmaker, open_pool
from bo_common.edge import EdgeMiddleware, RateLimited, RateLimiter
from bo_common.http_tracing import TraceContextMiddleware
from bo_common.kafka import start_producer
from bo_common.logs import configure_logging, get_logger
from bo_common.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PENDING,
    watch_pool,
)
from bo_common.ops import (
    OPS_STATUS_RESPONSES,
    LagProbe,
    OpsStatus,
    dead_letters,
    last_consumed_at,
    outbox_status,
    service_version,
)
from bo_common.outbox import OutboxRelay, PlumbingSchema
from bo_common.problems import install_problem_handlers, problem_response
from bo_common.settings import ServiceSettings
from bo_common.topics import ACCESS_EVENTS
from bo_common.tracing import configure_tracing, shutdown_tracing
from bo_common.unit_of_work import UnitOfWork

log = get_logger(__name__)


@dataclass
class Subscription:
    """What the service's consume loop reads and which handler applies each event type."""

    topics: Sequence[str]
    handlers: Mapping[str, Handler]
    # For a consumer that follows every event type of its topics (the status view, audit).
    default_handler: Handler | None = None
    # Topics whose messages are not envelopes (ISO 20022 XML on csd.status): the handler of
    # each such topic's raw values. These topics are read too (no need to list them twice).
    raw_handlers: Mapping[str, RawHandler] = field(default_factory=dict)
    # Event types applied a run at a time (bo_common.consumer.BatchHandler); each keeps its
    # entry in `handlers` for a run that fails and is applied event by event.
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    # The default handler's, for runs of the event types it applies.
    default_batch_handler: BatchHandler | None = None
    # For runs of raw messages of a topic (each topic keeps its entry in `raw_handlers`).
    raw_batch_handlers: Mapping[str, RawBatchHandler] = field(default_factory=dict)
    # For a service whose own records show every event it applied (bo_common.consumer.
    # AppliedIds): it keeps no inbox. `last_applied_at` then says when it last applied one
    # (the ops status's `last_consumed_at`, read from the inbox otherwise).
    applied_ids: AppliedIds | None = None
    last_applied_at: Callable[[AsyncEngine], Awaitable[datetime | None]] | None = None


class ServiceRuntime:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    keys: KeyStore

    def __init__(
        self,
        settings: ServiceSettings,
        subscription: Subscription,
        *,
        background: Sequence[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = (),
        client_limits: ClientLimits | None = None,
    ) -> None:
        self.settings = settings
        self._client_limits = client_limits
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.subscription = subscription
        self._background = background
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: list[asyncio.Task[None]] = []
        # Set when the process is asked to stop: background jobs may wait on it.
        self.stopping = asyncio.Event()
        self.loop: ConsumeLoop | None = None
        self.relay: OutboxRelay | None = None
        self.state: dict[str, Any] = {}
        self.lag_probe = LagProbe(settings.kafka, client_id=settings.service_name)

    @property
    def consumed_topics(self) -> list[str]:
        """Every topic the service's consumer group reads."""
        return list(
            dict.fromkeys(
                [*self.subscription.topics, *self.subscription.raw_handlers, ACCESS_EVENTS]
            )
        )

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    async def start(self) -> None:
        s = self.settings
        limit = 2 * s.db_pool_size  # connections this process may hold at once
        name = s.service_name if s.role == "all" else f"{s.service_name}-{s.role}"
        if s.role == "api":
            # An API process keeps every connection it may use, opened at start: an
            # overflow connection is opened for a burst and closed when returned, so at the
            # moment requests queue up each one paid for a new server process (the intake
            # API's slowest requests came in such bursts).
            self.engine = make_engine(
                s.database_url, pool_size=limit, max_overflow=0, application_name=name
            )
            await open_pool(self.engine, limit)
        else:
            self.engine = make_engine(
                s.database_url, pool_size=s.db_pool_size, application_name=name
            )
        watch_pool(s.service_name, lambda: self.engine.pool, limit=limit)
        self.sessions = make_sessionmaker(self.engine)
        if not await PlumbingSchema.detect(self.engine):
            log.warning("plumbing_not_migrated", hint="run the migrations (bo migrate)")
        self.keys = KeyStore(self.sessions, limits=self._client_limits)
        self.producer = await start_producer(s.kafka, client_id=s.service_name)
        if s.role == "api":
            return  # the worker process relays and consumes
        self.relay = OutboxRelay(
            service=s.service_name,
            engine=self.engine,
            producer=self.producer,
            poll_interval_ms=s.outbox_poll_interval_ms,
            batch_size=s.outbox_batch_size,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        handlers: dict[str, Handler] = {**ACCESS_HANDLERS, **self.subscription.handlers}
        topics = self.consumed_topics
        self.loop = ConsumeLoop(
            name=s.service_name,
            topics=topics,
            handlers=handlers,
            sessions=self.sessions,
            kafka=s.kafka,
            group_id=s.group_id,
            handler_attempts=s.handler_attempts,
            default_handler=self.subscription.default_handler,
            default_batch_handler=self.subscription.default_batch_handler,
            raw_batch_handlers=self.subscription.raw_batch_handlers,
            raw_handlers=self.subscription.raw_handlers,
            batch_handlers=self.subscription.batch_handlers,
            applied_ids=self.subscription.applied_ids,
            on_commit=self.relay.wake,
            stall_timeout_s=s.consumer_stall_timeout_s,
        )
        self._tasks.append(asyncio.create_task(self.loop.run(), name="consume-loop"))
        for job in self._background:
            self._jobs.append(asyncio.create_task(job(self)))
        self._tasks.extend(self._jobs)
        self._tasks.append(asyncio.create_task(self._sample(), name="ops-sampler"))
        for task in self._tasks:
            task.add_done_callback(_log_task_end)

    async def _sample(self) -> None:
        """Keeps the gauges that need a query (lag from the broker, outbox backlog and age,
        dead letters) fresh between scrapes, every `ops_sample_interval_s`."""
        interval = self.settings.ops_sample_interval_s
        while not self.stopping.is_set():
            try:
                await self.sample_gauges()
            except Exception as error:  # the database or broker is away: next time
                log.warning("ops_sample_failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)

    async def sample_gauges(self) -> None:
        s = self.settings
        outbox, letters, lag = await asyncio.gather(
            outbox_status(self.engine),
            dead_letters(self.engine),
            self.lag_probe.lag(s.group_id, self.consumed_topics),
        )
        if self.loop is not None:
            self.loop.stalled_for()  # sets bo_consumer_stalled
        OUTBOX_PENDING.labels(s.service_name).set(outbox.unsent)
        OUTBOX_OLDEST_AGE.labels(s.service_name).set(outbox.oldest_unsent_age_seconds or 0)
        for count in letters.by_topic:
            DEAD_LETTERS.labels(s.service_name, count.topic).set(count.count)
        for partition in lag.partitions:
            CONSUMER_LAG.labels(s.service_name, partition.topic, str(partition.partition)).set(
                partition.lag
            )

    async def stop(self) -> None:
        """SIGTERM, within `shutdown_timeout_s`: stop fetching, finish and commit the batch
        under way (offsets too), then publish what the outbox still holds, then close."""
        started = time.monotonic()

        def remaining() -> float:
            return max(self.settings.shutdown_timeout_s - (time.monotonic() - started), 0.1)

        self.stopping.set()
        if self.loop is not None:
            await self.loop.stop()
        loop_tasks = [t for t in self._tasks if t.get_name() == "consume-loop"]
        if loop_tasks:
            # Most of the budget for the batch under way; the rest flushes the outbox. A
            # batch that cannot finish in it (a busy machine) is cancelled: its transaction
            # rolls back and, its offsets uncommitted, it is read again at the next start.
            _done, late = await asyncio.wait(
                loop_tasks, timeout=0.75 * self.settings.shutdown_timeout_s
            )
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=min(remaining(), 2.0))
            log.info(
                "consumer_drained",
                seconds=round(time.monotonic() - started, 3),
                batch_finished=not late,
            )
        # Periodic jobs get a moment to end at their own pace (they see `stopping`); one
        # still inside a transaction is cancelled and rolled back, and runs again at start.
        if self._jobs:
            _done, late = await asyncio.wait(self._jobs, timeout=min(remaining(), 2.0))
            for task in late:
                task.cancel()
        if self.relay is not None:
            await self.relay.stop()
            relay_tasks = [t for t in self._tasks if t.get_name() == "outbox-relay"]
            if relay_tasks:
                await asyncio.wait(relay_tasks, timeout=remaining())
            # The last batch's events (and any backlog) go out now rather than at next start.
            try:
                flushed = await asyncio.wait_for(self.relay.drain(), timeout=remaining())
                log.info("outbox_flushed", published=flushed)
            except Exception as error:  # broker away or out of time: they wait for next start
                log.warning("outbox_not_flushed", error=repr(error))
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        log.info("runtime_stopped", seconds=round(time.monotonic() - started, 3))
        await self.lag_probe.close()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.engine.dispose()
        shutdown_tracing()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as connection:
                await asyncio.wait_for(connection.execute(sa.text("SELECT 1")), timeout=2)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unreachable: {error!r}"
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=2)
            checks["broker"] = "ok"
        except Exception as error:
            checks["broker"] = f"unreachable: {error!r}"
        if self.settings.role != "api":
            loop_ready = self.loop is not None and self.loop.connected
            checks["consumer"] = "ok" if loop_ready else "starting"
            if self.loop is not None and loop_ready:
                stalled_s = self.loop.stalled_for()
                if stalled_s is not None:
                    checks["consumer"] = f"stalled: no progress for {stalled_s:.0f} s"
        for task in self._tasks:
            if task.done() and task.get_name() != "ops-sampler":
                checks[task.get_name()] = "stopped"
        return checks

    async def ops_status(self) -> OpsStatus:
        checks = await self.readiness()
        s = self.settings
        outbox, letters, consumed, lag = await asyncio.gather(
            outbox_status(self.engine),
            dead_letters(self.engine),
            (self.subscription.last_applied_at or last_consumed_at)(self.engine),
            self.lag_probe.lag(s.group_id, self.consumed_topics),
        )
        return OpsStatus(
            service=s.service_name,
            process_role=s.role,
            version=s.version or service_version(),
            ready=all(value == "ok" for value in checks.values()),
            checks=checks,
            consumer=lag,
            outbox=outbox,
            dead_letters=letters,
            last_consumed_at=consumed,
            last_published_at=outbox.last_published_at,
            generated_at=datetime.now(UTC),
        )


def _log_task_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background_task_crashed", task=task.get_name(), error=repr(error))


async def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def authenticated(request: Request, runtime: RuntimeDep) -> Principal:
    principal = await runtime.keys.principal_for(request.headers.get("authorization"))
    request.state.principal = principal
    limit = principal.rate_limit
    runtime.limiter.acquire(
        str(principal.key_id),
        rate=limit[0] if limit else None,
        burst=limit[1] if limit else None,
    )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticated)]


def roles(*allowed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only these roles through (401 first, then 403)."""

    async def check(principal: PrincipalDep) -> Principal:
        return require_role(principal, *allowed)

    return check


READERS = (Role.COMPLIANCE, Role.OPS, Role.ADMIN)


# FastAPI's own OpenTelemetry (newer releases) made a second server span, and OTel metrics
# and logs, for every request once a tracer provider is installed: this service has its
# own (TraceContextMiddleware, Prometheus, structured logs). Theirs were about 5 % of the
# intake API's samples in a py-spy profile. Releases without the option have none of it.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def build_app(
    runtime: ServiceRuntime, *, title: str, description: str, routers: Sequence[APIRouter]
) -> FastAPI:
    settings = runtime.settings
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.traces_exporter)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        # What start-up loaded (modules, ISO tables, calendars) is never garbage: keep it out
        # of the collector's scans, and collect young objects less often, so that a full
        # collection does not pause a request for tens of milliseconds.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        log.info("service_started", port=settings.port)
        try:
            yield
        finally:
            log.info("service_stopping")
            await runtime.stop()
            log.info("service_stopped")

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)

    app.add_middleware(
        EdgeMiddleware, service=settings.service_name, max_body_bytes=settings.max_body_bytes
    )
    # Outermost: the request's span covers the size limit and the metrics too.
    app.add_middleware(TraceContextMiddleware)

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, error: RateLimited) -> JSONResponse:
        return problem_response(
            429,
            "Too many requests",
            f"{error}; retry after {error.retry_after_header} s",
            instance=request.url.path,
            headers={"Retry-After": error.retry_after_header},
        )

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="The process is alive",
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {"status": "ok", "service": settings.service_name}
                    }
                }
            }
        },
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Database and broker are reachable",
        responses={
            200: {
                "description": "Ready",
                "content": {
                    "application/json": {
                        "example": {
                            "status": "ready",
                            "checks": {"database": "ok", "broker": "ok", "consumer": "ok"},
                        }
                    }
                },
            },
            503: {
                "description": "Not ready; `checks` says what is not",
                "content": {
                    "application/json": {
                        "example": {
                            "status": "not ready",
                            "checks": {"database": "ok", "broker": "unreachable: ..."},
                        }
                    }
                },
            },
        },
    )
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "content": {
                    CONTENT_TYPE_LATEST.split(";")[0]: {
                        "example": 'bo_events_applied_total{service="ledger"} 42.0\n'
                    }
                }
            }
        },
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/v1/ops/status",
        tags=["operations"],
        summary="What an operator needs of this process (read by `bo status`)",
        description=(
            "Readiness, version, the consumer group's lag per topic and partition (committed "
            "offset against the high-water mark, read from the broker), the outbox backlog and "
            "the age of its oldest unsent row, dead letters written per topic, and when the "
            "service last consumed and published. Roles: compliance, ops, admin. The fields "
            "are stable: new ones may be added, none renamed or removed."
        ),
        responses=OPS_STATUS_RESPONSES,
    )
    async def ops_status(
        _principal: Annotated[Principal, Depends(roles(*READERS))],
    ) -> OpsStatus:
        return await runtime.ops_status()

    for router in routers:
        app.include_router(router)
    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )
