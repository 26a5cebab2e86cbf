"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 for tests.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) from a
queue of scripted replies and records every request body, so a test can drive
the real ``ChatOpenAI`` client and inspect exactly what it sent.
"""

from __future__ import annotations

import json
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


class Status(int):
    """A scripted HTTP error status instead of a reply (e.g. Status(500))."""


class OpenAIStub:
    """Scripted replies in order; ``requests`` holds every parsed request body."""

    def __init__(self) -> None:
        self.replies: deque[dict[str, Any] | Status] = deque()
        self.requests: list[dict[str, Any]] = []
        self.default: dict[str, Any] | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def add(self, *replies: dict[str, Any] | Status) -> None:
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
                reply = stub.replies.popleft() if stub.replies else stub.default
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

        return Handler

    @contextmanager
    def running(self) -> Iterator[OpenAIStub]:
        with serving(self._handler()) as self._server:
            yield self
