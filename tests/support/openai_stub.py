"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 for tests.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) from a
queue of scripted replies and records every request body, so a test can drive
the real ``ChatOpenAI`` client and inspect exactly what it sent.

``strict=True`` refuses, with 400 as OpenAI does, a request whose history holds
a tool call without its tool result (or a result without its call, or call
arguments that are not a JSON object). ``TRICKLE`` sends a response one byte
every half second, forever, until the client closes the connection
(``closed`` counts those).

A request with ``"stream": true`` (a client that shows tokens) gets its reply as
server-sent ``chat.completion.chunk`` events, as OpenAI streams it: a scripted
message word by word at once, or a ``SlowStream``: one token every
``TOKEN_EVERY_S`` seconds, optionally held after some tokens until the test
releases it (``resume``), or cut off mid-answer (``break_after``: the connection
drops before the body is complete, as when a server or a proxy dies). A request
that does not stream gets a ``SlowStream``'s message whole.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


TOKEN_EVERY_S = 0.1
"""Seconds between two tokens of a ``SlowStream``."""
HOLD_LIMIT_S = 60.0
"""A held ``SlowStream`` goes on by itself after this long (a test that failed never releases it)."""
_WORD_STARTS = re.compile(r"(?<=\s)(?=\S)")


@dataclass
class SlowStream:
    """A scripted answer streamed one token (a word and its space) every ``every`` seconds.

    ``hold_after``: after that many tokens, wait for ``resume`` before sending the rest, so a test can
    look at what a client shows mid-answer without racing the clock. ``break_after``: after that many
    tokens, drop the connection with the body incomplete. ``tool_calls`` (``tool_reply``'s) follow the
    text, whole. ``sent`` counts the tokens sent; ``finished`` is set once the last one is.
    """

    text: str
    every: float = TOKEN_EVERY_S
    hold_after: int | None = None
    break_after: int | None = None
    tool_calls: list[dict[str, Any]] | None = None
    sent: int = 0
    resume: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    broken: threading.Event = field(default_factory=threading.Event)

    @property
    def tokens(self) -> list[str]:
        return [part for part in _WORD_STARTS.split(self.text) if part]


def stream_events(completion_id: str, model: str, message: dict[str, Any], *,
                  usage: bool = False) -> Iterator[tuple[str | None, bytes]]:
    """A whole assistant message as OpenAI's server-sent chunks: (the token each carries, its bytes)."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n".encode()

    yield None, chunk({"role": "assistant", "content": ""})
    for token in [part for part in _WORD_STARTS.split(message.get("content") or "") if part]:
        yield token, chunk({"content": token})
    for index, call in enumerate(message.get("tool_calls") or []):
        yield None, chunk({"tool_calls": [{**call, "index": index}]})
    yield None, chunk({}, "tool_calls" if message.get("tool_calls") else "stop")
    if usage:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        yield None, f"data: {json.dumps(body)}\n\n".encode()
    yield None, b"data: [DONE]\n\n"


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
        self.replies: deque[dict[str, Any] | Status | SlowStream | str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.default: dict[str, Any] | SlowStream | str | None = None
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

    def add(self, *replies: dict[str, Any] | Status | SlowStream | str) -> None:
        self.replies.extend(replies)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.chat_request()
                if body is None:
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
                if body.get("stream"):
                    self.stream(body, reply)
                    return
                if isinstance(reply, SlowStream):  # a client that does not stream gets it whole
                    reply = {"role": "assistant", "content": reply.text, "tool_calls": reply.tool_calls}
                    reply = {k: v for k, v in reply.items() if v is not None}
                self.send_json(200, {
                    "id": f"chatcmpl-{len(stub.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "message": reply,
                                 "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                })

            def stream(self, body: dict[str, Any], reply: dict[str, Any] | SlowStream) -> None:
                """The reply as server-sent chunks; a ``SlowStream`` paced, held or cut off as it says.

                The body's length is announced, so a connection dropped before its end is an error for
                the client (an incomplete body), never an answer that merely looks short.
                """
                slow = reply if isinstance(reply, SlowStream) else None
                message = reply if slow is None else {"role": "assistant", "content": slow.text,
                                                      "tool_calls": slow.tool_calls}
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                events = list(stream_events(f"chatcmpl-{len(stub.requests)}", body.get("model", "stub"),
                                            message, usage=usage))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(sum(len(data) for _, data in events)))
                self.end_headers()
                self.close_connection = True
                try:
                    for token, data in events:
                        if slow is not None and token is not None:
                            if slow.sent == slow.break_after:
                                slow.broken.set()
                                return  # the connection closes with the body incomplete
                            if slow.sent == slow.hold_after:
                                slow.resume.wait(HOLD_LIMIT_S)
                            if slow.sent:
                                time.sleep(slow.every)
                        self.wfile.write(data)
                        self.wfile.flush()
                        if slow is not None and token is not None:
                            slow.sent += 1
                            if slow.sent == len(slow.tokens):
                                slow.finished.set()
                except OSError:  # the client went away
                    stub.closed.release()

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
