"""Service worker processes for the concurrency and fault tests, and a client that retries like a real one.

Run as ``python -m tests.support.service_worker --port P --db URL --signals DIR``:
the HTTP service (``handoff.service.app.create_app``) under uvicorn, on the offline
model wrapped in ``SignalModel``, which obeys markers in the user's message:

- ``[block:NAME]``: on entering the model call, create ``DIR/NAME.entered``,
  then wait until ``DIR/NAME.release`` exists (at most ``BLOCK_LIMIT`` seconds,
  then fail the call). Tests use it to hold a turn in the middle of its model
  call, across processes, without sleeping.
- ``[timeout]``: raise ``openai.APITimeoutError``, as the OpenAI client does
  when the model server does not answer in time.

Everything else is the offline model's ordinary answer. With ``--environment-model``
the worker uses the model the environment configures instead (``OPENAI_BASE_URL``,
e.g. a local stub), as ``python -m handoff.service`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from handoff.agents.offline import OfflineChatModel

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"\[block:([\w-]+)\]")
TIMEOUT_MARK = "[timeout]"
BLOCK_LIMIT = 60.0
START_LIMIT = 60.0
"""Seconds a worker may take to answer /healthz after it was started."""
RETRYABLE = frozenset({"thread_busy", "persistence_unavailable", "persistence_busy", "turn_interrupted"})
"""Error codes after which a client sends the same message (same message_id) again."""


class SignalModel(OfflineChatModel):
    """The offline model, held or failed by markers in the user's message (see the module doc)."""

    signals: str = ""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        text = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        if TIMEOUT_MARK in text:
            import openai

            raise openai.APITimeoutError(request=httpx.Request("POST", "http://model.invalid/v1/chat/completions"))
        for name in BLOCK.findall(text):
            wait_for_release(Path(self.signals), name)
        return super()._generate(messages, *args, **kwargs)


def wait_for_release(signals: Path, name: str) -> None:
    """Say we entered (``NAME.entered``), then wait for ``NAME.release``."""
    (signals / f"{name}.entered").touch()
    deadline = time.monotonic() + BLOCK_LIMIT
    while not (signals / f"{name}.release").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"block {name!r} was never released")
        time.sleep(0.02)


def main() -> None:
    """Serve the app on ``--port`` over ``--db`` with ``SignalModel``."""
    import uvicorn

    from handoff.service.app import create_app

    parser = argparse.ArgumentParser(prog="python -m tests.support.service_worker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--signals", required=True)
    parser.add_argument("--environment-model", action="store_true",
                        help="the model the environment configures, not SignalModel")
    args = parser.parse_args()
    app = create_app(args.db, model=None if args.environment_model else SignalModel(signals=args.signals))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


