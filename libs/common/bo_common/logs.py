"""JSON logs on stdout, one object a line: service, level, the event id and correlation
(trade) id of the message at hand, the trace id, and never a secret.

Secrets are kept out in two ways: nothing logs a request's headers, and a last processor
masks what looks like one anyway (an API key, a password in a database URL, a value under
a key such as `authorization` or `password`), also inside exception text."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

from bo_common.tracing import current_trace_id

bind_contextvars = structlog.contextvars.bind_contextvars
clear_contextvars = structlog.contextvars.clear_contextvars


class bound_contextvars:
    """Bind `kw` to the context-local log context for a block, then put back exactly what
    was there (structlog's own reads and rebinds every context variable of the context to
    do this, which cost more than the rest of applying an event's context)."""

    __slots__ = ("_kw", "_tokens")

    def __init__(self, **kw: Any) -> None:
        self._kw = kw
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._kw)

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


def configure_logging(service: str, level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            _add_ids,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_service(service: str) -> structlog.types.Processor:
    def add(
        _logger: object, _method: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


# Every line has these keys, null where they do not apply, so a log query never needs to
# guess whether a field exists.
_ID_FIELDS = ("event_id", "correlation_id", "trace_id")


def _add_ids(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    if event_dict.get("trace_id") is None:
        event_dict["trace_id"] = current_trace_id()
    for name in _ID_FIELDS:
        event_dict.setdefault(name, None)
    return event_dict


REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(
    r"^(authorization|cookie|set-cookie|password|passwd|secret|token|api_?key|x-api-key"
    r"|.*_(password|secret|token))$",
    re.I,
)
# An API key (bo_common.auth: "bo_" and 43 URL-safe characters), a bearer token, and the
# password of a URL's user info.
_SECRET_TEXT = (
    (re.compile(r"bo_[A-Za-z0-9_-]{40,}"), "bo_" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
)


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEYS.search(k) else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The last step before rendering: mask anything that looks like a secret."""
    return {
        key: REDACTED if _SECRET_KEYS.search(key) else _redact(value)
        for key, value in event_dict.items()
    }


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
