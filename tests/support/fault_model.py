"""A faulty OpenAI-compatible model server on 127.0.0.1, for the service's fault suite.

Unlike ``openai_stub.OpenAIStub`` (a queue of scripted replies, for one client in
process), this one serves service workers in other processes, many conversations at
once, so it decides from the request itself. Markers in the conversation's last user
message pick the fault, for the first model call of the turn (the last message is the
user's); once the agent has seen a tool result, the model answers in plain text, as a
model that recovers would:

- ``[trickle]``: a 200 whose body arrives one byte every ``TRICKLE_S`` seconds (one
  event at a time when the client streams), far slower than any deadline; the server
  notes when the client hangs up on it (``cut``);
- ``[bad-tool-call]``: a tool call that is malformed in one of ``BAD_CALLS``' ways,
  taking turns (arguments that are not JSON or not an object, unknown or unprintable
  tool names, NUL, NaN, 200 levels of nesting, 200 kB of arguments, ...);
- ``[garbled]``: text with NUL, escape and other control characters and a lone surrogate.

Anything else gets a short plain-text answer. Like OpenAI, the server refuses with 400 a
request whose history holds a tool call without its result or with arguments that are not a
JSON object (``openai_stub.unpaired_tool_calls``), and keeps why in ``refused``: a malformed
call the graph stored as it came would make every later request of that conversation fail.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import JsonHandler, serving
from tests.support.openai_stub import unpaired_tool_calls

TRICKLE_S = 0.25
"""Seconds between two bytes (or two events) of a trickled answer."""
TRICKLE_LIMIT_S = 120.0
"""A trickle nobody hung up on stops after this long."""
REPLY = "Noted (stub model): I have your message and I am on it."
GARBLED = "Here\u0000 is\u001b[31m your\u0007 answer\u007f\u0085 \ud800 done."


def _transfer(tools: list[str]) -> str:
    return next((name for name in tools if name.startswith("transfer_to_")), tools[0] if tools else "lookup")


BAD_CALLS: list[tuple[str, Callable[[list[str]], list[dict[str, Any]]]]] = [
    ("arguments not JSON", lambda tools: [_call(_transfer(tools), '{"account_id": "ACC-1001", "symptoms": ')]),
    ("arguments a JSON list", lambda tools: [_call(_transfer(tools), "[1, 2, 3]")]),
    ("arguments a JSON string", lambda tools: [_call(_transfer(tools), '"transfer me"')]),
    ("an unknown tool", lambda tools: [_call("transfer_to_nobody_at_all", "{}")]),
    ("a tool name with NUL", lambda tools: [_call("look\u0000up\u001b", "{}")]),
    ("an empty tool name and id", lambda tools: [_call("", "{}", call_id="")]),
    ("NUL and NaN in arguments", lambda tools: [_call(
        _transfer(tools), '{"account_id": "ACC-\\u00001001", "symptoms": NaN, "reason": "\\ud800"}')]),
    ("an integer wider than 64 bits", lambda tools: [_call(_transfer(tools), '{"account_id": 123456789012345678901234567890}')]),
    ("200 levels of nesting", lambda tools: [_call(_transfer(tools), '{"symptoms": ' + "[" * 200 + "]" * 200 + "}")]),
    ("200 kB of arguments", lambda tools: [_call(_transfer(tools), json.dumps({"symptoms": "x" * 200_000}))]),
    ("two calls with one id", lambda tools: [_call(_transfer(tools), "{}", call_id="dup"),
                                             _call(tools[-1] if tools else "lookup", "{}", call_id="dup")]),
]
"""Malformed tool calls, by what is wrong with them; each gets the request's own tool names."""


def _call(name: str, arguments: str, call_id: str | None = None) -> dict[str, Any]:
    return {"id": f"call_{time.monotonic_ns()}" if call_id is None else call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


class FaultModel:
    """The server; ``seen`` counts requests by fault, ``cut`` the trickles the client hung up on,
    ``refused`` says why each request with a broken history was refused."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.cut = 0
        self.refused: list[str] = []
        self._turns = itertools.count()
        self._lock = threading.Lock()
        self.base_url = ""

    def answer(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(fault, assistant message) for a request."""
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        said = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        first_call = last.get("role") == "user"
        tools = [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
        if first_call and "[trickle]" in said:
            return "trickle", {"role": "assistant", "content": "This answer is on its way, very slowly."}
        if first_call and "[bad-tool-call]" in said:
            with self._lock:
                kind, make = BAD_CALLS[next(self._turns) % len(BAD_CALLS)]
            return kind, {"role": "assistant", "content": None, "tool_calls": make(tools)}
        if first_call and "[garbled]" in said:
            return "garbled", {"role": "assistant", "content": GARBLED}
        return "plain", {"role": "assistant", "content": REPLY}

    def _note(self, fault: str) -> None:
        with self._lock:
            self.seen[fault] += 1

    def _hung_up(self) -> None:
        with self._lock:
            self.cut += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.chat_request()
                if body is None:
                    return
                problems = unpaired_tool_calls(body.get("messages") or [])
                if problems:
                    with model._lock:
                        model.refused.append("; ".join(problems))
                    self.send_json(400, {"error": {"message": "; ".join(problems), "type": "invalid_request_error"}})
                    return
                fault, message = model.answer(body)
                model._note(fault)
                completion = {
                    "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                if fault == "trickle":
                    self._trickle(completion, stream=bool(body.get("stream")))
                elif body.get("stream"):
                    self._stream(completion)
                else:
                    self.send_json(200, completion)

            def _stream(self, completion: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in _events(completion):
                    self.wfile.write(event)
                self.close_connection = True

            def _trickle(self, completion: dict[str, Any], *, stream: bool) -> None:
                pieces: Iterator[bytes]
                self.send_response(200)
                if stream:
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    pieces = itertools.cycle([_chunk(completion, {"content": "."})])
                else:
                    data = json.dumps(completion).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    pieces = (data[i:i + 1] for i in range(len(data)))
                self.end_headers()
                self.close_connection = True
                deadline = time.monotonic() + TRICKLE_LIMIT_S
                try:
                    for piece in pieces:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        if time.monotonic() > deadline:
                            return
                        time.sleep(TRICKLE_S)
                except (BrokenPipeError, ConnectionResetError):
                    model._hung_up()

        return Handler

    @contextmanager
    def running(self) -> Iterator[FaultModel]:
        """Serve until the block ends; ``base_url`` is the OpenAI base URL (``.../v1``)."""
        with serving(self._handler()) as server:
            self.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
            yield self


def _chunk(completion: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
             "model": completion["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _events(completion: dict[str, Any]) -> Iterator[bytes]:
    """A whole completion as server-sent chunks, as OpenAI streams it."""
    choice = completion["choices"][0]
    message = dict(choice["message"])
    calls = message.pop("tool_calls", None)
    yield _chunk(completion, {"role": "assistant", "content": message.get("content") or ""})
    for index, call in enumerate(calls or []):
        yield _chunk(completion, {"tool_calls": [{**call, "index": index}]})
    yield _chunk(completion, {}, finish=choice["finish_reason"])
    yield b"data: [DONE]\n\n"