# ------------------------------------------------------------------ running workers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    """One service process in a process group of its own (so it can be killed whole)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or the OOM killer would; wait for it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 10 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(db: str, signals: Path, log_dir: Path, *, env: dict[str, str] | None = None) -> Worker:
    """Start a worker process (not waiting for it: see ``wait_ready``).

    Args:
        db: Its persistence URL.
        signals: The folder of ``SignalModel``'s markers.
        log_dir: Where its log goes.
        env: Settings for it (``HANDOFF_API_TOKENS``, ``OPENAI_BASE_URL``, ...); none are inherited.
            With ``OPENAI_BASE_URL`` it runs the model the environment configures, not ``SignalModel``.
    """
    port = free_port()
    log = log_dir / f"worker-{port}.log"
    settings = dict(env or {})
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_DB", "LANGSMITH_TRACING", "HANDOFF_API_TOKENS"):
        full_env.pop(name, None)
    full_env.update(settings)
    model = ["--environment-model"] if "OPENAI_BASE_URL" in settings else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.service_worker", "--port", str(port), "--db", db,
             "--signals", str(signals), *model],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return Worker(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(worker: Worker, limit: float = START_LIMIT) -> None:
    """Wait until the worker answers /healthz; fail with its log if it dies or takes too long."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n{worker.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{worker.url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start within {limit} s:\n{worker.log.read_text()}")


@contextlib.contextmanager
def running_workers(
    count: int, db: str, signals: Path, log_dir: Path, *, env: dict[str, str] | None = None
) -> Iterator[list[Worker]]:
    """``count`` workers on ``db``, ready; every one stopped (its group killed if need be) on exit."""
    workers: list[Worker] = []
    try:
        for _ in range(count):
            workers.append(start_worker(db, signals, log_dir, env=env))
        for worker in workers:
            wait_ready(worker)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def release(signals: Path, name: str) -> None:
    """Let every model call blocked on ``[block:NAME]`` go on."""
    (signals / f"{name}.release").touch()


def wait_entered(signals: Path, name: str, limit: float = 30.0) -> None:
    """Wait until a model call has entered ``[block:NAME]``."""
    deadline = time.monotonic() + limit
    while not (signals / f"{name}.entered").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no model call entered block {name!r} within {limit} s")
        time.sleep(0.02)


# ------------------------------------------------------------------ a client that retries


@dataclass
class Sent:
    """One message and what it took to get it answered."""

    text: str
    message_id: str
    result: dict[str, Any] | None = None
    attempts: list[str] = field(default_factory=list)
    """What each attempt met, in order: 'ok', 'connection error', an error code."""


def post_message(
    base: str, thread_id: str, text: str, message_id: str, *, timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One ``POST /threads/{id}/messages`` with ``stream: false``."""
    return httpx.post(f"{base}/threads/{thread_id}/messages", timeout=timeout, headers=headers,
                      json={"text": text, "message_id": message_id, "stream": False})


def send_with_retries(
    urls: Sequence[str], thread_id: str, sent: Sent, *, first: int = 0, limit: float = 120.0,
    headers: dict[str, str] | None = None,
) -> Sent:
    """Send ``sent`` until the service answers it, as a careful client does.

    A connection error, a 5xx with a retryable code or a 409 ``thread_busy``
    sends the same text with the same ``message_id`` again, to the next worker
    in ``urls``, after a short pause. Any other answer (a 4xx, an unknown
    code) is final and raises. Gives up (raises) after ``limit`` seconds.
    """
    deadline = time.monotonic() + limit
    for attempt in itertools.count():
        base = urls[(first + attempt) % len(urls)]
        try:
            response = post_message(base, thread_id, sent.text, sent.message_id, headers=headers)
        except httpx.TransportError as exc:
            sent.attempts.append(f"connection error ({type(exc).__name__})")
        else:
            if response.status_code == 200:
                sent.attempts.append("ok")
                sent.result = response.json()
                return sent
            code = _code(response)
            sent.attempts.append(code)
            if code not in RETRYABLE:
                raise AssertionError(f"message {sent.message_id} refused for good: {response.status_code} "
                                     f"{response.text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"message {sent.message_id} not answered within {limit} s: {sent.attempts}")
        time.sleep(min(0.05 * (attempt + 1), 0.5))
    raise AssertionError("unreachable")


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http {response.status_code}"


# ------------------------------------------------------------------ reading threads back


@dataclass(frozen=True)
class StoredThread:
    """A thread as the database holds it."""

    transcript: list[BaseMessage]
    unfinished: bool


def stored_thread(service: Any, thread_id: str) -> StoredThread:
    """The thread's whole journal transcript (as of its latest checkpoint) and whether a run is pending.

    Args:
        service: A ``HandoffService`` on the same database.
        thread_id: The thread.
    """
    from handoff.graphs.journal import Journal
    from handoff.service.transcript import unfinished

    info = service.thread(thread_id)
    snapshot = service.graph(info.graph).get_state({"configurable": {"thread_id": thread_id}})
    values = snapshot.values or {}
    transcript = Journal(service.persistence.store, thread_id).messages(int(values.get("transcript_len") or 0))
    return StoredThread(transcript, unfinished(snapshot))


def check_exactly_once_in_order(stored: StoredThread, sent: Sequence[Sent]) -> None:
    """Every accepted user message exactly once, in the order sent, each followed by an agent's answer,
    and no run left pending."""
    users = [m for m in stored.transcript if isinstance(m, HumanMessage)]
    assert [str(m.content) for m in users] == [s.text for s in sent], (
        f"user turns lost, duplicated or reordered: stored {[str(m.content) for m in users]}, "
        f"sent {[(s.text, s.attempts) for s in sent]}")
    assert [m.id for m in users] == [s.message_id for s in sent]
    turns: list[list[BaseMessage]] = []
    for message in stored.transcript:
        if isinstance(message, HumanMessage):
            turns.append([])
        elif turns:
            turns[-1].append(message)
    for text, turn in zip([s.text for s in sent], turns, strict=True):
        answers = [m for m in turn if isinstance(m, AIMessage) and m.text.strip()]
        assert answers, f"the turn {text!r} has no answer in the transcript"
    assert not stored.unfinished, "a run was left unfinished"


if __name__ == "__main__":
    main()
