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
from opentelemetry.trace import SpanKind

from bo_common.auth import generate_key
from bo_common.envelope import Envelope, new_event
from bo_common.logs import REDACTED, configure_logging, get_logger, redact_text
from bo_common.outbox import Outbox, PlumbingSchema
from bo_common.tracing import (
    ANY_TRADE,
    cause_traces,
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
