"""A local stand-in for the LangSmith API, on 127.0.0.1, for tracing tests.

The langsmith client first asks ``GET /info``; this server answers 404, which
makes the client fall back to its defaults (a partial answer would crash its
background thread). Runs then arrive as ``POST /runs/multipart`` bodies of
multipart/form-data, one part per field: ``post.<run id>`` holds the run, and
``post.<run id>.inputs`` / ``.outputs`` / ``.extra`` / ``.error`` ... hold the
rest; ``patch.<run id>...`` parts finish a run. The collector keeps every raw
body (to search for leaked text) and merges the parts into one dict per run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.local_http import JsonHandler, serving

FIELDS = ("inputs", "outputs", "events", "extra", "error", "serialized", "attachments")


@dataclass(frozen=True)
class Received:
    """One request the collector answered."""

    method: str
    path: str
    content_type: str
    body: bytes


class LangSmithCollector:
    """Records what a langsmith client sends; ``url`` goes into ``LANGSMITH_ENDPOINT``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the collector is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @contextmanager
    def running(self) -> Iterator[LangSmithCollector]:
        """Serve on a free port of 127.0.0.1 until the block ends."""
        collector = self

        class Handler(JsonHandler):
            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _record(self) -> None:
                body = self._body()
                with collector._lock:
                    collector.received.append(Received(self.command, self.path,
                                                       self.headers.get("Content-Type", ""), body))
                self.send_json(202, {})

            def do_GET(self) -> None:
                self.send_json(404, {"detail": "not found"})

            def do_POST(self) -> None:
                self._record()

            def do_PATCH(self) -> None:
                self._record()

        with serving(Handler) as self._server:
            try:
                yield self
            finally:
                self._server = None

    def payload(self) -> str:
        """Every body received, decoded as text, for searching leaked values."""
        with self._lock:
            return "\n".join(r.body.decode("utf-8", "replace") for r in self.received)

    def runs(self) -> dict[str, dict[str, Any]]:
        """Runs by id: the posted run with its fields, updated by any patch."""
        runs: dict[str, dict[str, Any]] = {}
        with self._lock:
            received = list(self.received)
        for request in received:
            for operation, run in _operations(request):
                merged = runs.setdefault(str(run["id"]), {})
                if operation == "post":
                    merged.update({k: v for k, v in run.items() if v is not None or k not in merged})
                else:
                    merged.update({k: v for k, v in run.items() if v is not None})
        return runs


def _operations(request: Received) -> Iterator[tuple[str, dict[str, Any]]]:
    """(operation, partial run) pairs in one request, whatever endpoint it used."""
    if request.path.startswith("/runs/multipart"):
        yield from _multipart_runs(request)
    elif request.path.startswith("/runs/batch"):
        batch = json.loads(request.body or b"{}")
        for operation in ("post", "patch"):
            for run in batch.get(operation) or []:
                yield operation, run
    elif request.path.rstrip("/") == "/runs" and request.method == "POST":
        yield "post", json.loads(request.body)
    elif request.path.startswith("/runs/") and request.method == "PATCH":
        yield "patch", {"id": request.path.rsplit("/", 1)[-1], **json.loads(request.body)}


def _multipart_runs(request: Received) -> Iterator[tuple[str, dict[str, Any]]]:
    head = f"Content-Type: {request.content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        operation, _, rest = str(name).partition(".")
        if operation not in ("post", "patch"):
            continue
        run_id, _, field = rest.partition(".")
        raw = part.get_payload(decode=True) or b"null"
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.decode("utf-8", "replace")
        run = parts.setdefault((operation, run_id), {"id": run_id})
        if not field:
            run.update(value)
        elif field in FIELDS:
            run[field] = value
    for (operation, _), run in parts.items():
        yield operation, run
