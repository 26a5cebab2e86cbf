"""The service's error responses: every refusal as ``{"error": {"code", "message", "fields"?}}``.

Service errors carry their own status and code; an unreachable database is 503
``persistence_unavailable`` and a locked one 503 ``persistence_busy``, both with ``Retry-After``;
a value the graph's boundary refuses is 422 ``invalid_request``; FastAPI's own 400, 404, 405, 413
and validation errors are given the same shape, with a message a person can act on. Anything
else is 500 ``internal_error`` naming only the kind of failure: never a plain-text 500, and never
a database's message (it quotes the request's data and the server's internals).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from handoff.graphs.boundary import InputRefused
from handoff.graphs.persistence import PersistenceError
from handoff.service.errors import (
    PayloadTooLarge,
    PersistenceUnavailable,
    ServiceError,
    Unauthorized,
    as_request_error,
)

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", PayloadTooLarge.status: PayloadTooLarge.code}
"""Codes for Starlette's own HTTP errors."""

log = logging.getLogger("handoff.service")


def _error(
    status_code: int, code: str, message: str, fields: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse(status_code=status_code, content={"error": body}, headers=headers)


def _headers(exc: ServiceError) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return headers or None


def error_response(exc: ServiceError) -> JSONResponse:
    """``exc`` as the service's error response, with its ``Retry-After``/``WWW-Authenticate``."""
    return _error(exc.status, exc.code, exc.message, exc.fields, headers=_headers(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise in the service's error shape."""
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(PersistenceError)
    async def persistence_error(request: Request, exc: PersistenceError) -> JSONResponse:
        # its message names the database URL (and may quote the driver): logs only, never the body
        log.warning("request failed path=%s code=%s error=%s", request.url.path, PersistenceUnavailable.code,
                    type(exc).__name__)
        return error_response(PersistenceUnavailable("the database is unavailable; send the same request again"))

    @app.exception_handler(InputRefused)
    async def input_refused(request: Request, exc: InputRefused) -> JSONResponse:
        # the routes name the field themselves (InvalidInput); this is the graph refusing later
        return _error(422, "invalid_request", str(exc), [{"loc": ["body"], "msg": str(exc), "type": "input_refused"}])

    import psycopg
    import psycopg_pool

    @app.exception_handler(psycopg.Error)
    @app.exception_handler(psycopg_pool.PoolTimeout)
    @app.exception_handler(sqlite3.Error)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        error = as_request_error(exc)
        log.warning("request failed path=%s code=%s error=%s", request.url.path, error.code, type(exc).__name__)
        return error_response(error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette calls this one last, from its outermost middleware, then re-raises for the server's log
        return error_response(as_request_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == status.HTTP_400_BAD_REQUEST:  # FastAPI could not read the body at all
            return _error(422, "invalid_request", f"body: {exc.detail} (send UTF-8 JSON)",
                          [{"loc": ["body"], "msg": str(exc.detail), "type": "body_unreadable"}])
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field(e) for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, f['loc'][1:])) or f['loc'][0]}: {f['msg']}"
                            for f in fields) or "invalid request"
        return _error(422, "invalid_request", message,
                      jsonable_encoder(fields))


def _field(error: dict[str, Any]) -> dict[str, Any]:
    """One validation problem as ``{loc, msg, type}`` with a message a person can act on."""
    loc = list(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if kind == "json_invalid":
        at = loc[1] if len(loc) > 1 else "?"
        loc = loc[:1]
        cause = (error.get("ctx") or {}).get("error", "")
        msg = f"malformed JSON at character {at}" + (f" ({cause})" if cause else "")
    return {"loc": loc, "msg": msg, "type": kind}
