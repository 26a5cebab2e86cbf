"""The service's front door (service/guard.py) and its error shape, in process.

The token is checked, and the body's size too, before anything reads the body: an ASGI
``receive`` that records every call shows which requests were refused unread. Every refusal,
whatever raised it, is the service's JSON error shape, never a plain-text 500 or a database's
own message.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.boundary import THREAD_ID_MAX
from handoff.service.app import create_app
from handoff.service.embedding import HandoffService

TOKEN = "tok-guard-7d1e0c"
TOKENS = {TOKEN: "alice"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096
"""A small body limit for these tests (the service's own is MAX_BODY_BYTES)."""


@pytest.fixture
def app() -> FastAPI:
    return create_app("memory", model=OfflineChatModel(), tokens=TOKENS, max_body_bytes=LIMIT)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def assert_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    """The documented error shape: JSON ``{"error": {"code", "message", "fields"?}}``."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    assert set(error) <= {"code", "message", "fields"}
    return error


# ------------------------------------------------------------------ raw ASGI: what was read


class Recorder:
    """An ASGI client: sends a body in chunks, counts the bytes the app pulled, keeps the response."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.pulled < len(self.chunks):
            chunk = self.chunks[self.pulled]
            self.pulled += 1
            return {"type": "http.request", "body": chunk, "more_body": self.pulled < len(self.chunks)}
        await asyncio.Event().wait()  # a client that never disconnects on its own
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def bytes_pulled(self) -> int:
        return sum(len(c) for c in self.chunks[:self.pulled])

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


def call(app: FastAPI, method: str, path: str, chunks: list[bytes], headers: dict[str, str]) -> Recorder:
    """One request straight into the app's ASGI interface (its lifespan need not run for refusals)."""
    recorder = Recorder(chunks)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }
    asyncio.run(asyncio.wait_for(app(scope, recorder.receive, recorder.send), timeout=30))
    return recorder


BIG_CHUNKS = [b'{"text": "' + b"x" * 1000] + [b"x" * 1000] * 50 + [b'"}']
"""About 51 kB of a JSON body, in 1 kB chunks."""


@pytest.mark.parametrize("headers", [
    {"content-type": "application/json"},
    {"content-type": "application/json", "authorization": "Bearer not-a-token"},
    {"content-type": "application/json", "authorization": TOKEN},  # no scheme
])
@pytest.mark.parametrize("length", ["declared", "chunked"])
def test_a_request_without_a_valid_token_is_refused_before_its_body_is_read(
    app: FastAPI, headers: dict[str, str], length: str
) -> None:
    size = sum(map(len, BIG_CHUNKS))
    sent = {**headers, "content-length": str(size)} if length == "declared" else headers
    recorder = call(app, "POST", "/threads/abc/messages", BIG_CHUNKS, sent)
    assert recorder.status == 401
    assert recorder.pulled == 0, "the body was read before the token was checked"
    assert recorder.body["error"]["code"] == "unauthorized"
    assert recorder.headers["www-authenticate"] == "Bearer"


def test_a_declared_body_over_the_limit_is_refused_unread(app: FastAPI) -> None:
    size = sum(map(len, BIG_CHUNKS))
    recorder = call(app, "POST", "/threads", BIG_CHUNKS,
                    {**AUTH, "content-type": "application/json", "content-length": str(size)})
    assert recorder.status == 413
    assert recorder.pulled == 0
    error = recorder.body["error"]
    assert error["code"] == "payload_too_large" and str(LIMIT) in error["message"]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(app: FastAPI) -> None:
    recorder = call(app, "POST", "/threads", BIG_CHUNKS, {**AUTH, "content-type": "application/json"})
    assert recorder.status == 413
    assert recorder.body["error"]["code"] == "payload_too_large"
    assert LIMIT < recorder.bytes_pulled <= LIMIT + max(map(len, BIG_CHUNKS)), recorder.bytes_pulled


def test_a_body_that_says_it_is_short_but_is_not_is_cut_at_the_limit(app: FastAPI) -> None:
    recorder = call(app, "POST", "/threads", BIG_CHUNKS,
                    {**AUTH, "content-type": "application/json", "content-length": "10"})
    assert recorder.status == 413
    assert recorder.bytes_pulled <= LIMIT + max(map(len, BIG_CHUNKS))


def test_a_body_at_the_limit_is_read(client: TestClient) -> None:
    graph = "g" * (LIMIT - len('{"graph": ""}'))
    body = json.dumps({"graph": graph}).encode()
    assert len(body) == LIMIT
    response = client.post("/threads", content=body, headers={**AUTH, "content-type": "application/json"})
    assert_shape(response, 422, "invalid_request")  # read and validated: no such graph
    assert "graph" in response.json()["error"]["message"]


