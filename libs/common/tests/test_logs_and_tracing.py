"""Log lines mask secrets and carry the ids; trace context survives a trip through headers.
Pure: no process, no broker."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.contextvars import get_contextvars

from bo_common.auth import generate_key
from bo_common.envelope import Envelope, new_event
from bo_common.logs import (
    REDACTED,
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    configure_logging,
    get_logger,
    redact_text,
)
from bo_common.outbox import Outbox, PlumbingSchema
from bo_common.tracing import (
    ANY_TRADE,
    cause_traces,
    child_traceparent,
    configure_tracing,
    current_trace_id,
    current_traceparent,
    kafka_headers,
    span_from_headers,
    trace_id_of,
    trace_owner,
    traceparent_of,
)

configure_tracing("tests")


@given(st.text(max_size=40), st.text(max_size=40))
def test_an_api_key_never_survives_redaction(before: str, after: str) -> None:
    key = generate_key()
    assert key not in redact_text(f"{before}{key}{after}")


def test_a_bearer_token_and_a_url_password_are_masked() -> None:
    text = redact_text("Authorization: Bearer abc.def-123456 postgresql://app:s3cr3t@db:5432/x")
    assert "abc.def-123456" not in text
    assert "s3cr3t" not in text
    assert "postgresql://app:" + REDACTED + "@db:5432/x" in text


def test_a_log_line_is_one_json_object_with_ids_and_no_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("ledger")
    key = generate_key()
    trace_id = secrets.token_hex(16)
    with span_from_headers(
        "test", {"traceparent": f"00-{trace_id}-{'2' * 16}-01"}, kind=SpanKind.SERVER, owner=None
    ):
        get_logger("test").info("request_seen", authorization=f"Bearer {key}", note=key)
    logging.getLogger().handlers.clear()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert key not in line
    assert record["service"] == "ledger"
    assert record["level"] == "info"
    assert record["trace_id"] == trace_id
    assert record["event_id"] is None
    assert record["correlation_id"] is None
    assert record["authorization"] == REDACTED


def test_a_span_continues_the_trace_of_its_kafka_headers() -> None:
    trace_id = secrets.token_hex(16)
    headers = kafka_headers(f"00-{trace_id}-{'3' * 16}-01")
    assert headers is not None
    with span_from_headers("consume", headers, kind=SpanKind.CONSUMER, owner="T-1") as span:
        assert current_trace_id() == trace_id
        assert trace_owner.get() == "T-1"
        inner = current_traceparent()
        # What the consume loop records per event, without the propagator.
        assert traceparent_of(span) == inner
    assert trace_owner.get() is None
    assert trace_id_of(inner) == trace_id
    # The span is a new one in that trace, not the caller's.
    assert inner is not None and inner.split("-")[2] != "3" * 16


def test_without_headers_a_new_trace_starts() -> None:
    with span_from_headers("request", {}, kind=SpanKind.SERVER, owner=ANY_TRADE) as span:
        first = current_trace_id()
        assert traceparent_of(span) == current_traceparent()
    with span_from_headers("request", {}, kind=SpanKind.SERVER, owner=ANY_TRADE):
        second = current_trace_id()
    assert first and second and first != second
    assert current_traceparent() is None
    assert trace_id_of("not a traceparent") is None
    assert kafka_headers(None) is None


_HEX = "0123456789abcdef"
_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_SPAN = "00f067aa0ba902b7"
# The near misses the propagator refuses, and what it accepts around them.
_TRACEPARENT_CASES = [
    f"00-{_TRACE}-{_SPAN}-01",
    f"00-{_TRACE}-{_SPAN}-00",
    f"cc-{_TRACE}-{_SPAN}-09",
    f"cc-{_TRACE}-{_SPAN}-01-what-follows",
    f" \t00-{_TRACE}-{_SPAN}-01 \t",
    f"00-{_TRACE}-{_SPAN}-01-more",
    f"ff-{_TRACE}-{_SPAN}-01",
    f"00-{'0' * 32}-{_SPAN}-01",
    f"00-{_TRACE}-{'0' * 16}-01",
    f"00-{_TRACE.upper()}-{_SPAN}-01",
    f"00-{_TRACE}-{_SPAN}-1",
    f"00-{_TRACE[1:]}-{_SPAN}-01",
    f"00-{_TRACE}-{_SPAN}-01 x",
    f"cc-{_TRACE}-{_SPAN}-01-" + "x" * 600,
    "",
    "not a traceparent",
]
_traceparents = st.one_of(
    st.sampled_from(_TRACEPARENT_CASES),
    st.builds(
        lambda v, t, s, f, rest: f"{v}-{t}-{s}-{f}{rest}",
        st.sampled_from(["00", "01", "ff", "0g"]),
        st.one_of(st.text(alphabet=_HEX, min_size=32, max_size=32), st.just("0" * 32)),
        st.one_of(st.text(alphabet=_HEX, min_size=16, max_size=16), st.just("0" * 16)),
        st.sampled_from(["00", "01", "ff", "0A"]),
        st.sampled_from(["", " ", "-", "-x", " x"]),
    ),
    st.text(max_size=60),
)
# Several headers on one record: the last traceparent wins.
_headers = st.lists(
    st.tuples(st.sampled_from(["traceparent", "TraceParent", "tracestate"]), _traceparents),
    max_size=3,
)


def _assert_child_of_same_trace(headers: list[tuple[str, str]]) -> None:
    """Both ways of starting an event's span without recording it (`span_from_headers`, and
    `child_traceparent` for an event of a run) read the header as OpenTelemetry's W3C
    propagator does: its trace and flags, or a new sampled trace where it finds none."""
    raw = [(name, value.encode("latin-1", "replace")) for name, value in headers]
    parent = [value for name, value in headers if name.lower() == "traceparent"]
    found = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": parent[-1]} if parent else {})
    ).get_span_context()
    with span_from_headers("consume", raw, kind=SpanKind.CONSUMER, owner=None) as span:
        in_span = traceparent_of(span)
        assert current_traceparent() == in_span
    assert in_span is not None
    made = child_traceparent(raw)
    for value in (in_span, made):
        version, trace_id, span_id, flags = value.split("-")
        assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
        assert int(trace_id, 16) != 0 and int(span_id, 16) != 0
        if found.is_valid:
            assert (trace_id, flags) == (f"{found.trace_id:032x}", f"{int(found.trace_flags):02x}")
            assert int(span_id, 16) != found.span_id
        else:  # a new trace each time
            assert flags == "01"
            assert trace_id != child_traceparent(raw).split("-")[1]
    assert in_span.split("-")[2] != made.split("-")[2]


@pytest.mark.parametrize("value", _TRACEPARENT_CASES)
def test_a_runs_traceparent_reads_the_header_as_the_propagator(value: str) -> None:
    """The consume loop names each event of a run as a cause by `child_traceparent`, not by
    opening its span: the same trace (or a new one where the span would start one), the same
    flags, a span id of its own."""
    _assert_child_of_same_trace([("traceparent", value)])


def test_of_several_traceparent_headers_the_last_counts() -> None:
    other = f"00-{'5' * 32}-{_SPAN}-00"
    _assert_child_of_same_trace([("traceparent", other), ("TraceParent", _TRACEPARENT_CASES[0])])
    _assert_child_of_same_trace([("traceparent", _TRACEPARENT_CASES[0]), ("traceparent", other)])
    _assert_child_of_same_trace([("traceparent", _TRACEPARENT_CASES[0]), ("traceparent", "x")])


@given(_headers)
def test_a_runs_traceparent_is_what_the_events_span_would_carry(
    headers: list[tuple[str, str]],
) -> None:
    _assert_child_of_same_trace(headers)


def test_a_bound_log_context_puts_back_what_was_there() -> None:
    bind_contextvars(event_id="outer")
    try:
        with bound_contextvars(event_id="inner", correlation_id="T-1"):
            assert get_contextvars() == {"event_id": "inner", "correlation_id": "T-1"}
            with bound_contextvars(correlation_id="T-2"):
                assert get_contextvars() == {"event_id": "inner", "correlation_id": "T-2"}
            assert get_contextvars() == {"event_id": "inner", "correlation_id": "T-1"}
        assert get_contextvars() == {"event_id": "outer"}
    finally:
        clear_contextvars()


def _traced_outbox() -> Outbox:
    outbox = Outbox(session=None)  # type: ignore[arg-type]  (put() does not touch it)
    return outbox


def _event(correlation_id: str, cause: Envelope | None = None) -> Envelope:
    return new_event(
        type="ledger.posted",
        source="ledger",
        subject=correlation_id,
        data={},
        actor="service:ledger",
        correlation_id=correlation_id,
        cause=cause,
    )


@pytest.fixture
def trace_columns() -> Iterator[None]:
    before = PlumbingSchema.trace_columns
    PlumbingSchema.trace_columns = True
    yield
    PlumbingSchema.trace_columns = before


def test_an_event_put_after_its_causes_span_ended_keeps_the_causes_trace(
    trace_columns: None,
) -> None:
    cause = _event("T-1")
    caused_in = f"00-{secrets.token_hex(16)}-{'4' * 16}-01"
    token = cause_traces.set({cause.id: caused_in})
    try:
        outbox = _traced_outbox()
        outbox.put(_event("T-1", cause=cause), topic="ledger.events", key="ACC-001")
    finally:
        cause_traces.reset(token)
    (row,) = outbox._rows
    assert row["traceparent"] == caused_in
    assert row["correlation_id"] == "T-1"


def test_an_event_of_another_trade_than_the_span_looks_up_its_trades_trace(
    trace_columns: None,
) -> None:
    outbox = _traced_outbox()
    with span_from_headers("consume", {}, kind=SpanKind.CONSUMER, owner="T-1"):
        outbox.put(_event("T-1"), topic="ledger.events", key=None)
        outbox.put(_event("T-2"), topic="ledger.events", key=None)
    with span_from_headers("request", {}, kind=SpanKind.SERVER, owner=ANY_TRADE):
        outbox.put(_event("T-3"), topic="ledger.events", key=None)
    same, other, request = outbox._rows
    assert same["_look_up_trace"] is False and trace_id_of(same["traceparent"])
    # Its trade's trace comes from the service's earlier outbox rows at flush.
    assert other["_look_up_trace"] is True
    assert request["_look_up_trace"] is False and trace_id_of(request["traceparent"])


def test_a_service_app_makes_no_second_server_span_of_its_own_framework() -> None:
    """FastAPI's own OpenTelemetry (newer releases) would start an SDK span for every
    request beside ours; ours is ids only while no exporter is set, so no SDK span may
    start while a request is served."""
    from fastapi.testclient import TestClient
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from bo_common.runtime import ServiceRuntime, Subscription, build_app
    from bo_common.settings import ServiceSettings

    started: list[str] = []

    class Seen(SpanProcessor):
        def on_start(self, span: object, parent_context: object = None) -> None:
            started.append(getattr(span, "name", "?"))

    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(Seen())
    runtime = ServiceRuntime(ServiceSettings(), Subscription(topics=[], handlers={}))
    app = build_app(runtime, title="t", description="d", routers=[])
    response = TestClient(app).get("/healthz", headers={"traceparent": TRACEPARENT_SAMPLE})

    assert response.status_code == 200
    assert response.headers["traceparent"].split("-")[1] == TRACEPARENT_SAMPLE.split("-")[1]
    assert started == []


TRACEPARENT_SAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
