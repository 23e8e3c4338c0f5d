"""What every HTTP request passes before a route: a body size limit, a per-key rate limit and
request metrics. Pure ASGI (no BaseHTTPMiddleware), so the hot path pays for no extra task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bo_common.metrics import HTTP_REQUESTS, HTTP_SECONDS
from bo_common.problems import PROBLEM_JSON, problem_body


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimited(Exception):
    def __init__(self, retry_after_s: float, limit: float) -> None:
        super().__init__(f"rate limit of {limit:g} requests/s for this key exceeded")
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """A token bucket per key in this process: `rate` requests a second on average, bursts
    of up to `burst`. With N replicas a key may reach N times the rate in total."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, *, rate: float | None = None, burst: int | None = None) -> None:
        """Take one token for `key`, or raise RateLimited with the wait until one is free."""
        rate = rate or self.rate
        burst = burst or self.burst
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(tokens=float(burst), updated=now)
        else:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens < 1:
            raise RateLimited((1 - bucket.tokens) / rate, rate)
        bucket.tokens -= 1


class EdgeMiddleware:
    """413 for a body over `max_body_bytes` (by Content-Length, or counted as it streams),
    and a count and duration of every request by route template and status."""

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        declared = _content_length(scope)
        received = 0
        over = False
        more_body = True

        async def receive_wrapper() -> Message:
            # Past the limit the route sees the body end there, and its answer is replaced.
            nonlocal received, over, more_body
            if over:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                more_body = bool(message.get("more_body"))
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if over:
                if message["type"] == "http.response.start":
                    status = 413
                    await self._too_large(scope, receive, send, declared, more_body=more_body)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if declared is not None and declared > self.max_body_bytes:
                status = 413
                await self._too_large(scope, receive, send, declared)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_SECONDS.labels(self.service, method, path).observe(time.perf_counter() - started)

    async def _too_large(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        declared: int | None,
        *,
        more_body: bool = True,
    ) -> None:
        # Read (and drop) a body of up to 8 times the limit, so that a client that writes
        # its whole request before reading sees the 413 instead of a broken connection;
        # a larger one is cut off.
        cap = 8 * self.max_body_bytes
        drained = 0
        close = declared is not None and declared > cap
        while more_body and not close:
            message = await receive()
            drained += len(message.get("body", b""))
            more_body = message["type"] == "http.request" and bool(message.get("more_body"))
            close = drained > cap
        body = problem_body(
            413,
            "Request too large",
            f"the request body is over the limit of {self.max_body_bytes} bytes",
            instance=scope.get("path"),
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *([(b"connection", b"close")] if close else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
