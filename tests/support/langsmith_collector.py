"""A local stand-in for the LangSmith API, on 127.0.0.1, for tracing tests.

The langsmith client first asks ``GET /info``; this server answers 404, which
makes the client fall back to its defaults (a partial answer would crash its
background thread). Runs then arrive as ``POST /runs/multipart`` bodies of
multipart/form-data, one part per field: ``post.<run id>`` holds the run, and
``post.<run id>.inputs`` / ``.outputs`` / ``.extra`` / ``.error`` ... hold the
rest; ``patch.<run id>...`` parts finish a run. The collector keeps every raw
body (to search for leaked text) and merges the parts into one dict per run.

For experiments it also keeps, in memory, what the evaluation API creates:
datasets (``GET``/``POST /datasets``), their examples (``GET /examples``,
``POST /examples/bulk``), projects (``POST``/``PATCH /sessions``) and feedback
(``POST /feedback``), answering with the fields the langsmith client reads.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import langsmith
import pytest
from langsmith import run_trees
from langsmith import utils as ls_utils

from handoff.graphs.telemetry import flush_traces, forget_masking_clients
from tests.support.local_http import JsonHandler, serving

TENANT = "00000000-0000-4000-8000-000000000001"
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
        self.datasets: dict[str, dict[str, Any]] = {}
        """Datasets by id."""
        self.examples: dict[str, dict[str, Any]] = {}
        """Examples by id."""
        self.sessions: dict[str, dict[str, Any]] = {}
        """Projects by id (experiments have a ``reference_dataset_id``)."""
        self.feedback: list[dict[str, Any]] = []
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
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with collector._lock:
                    if url.path == "/datasets":
                        self.send_json(200, [d for d in collector.datasets.values()
                                             if d["name"] == query.get("name")])
                    elif url.path == "/examples":
                        found = [e for e in collector.examples.values() if e["dataset_id"] == query.get("dataset")]
                        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
                        self.send_json(200, found[offset:offset + limit])
                    else:
                        self.send_json(404, {"detail": "not found"})

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if path not in ("/datasets", "/examples/bulk", "/sessions", "/feedback"):
                    self._record()
                    return
                body = json.loads(self._body() or b"null")
                with collector._lock:
                    self.send_json(200, collector._create(path, body))

            def do_PATCH(self) -> None:
                path = urlsplit(self.path).path
                if not path.startswith("/sessions/"):
                    self._record()
                    return
                body = json.loads(self._body() or b"{}")
                with collector._lock:
                    session = collector.sessions[path.rsplit("/", 1)[-1]]
                    session.update({k: v for k, v in body.items() if v is not None})
                    self.send_json(200, session)

        with serving(Handler) as self._server:
            try:
                yield self
            finally:
                self._server = None

    def _create(self, path: str, body: Any) -> Any:
        """What POST ``path`` creates, as the API answers it (call with the lock held)."""
        now = datetime.now(UTC).isoformat()
        if path == "/datasets":
            dataset = {**body, "id": str(uuid.uuid4()), "created_at": now}
            self.datasets[dataset["id"]] = dataset
            return dataset
        if path == "/examples/bulk":
            made = [{**e, "id": str(e.get("id") or uuid.uuid4()), "created_at": now} for e in body]
            self.examples.update({e["id"]: e for e in made})
            return made
        if path == "/sessions":
            session = {**body, "tenant_id": TENANT, "start_time": now}
            self.sessions[session["id"]] = session
            return session
        self.feedback.append(body)
        return body

    def payload(self) -> str:
        """Every body received, decoded as text, for searching leaked values."""
        with self._lock:
            return "\n".join(r.body.decode("utf-8", "replace") for r in self.received)

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """The runs, once ``condition(runs)`` holds (another process sends them in the background).

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            runs = list(self.runs().values())
            if condition(runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"the collector's {len(runs)} runs never met the condition")
            time.sleep(0.2)

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


# ------------------------------------------------------------ tracing pointed at a collector


def reset_langsmith_caches() -> None:
    """langsmith caches environment reads and its global client; start and end each test clean."""
    ls_utils.get_env_var.cache_clear()
    ls_utils.get_tracer_project.cache_clear()
    langsmith.configure(client=None)


def tracing_env(collector: LangSmithCollector, project: str = "handoff-tests") -> dict[str, str]:
    """The environment of another process (a notebook's kernel, `langgraph dev`) tracing to ``collector``."""
    return {"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": collector.url,
            "LANGSMITH_API_KEY": "local-test-key", "LANGSMITH_PROJECT": project}


@contextmanager
def tracing_to_local_collector() -> Iterator[LangSmithCollector]:
    """Tracing on, pointed at a local collector; every variable and cache is restored afterwards."""
    server = LangSmithCollector()
    with server.running(), pytest.MonkeyPatch.context() as env:
        for name, value in tracing_env(server).items():
            env.setenv(name, value)
        env.delenv("HANDOFF_TRACE_MASK", raising=False)
        env.delenv("HANDOFF_TRACE_HIDE_IO", raising=False)
        reset_langsmith_caches()
        try:
            yield server
        finally:
            flush_traces()
            forget_masking_clients()
            _close_global_client()
    reset_langsmith_caches()


def _close_global_client() -> None:
    """Close the client LangChain's tracer cached, while the collector still answers its GET /info."""
    client = run_trees._CLIENT  # what wait_for_all_tracers() flushes; None if no tracer made one
    if client is not None:
        _ = client.info
        client.close()
