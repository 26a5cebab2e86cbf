"""The service's front door: who is calling, and how big the body is, before anything reads it.

A pure ASGI middleware in front of FastAPI's routing. FastAPI reads and parses a JSON body
before it solves a route's dependencies, so a token checked in a dependency was checked after
the whole body was in memory (three unauthenticated 200 MB posts took a worker past 1.4 GB).
Here:

- with tokens on, a request without a valid bearer token is answered 401 before one byte of
  its body is read; every path needs the token except the ones that must work before a client
  has one (``OPEN_PATHS``: liveness, the web page and its files). The OpenAPI document and its
  pages (``DOCS_PATHS``) follow the same rule unless ``open_docs`` opens them;
- a body whose ``Content-Length`` is over the limit is answered 413 without being read; a body
  sent without a length (chunked) is counted as it is read and refused with 413 as soon as it
  passes the limit.

uvicorn holds at most 64 KiB of a body the application has not asked for, and after the
response it reads the rest of an unread body and drops it, so a refused upload costs the
worker no memory.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handoff.service.auth import Access, bearer_token
from handoff.service.errors import PayloadTooLarge, ServiceError
from handoff.service.http_errors import error_response

CLIENT_KEY = "handoff.client"
"""Scope key where the guard leaves the caller's client name (None when access is open)."""
MAX_BODY_BYTES = 512 * 1024
"""Largest request body. The largest valid body is an escalation answer: a 20,000-character reply
written entirely as escaped surrogate pairs is 240,000 bytes of JSON, plus up to 20,000
characters of case-file JSON (at most 6 bytes each when written as escapes)."""
OPEN_PATHS = frozenset({"/", "/healthz"})
OPEN_PREFIXES = ("/static/",)
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes the limit as it is read.

    An ``HTTPException``, because FastAPI turns any other error met while reading a body into
    a 400 "error parsing the body", and re-raises only this kind to the error handlers.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=PayloadTooLarge.status, detail=_too_large(limit))


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes, the most this service reads"


class RequestGuard:
    """Checks the bearer token and the body's size before the application reads the body."""

    def __init__(self, app: ASGIApp, *, access: Access, max_body_bytes: int = MAX_BODY_BYTES,
                 open_docs: bool = False) -> None:
        """Args:
        app: The application behind the guard.
        access: The service's tokens (open when it has none).
        max_body_bytes: Largest request body read.
        open_docs: Serve the OpenAPI document and its pages without a token.
        """
        self.app = app
        self.access = access
        self.max_body_bytes = max_body_bytes
        self.open_docs = open_docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            scope[CLIENT_KEY] = None if self._is_open(scope["path"]) else self.access.client(bearer_token(headers))
            self._check_length(headers)
        except ServiceError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _is_open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (self.open_docs and path in DOCS_PATHS)

    def _check_length(self, headers: Headers) -> None:
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(_too_large(self.max_body_bytes))

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body (chunked, or longer than it said) once it passes the limit."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return counted
