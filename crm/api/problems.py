"""RFC 9457 problem+json responses for every error the API returns."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from tortoise import connections
from tortoise.exceptions import OperationalError

from crm.errors import ServiceError

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)

# Seconds a client should wait after the database was briefly out of reach.
DATABASE_RETRY_AFTER = 2
# Errors of a database that is restarting, unreachable, out of connections or busy: worth
# a retry, unlike a bad query. Handled below the server-error middleware, so the response is
# a normal one and the client's HTTP connection stays usable.
_DATABASE_LOSS = (
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: the connection is gone
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 starting up
    asyncpg.exceptions.InsufficientResourcesError,  # 53300 too many connections
    asyncpg.InterfaceError,  # "connection is closed" on a connection the server dropped
    asyncpg.exceptions.InternalClientError,  # a dead connection caught mid-operation
    ConnectionError,  # refused or reset while connecting (tortoise's DBConnectionError too)
)
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """A problem+json response; ``errors`` lists each bad field and why, ``code`` the case."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    # Drop the "body"/"query"/"path" prefix: the client cares about its own field names.
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in {"body", "query", "path", "header", "form", "cookie"}
        else list(map(str, loc))
    )
    return ".".join(parts) or str(loc[0] if loc else "body")


def _validation_reason(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', 'cannot be parsed')}"
    if kind == "value_error":
        # Our own validators' words, without pydantic's "Value error, " in front.
        return str(error.get("ctx", {}).get("error", error.get("msg", "invalid value")))
    return str(error.get("msg", "invalid value"))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_path(tuple(e.get("loc", ()))), "reason": _validation_reason(e)}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
    return problem(422, "Validation failed", detail, errors)


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        [{"field": e.field, "reason": e.reason} for e in exc.errors],
        headers=headers,
        code=exc.code,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
    return problem(
        exc.status_code,
        titles.get(exc.status_code, "Error"),
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "an unexpected error occurred; it was logged")


def is_database_loss(exc: BaseException) -> bool:
    """True for a transient loss of the database (PostgreSQL gone, SQLite locked), not a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _DATABASE_LOSS):
            return True
        if isinstance(current, (sqlite3.OperationalError, OperationalError)) and any(
            phrase in str(current) for phrase in _SQLITE_BUSY
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_loss(exc):
        return await _on_unexpected_error(request, exc)
    logger.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
    )
    # The pool may hold more connections the server dropped: have them replaced now rather
    # than each failing one more request.
    with contextlib.suppress(Exception):
        client = connections.get("default")
        expire = getattr(client, "_expire_connections", None)
        if expire is not None:
            await expire()
    return problem(
        503,
        "Service unavailable",
        "the database is briefly unavailable; retry shortly",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        code="database_unavailable",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Render validation, service, HTTP and unexpected errors as problem+json."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for error in (*_DATABASE_LOSS, OperationalError, sqlite3.OperationalError):
        app.add_exception_handler(error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
