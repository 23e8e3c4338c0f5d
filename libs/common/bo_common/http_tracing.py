"""Trace context on HTTP: every request is a span continuing the caller's `traceparent` (or
starting a trace), and every answer carries the `traceparent` of that span, so a client can
follow what its request caused. Pure ASGI, like bo_common.edge: the opentelemetry-instrumentation
ASGI package is not a dependency, and this needs a few lines, not its generality."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bo_common.tracing import ANY_TRADE, TRACEPARENT, current_traceparent, span_from_headers


class TraceContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == TRACEPARENT.encode()
        }
        method = scope.get("method", "")
        status = 500
        # Trades captured in a request belong to the request's trace.
        with span_from_headers(
            method,
            headers,
            kind=SpanKind.SERVER,
            owner=ANY_TRADE,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:
            traceparent = (current_traceparent() or "").encode("latin-1")

            async def send_with_traceparent(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if traceparent:
                        message["headers"] = [
                            *message.get("headers", ()),
                            (TRACEPARENT.encode(), traceparent),
                        ]
                await send(message)

            try:
                await self.app(scope, receive, send_with_traceparent)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
