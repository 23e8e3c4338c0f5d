"""RFC 9457 problem+json responses for every error a service returns."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from bo_common.auth import NotAuthenticated, NotAuthorised
from bo_common.logs import get_logger

log = get_logger(__name__)


def _database_unavailable(error: Exception) -> bool:
    """The database away or busy (refused, dropped or exhausted connections, pool timeouts):
    503, worth a retry. Any other database error is a bug: 500."""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        name = type(error.orig).__name__ if error.orig is not None else ""
        return name in _UNAVAILABLE_DRIVER_ERRORS
    return False


# asyncpg's errors reach SQLAlchemy as a plain DBAPIError; these mean "not now".
_UNAVAILABLE_DRIVER_ERRORS = frozenset(
    {
        "TooManyConnectionsError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "AdminShutdownError",
        "CrashShutdownError",
        "ConnectionFailureError",
        "SerializationError",
        "DeadlockDetectedError",
        "LockNotAvailableError",
        "QueryCanceledError",
    }
)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raised at the HTTP edge (never in domain code) to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers
        self.extra = extra


def problem_body(
    status: int, title: str, detail: str, *, instance: str | None = None, **extra: Any
) -> bytes:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(error: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            position = item.get("loc", ("body", "?"))[-1]
            detail = (item.get("ctx") or {}).get("error", "invalid")
            reason = f"not valid JSON ({detail}) at character {position}"
            errors.append({"field": "body", "reason": reason})
            continue
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        errors.append({"field": ".".join(location) or "body", "reason": str(item.get("msg"))})
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = field_errors(error)
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        return problem_response(
            422,
            "Validation failed",
            f"{first['field']}: {first['reason']}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(
            error.status,
            error.title,
            error.detail,
            instance=request.url.path,
            type_=error.type,
            headers=error.headers,
            **error.extra,
        )

    @app.exception_handler(NotAuthenticated)
    async def _unauthenticated(request: Request, error: NotAuthenticated) -> JSONResponse:
        return problem_response(
            401,
            "Not authenticated",
            str(error),
            instance=request.url.path,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(NotAuthorised)
    async def _forbidden(request: Request, error: NotAuthorised) -> JSONResponse:
        return problem_response(403, "Forbidden", str(error), instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and "parsing the body" in str(error.detail):
            # FastAPI's answer to a body that is not UTF-8: one more invalid body (422).
            reason = "not JSON in UTF-8"
            return problem_response(
                422,
                "Validation failed",
                f"body: {reason}",
                instance=request.url.path,
                errors=[{"field": "body", "reason": reason}],
            )
        return problem_response(
            error.status_code,
            str(error.detail),
            str(error.detail),
            instance=request.url.path,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database(request: Request, error: Exception) -> JSONResponse:
        if not _database_unavailable(error):
            return await _unexpected(request, error)
        log.warning("database_unavailable", path=request.url.path, error=str(error)[:300])
        return problem_response(
            503,
            "Service unavailable",
            "the database is unavailable or busy; nothing was applied, retry shortly",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(
            500,
            "Internal error",
            "the request failed unexpectedly; nothing was applied",
            instance=request.url.path,
        )
