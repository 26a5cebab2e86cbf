"""The service's error responses: every refusal as ``{"error": {"code", "message", "fields"?}}``.

Service errors carry their own status and code; an unreachable database is
503 ``persistence_unavailable`` with ``Retry-After``; FastAPI's own 400, 404,
405 and validation errors are given the same shape, with a message a person
can act on.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from handoff.graphs.persistence import PersistenceError
from handoff.service.errors import PersistenceUnavailable, ServiceError, Unauthorized, as_service_error


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


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise in the service's error shape."""
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, headers=_headers(exc))

    @app.exception_handler(PersistenceError)
    async def persistence_error(request: Request, exc: PersistenceError) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, PersistenceUnavailable.code, str(exc),
                      headers={"Retry-After": "1"})

    import psycopg
    import psycopg_pool

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        error = as_service_error(exc)
        return _error(error.status, error.code, error.message, headers=_headers(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == status.HTTP_400_BAD_REQUEST:  # FastAPI could not read the body at all
            return _error(422, "invalid_request", f"body: {exc.detail} (send UTF-8 JSON)",
                          [{"loc": ["body"], "msg": str(exc.detail), "type": "body_unreadable"}])
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
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
