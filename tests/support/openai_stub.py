"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 for tests.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) from a
queue of scripted replies and records every request body, so a test can drive
the real ``ChatOpenAI`` client and inspect exactly what it sent.

``strict=True`` refuses, with 400 as OpenAI does, a request whose history holds
a tool call without its tool result (or a result without its call, or call
arguments that are not a JSON object). ``TRICKLE`` sends a response one byte
every half second, forever, until the client closes the connection
(``closed`` counts those).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.local_http import JsonHandler, serving


def text_reply(content: str) -> dict[str, Any]:
    """A plain assistant message."""
    return {"role": "assistant", "content": content}


def tool_reply(name: str, args: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    """An assistant message that calls one tool."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)}}],
    }


def raw_tool_reply(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """An assistant message that calls one tool with ``arguments`` exactly as written (e.g. broken JSON)."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


class Status(int):
    """A scripted HTTP error status instead of a reply (e.g. Status(500))."""


TRICKLE = "trickle"
"""A scripted reply that never completes: one byte every ``TRICKLE_EVERY_S`` seconds."""
TRICKLE_EVERY_S = 0.5


def unpaired_tool_calls(messages: list[dict[str, Any]]) -> list[str]:
    """What a strict OpenAI-compatible server refuses in a request's history: each assistant tool call
    must be answered by a tool message before the next non-tool message, and every tool message must
    answer such a call; call arguments must be a JSON object."""
    problems: list[str] = []
    open_calls: set[str] = set()
    for position, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                problems.append(f"messages[{position}]: tool result {call_id!r} answers no pending call")
            open_calls.discard(call_id)
            continue
        if open_calls:
            problems.append(f"messages[{position}]: tool call(s) {sorted(open_calls)} have no result")
            open_calls = set()
        calls = (message.get("tool_calls") or []) if role == "assistant" else []
        for call in calls:
            open_calls.add(call.get("id"))
            try:
                arguments = json.loads(call["function"]["arguments"])
            except (KeyError, TypeError, ValueError):
                arguments = None
            if not isinstance(arguments, dict):
                problems.append(f"messages[{position}]: tool call {call.get('id')!r} arguments are not a "
                                "JSON object")
    if open_calls:
        problems.append(f"tool call(s) {sorted(open_calls)} have no result")
    return problems


class OpenAIStub:
    """Scripted replies in order; ``requests`` holds every parsed request body."""

    def __init__(self, *, strict: bool = False) -> None:
        self.replies: deque[dict[str, Any] | Status | str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.default: dict[str, Any] | str | None = None
        self.strict = strict
        self.refused: list[str] = []
        """Why each request a strict stub refused was refused."""
        self.closed = threading.Semaphore(0)
        """Released once per trickled response whose connection the client closed."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def add(self, *replies: dict[str, Any] | Status | str) -> None:
        self.replies.extend(replies)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("chat/completions"):
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                stub.requests.append(body)
                problems = unpaired_tool_calls(body.get("messages") or []) if stub.strict else []
                if problems:
                    stub.refused.append("; ".join(problems))
                    self.send_json(400, {"error": {"message": "; ".join(problems),
                                                   "type": "invalid_request_error"}})
                    return
                reply = stub.replies.popleft() if stub.replies else stub.default
                if reply == TRICKLE:
                    self.trickle()
                    return
                if reply is None:
                    self.send_json(500, {"error": {"message": "stub has no reply left"}})
                    return
                if isinstance(reply, Status):
                    self.send_json(int(reply), {"error": {"message": f"scripted {int(reply)}",
                                                      "type": "server_error"}})
                    return
                self.send_json(200, {
                    "id": f"chatcmpl-{len(stub.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "message": reply,
                                 "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                })

            def trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                try:
                    while True:  # leading whitespace: valid JSON so far, and never done
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(TRICKLE_EVERY_S)
                except OSError:  # the client closed the connection
                    stub.closed.release()
                    self.close_connection = True

        return Handler

    @contextmanager
    def running(self) -> Iterator[OpenAIStub]:
        with serving(self._handler()) as self._server:
            yield self
