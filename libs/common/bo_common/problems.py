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

# Database errors that a retry cannot cure are bugs (500); the rest (connections refused,
# dropped or exhausted, pool timeouts) are the database being away or busy (503).
_DATABASE_BUGS = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    sa_exc.ProgrammingError,
    sa_exc.NotSupportedError,
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
        if isinstance(error, _DATABASE_BUGS):
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
