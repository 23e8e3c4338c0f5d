"""W3C trace context (OpenTelemetry) across HTTP and Kafka, so that one trade is one trace.

An HTTP request continues the caller's `traceparent` (or starts a trace); a consumed event
continues the `traceparent` of its Kafka record. Each event a service writes to its outbox
keeps the trace context it was caused in (`outbox.traceparent`), and the relay sends it as a
Kafka header, so the context survives a crash between the two. Work that is not caused by
one request or one event of the trade (a netting cycle, a depository answer covering many
trades) takes the trace of the trade from the service's own outbox (`outbox.correlation_id`,
see bo_common.outbox), so the trade's later events stay in its trace.

Spans are recorded by the OpenTelemetry SDK; exporting them is off unless
OTEL_TRACES_EXPORTER=otlp (then the exporter reads the standard OTEL_EXPORTER_OTLP_*
variables) or console.
"""

from __future__ import annotations

import contextlib
import random
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
# Whose trace the current context is: the correlation (trade) id of the event being applied;
# ANY_TRADE inside an HTTP request (its trades belong to the caller's trace); None where the
# work covers many trades (a raw depository message), so each trade keeps its own trace.
ANY_TRADE = "*"
trace_owner: ContextVar[str | None] = ContextVar("trace_owner", default=None)
# Within a consumed batch: the `traceparent` of each applied event's span, by event id. An
# event put in the outbox after its cause's span ended (a set-based handler writes at the
# unit of work's flush) takes the trace of its cause (`causation_id`) from here.
cause_traces: ContextVar[dict[uuid.UUID, str] | None] = ContextVar("cause_traces", default=None)

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("bo_common")
_configured = False
# Whether spans go anywhere (an exporter is set). Without one, a span is only its ids: a
# new span id in the parent's trace (or a new trace), made without the SDK's recording
# machinery, which cost some 45 us per consumed event for spans nobody would see.
_recording = False

Exporter = Literal["none", "otlp", "console"]


def configure_tracing(service: str, exporter: Exporter = "none") -> None:
    """Install the SDK tracer provider once per process (ids are generated for new traces
    and spans; without it every span would be a no-op carrying only its parent's ids)."""
    global _configured, _recording
    if _configured:
        return
    _recording = exporter != "none"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, or None outside any trace."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def traceparent_of(span: trace.Span) -> str | None:
    """The `traceparent` of a span: what current_traceparent() gives while it is current,
    without the propagator's round trip through a carrier (once per consumed event)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def recording() -> bool:
    """Whether spans are recorded and exported (an exporter is configured)."""
    return _recording


# The W3C `traceparent` as the OpenTelemetry propagator reads it (version, trace id, span
# id, flags, and for a later version what follows).
_TRACEPARENT = re.compile(
    "^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_MAX_TRACEPARENT = 512


def traceparent_in(headers: Iterable[tuple[str, bytes]] | Mapping[str, str]) -> str | None:
    """The `traceparent` header among a Kafka record's (or HTTP) headers, as it came."""
    if isinstance(headers, Mapping):
        return dict(headers).get(TRACEPARENT)
    header: str | None = None
    for name, value in headers:
        if name.lower() == TRACEPARENT:
            header = value.decode("latin-1")  # the last one wins, as in the propagator's
    return header


def _parent_ids(header: str | None) -> tuple[str, str] | None:
    """The trace id and flags (hex) of a `traceparent` the W3C propagator would accept."""
    if not header or len(header) > _MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.search(header)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16 or version == "ff":
        return None
    if version == "00" and rest:
        return None
    return trace_id, flags


def child_traceparent(headers: Iterable[tuple[str, bytes]]) -> str:
    """The `traceparent` of a new span continuing the trace in a Kafka record's `headers`
    (a new trace if they carry no valid one), without making the span.

    What `traceparent_of` gives for the span of `span_from_headers` when spans are not
    recorded, at a fraction of the cost: for the events of a run, whose spans would be
    opened and closed only to be named as the cause of what the run publishes."""
    parent = _parent_ids(traceparent_in(headers))
    span_id = f"{_random_id(64):016x}"
    if parent is not None:
        return f"00-{parent[0]}-{span_id}-{parent[1]}"
    return f"00-{_random_id(128):032x}-{span_id}-{int(trace.TraceFlags.SAMPLED):02x}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32 hex digits of a valid `traceparent`'s trace id."""
    if not traceparent:
        return None
    span = trace.get_current_span(_propagator.extract({TRACEPARENT: traceparent}))
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _from_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, str]) -> otel_context.Context:
    if isinstance(headers, Mapping):
        return _propagator.extract(dict(headers))
    carrier = {
        name.lower(): value.decode("latin-1")
        for name, value in headers
        if name.lower() == TRACEPARENT
    }
    return _propagator.extract(carrier)


@contextlib.contextmanager
def span_from_headers(
    name: str,
    headers: Iterable[tuple[str, bytes]] | Mapping[str, str],
    *,
    kind: trace.SpanKind,
    owner: str | None,
    attributes: Mapping[str, str] | None = None,
) -> Iterator[trace.Span]:
    """A span continuing the trace in `headers` (a new trace if they carry none), current for
    the block; `owner` says whose trace it is (see `trace_owner`)."""
    token = trace_owner.set(owner)
    try:
        if _recording:
            with _tracer.start_as_current_span(
                name,
                context=_from_headers(headers),
                kind=kind,
                attributes=dict(attributes or {}),
            ) as span:
                yield span
        else:
            span = _ids_only_span(_parent_ids(traceparent_in(headers)))
            # The span alone, as the propagator's context would hold the remote parent alone.
            attached = otel_context.attach(trace.set_span_in_context(span, _EMPTY))
            try:
                yield span
            finally:
                otel_context.detach(attached)
    finally:
        trace_owner.reset(token)


_EMPTY = otel_context.Context()


def _ids_only_span(parent: tuple[str, str] | None) -> trace.Span:
    """A span that records nothing: a new span id in the parent's trace, or a new trace."""
    span_id = _random_id(64)
    if parent is not None:
        trace_id, flags = parent
        return trace.NonRecordingSpan(
            trace.SpanContext(int(trace_id, 16), span_id, False, trace.TraceFlags(int(flags, 16)))
        )
    return trace.NonRecordingSpan(
        trace.SpanContext(
            _random_id(128), span_id, False, trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
    )


def _random_id(bits: int) -> int:
    while True:  # zero is not a valid id
        value = random.getrandbits(bits)
        if value:
            return value


def kafka_headers(traceparent: str | None) -> list[tuple[str, bytes]] | None:
    if not traceparent:
        return None
    return [(TRACEPARENT, traceparent.encode("ascii"))]