# ------------------------------------------------------------------ which paths need the token


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/graphs",
                                  "/no-such-page", "/threads/abc"])
def test_every_path_but_the_open_ones_needs_the_token(client: TestClient, path: str) -> None:
    assert_shape(client.get(path), 401, "unauthorized")
    assert client.get(path, headers=AUTH).status_code != 401


@pytest.mark.parametrize("path", ["/healthz", "/", "/static/app.js", "/static/style.css"])
def test_liveness_and_the_web_page_need_no_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_the_docs_setting_opens_only_the_docs(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_OPEN_DOCS", "true")
    with TestClient(create_app("memory", model=OfflineChatModel(), tokens=TOKENS)) as client:
        assert client.get(path).status_code == 200
        assert_shape(client.get("/graphs"), 401, "unauthorized")


def test_the_token_is_checked_before_a_malformed_body_is_parsed(client: TestClient) -> None:
    response = client.post("/threads", content=b'{"graph": ', headers={"content-type": "application/json"})
    assert_shape(response, 401, "unauthorized")


def test_an_oversized_body_with_a_token_is_413_in_the_error_shape(client: TestClient) -> None:
    response = client.post("/threads", content=b" " * (LIMIT + 1), headers={**AUTH, "content-type": "application/json"})
    assert_shape(response, 413, "payload_too_large")


# ------------------------------------------------------------------ thread ids


BAD_IDS = ["a%00b", "%00", "a%01b", "a%1Fb", "a%7Fb", "a%0Ab", "a%20b", "-abc", "a" * (THREAD_ID_MAX + 1),
           "caf%C3%A9", "a%E2%80%8Bb"]


@pytest.mark.parametrize("thread_id", BAD_IDS)
@pytest.mark.parametrize("suffix", ["", "/handoffs", "/messages", "/escalation"])
def test_a_malformed_thread_id_is_422_naming_it(client: TestClient, thread_id: str, suffix: str) -> None:
    if suffix in ("/messages", "/escalation"):
        body = {"text": "Hello"} if suffix == "/messages" else {"reply": "A person here."}
        response = client.post(f"/threads/{thread_id}{suffix}", headers=AUTH, json={**body, "stream": False})
    else:
        response = client.get(f"/threads/{thread_id}{suffix}", headers=AUTH)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["message"].startswith("thread_id:")
    assert any(f["loc"] == ["path", "thread_id"] for f in error["fields"]), error


@pytest.mark.parametrize("thread_id", ["order.42", "dana@example.com", "A1", "x" * THREAD_ID_MAX])
def test_a_well_formed_unknown_thread_id_is_404(client: TestClient, thread_id: str) -> None:
    assert_shape(client.get(f"/threads/{thread_id}", headers=AUTH), 404, "thread_not_found")


# ------------------------------------------------------------------ nothing escapes the shape


DRIVER_MESSAGE = ("unsupported Unicode escape sequence\nDETAIL: \\u0000 cannot be converted to text.\n"
                  "CONTEXT: JSON data, line 1: {...}\nunnamed portal parameter $3 = '...'")


@pytest.mark.parametrize(("raised", "status", "code"), [
    (psycopg.errors.UntranslatableCharacter(DRIVER_MESSAGE), 500, "internal_error"),
    (psycopg.errors.UniqueViolation(DRIVER_MESSAGE), 500, "internal_error"),
    (sqlite3.IntegrityError(DRIVER_MESSAGE), 500, "internal_error"),
    (sqlite3.OperationalError("database is locked"), 503, "persistence_busy"),
    (psycopg.OperationalError(DRIVER_MESSAGE), 503, "persistence_unavailable"),
    (KeyError(DRIVER_MESSAGE), 500, "internal_error"),
])
def test_a_failure_while_answering_is_the_error_shape_without_internals(
    monkeypatch: pytest.MonkeyPatch, raised: Exception, status: int, code: str
) -> None:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr(HandoffService, "thread", fail)
    with TestClient(create_app("memory", model=OfflineChatModel()), raise_server_exceptions=False) as client:
        response = client.get("/threads/abc")
    error = assert_shape(response, status, code)
    assert "CONTEXT" not in response.text and "portal" not in response.text and "\\u0000" not in response.text
    assert type(raised).__name__ in error["message"]
    if status == 503:
        assert response.headers["Retry-After"] == "1"
