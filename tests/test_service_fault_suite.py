"""The fault suite: no input and no faulty model can poison, stall or garble a conversation.

A real worker process (uvicorn, ``tests/support/service_worker.py``) with access tokens on,
once on PostgreSQL and once on SQLite (the embedded default, one worker), talks to a faulty
OpenAI-compatible model (``tests/support/fault_model.py``) with a 2-second model deadline.
Against it:

- NUL, control characters and lone surrogates in every string a request carries (path,
  query, every body field, keys and values nested in the case-file updates, field names);
- the depth and size limits of every JSON field, and of the body itself;
- a model that trickles its answer a byte at a time, while another conversation goes on;
- a model that returns malformed tool calls of every kind, and garbled text;
- 16 clients at once on the one worker, each reading its thread between turns;
- three unauthenticated 200 MB bodies, streamed, with the worker's resident memory checked.

Every refusal is a 4xx in the documented error shape, never a 5xx, never a database's own
message; every thread stays usable afterwards. The last test reads every thread the suite
talked to back from the database: each accepted user message exactly once, in order, answered.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.boundary import MAX_DEPTH, THREAD_ID_MAX
from handoff.graphs.session import MAX_MESSAGE_CHARS
from handoff.service.blocking import BlockingHandoffService
from handoff.service.guard import MAX_BODY_BYTES
from handoff.service.models import NAME_CHARS
from tests.support.fault_model import BAD_CALLS, FaultModel
from tests.support.service_worker import (
    Sent,
    Worker,
    check_exactly_once_in_order,
    running_workers,
    send_with_retries,
    stored_thread,
)

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "tok-fault-suite-3b9e61"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL_DEADLINE_S = 2
CLIENTS = 16
REQUEST_LIMIT = 120.0
HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210 ({tag})."
AFTER = "Thanks, what happens next? ({tag})"
WANTS_A_PERSON = "This is useless, I want to speak to a manager ({tag})."
HAND_BACK = "general_support"
"""Who takes the conversation again after a person answered (so the next message gets an agent's answer)."""
BAD_CHARS = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x9f", "\ud800"]
"""NUL, other C0 and C1 control characters, and an unpaired surrogate (sent as a JSON escape)."""
LEAKS = ("CONTEXT", "portal", "psycopg", "sqlite", "Traceback", "DETAIL")
"""Words of database and interpreter internals that never belong in a response."""
RSS_GROWTH_MB = 64
"""Most a worker's resident memory may grow over three refused 200 MB uploads (it grew by
1.2 GB when the body was read before the token was checked; by about 1 MB now)."""
UPLOAD_MB = 200


@dataclass
class Stack:
    """One worker, the database it uses, and every conversation the suite had with it."""

    backend: str
    worker: Worker
    reader: BlockingHandoffService
    conversations: dict[str, list[Sent]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.worker.url

    def start_thread(self) -> str:
        response = httpx.post(f"{self.url}/threads", json={}, headers=AUTH, timeout=REQUEST_LIMIT)
        assert response.status_code == 201, response.text
        thread_id = response.json()["thread_id"]
        with self.lock:
            self.conversations[thread_id] = []
        return thread_id

    def say(self, thread_id: str, text: str) -> Sent:
        """Send one message (retrying only what the service says to retry) and record it."""
        sent = send_with_retries([self.url], thread_id, Sent(text, uuid.uuid4().hex), headers=AUTH,
                                 limit=REQUEST_LIMIT)
        with self.lock:
            self.conversations[thread_id].append(sent)
        return sent

    def check(self, thread_id: str) -> None:
        check_exactly_once_in_order(stored_thread(self.reader, thread_id), self.conversations[thread_id])


@pytest.fixture(scope="module")
def fault_model() -> Iterator[FaultModel]:
    with FaultModel().running() as model:
        yield model


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def stack(request: pytest.FixtureRequest, fault_model: FaultModel,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    backend = request.param
    folder = tmp_path_factory.mktemp(f"fault-suite-{backend}")
    db = POSTGRES_URL if backend == "postgresql" else f"sqlite:///{folder / 'service.sqlite'}"
    env = {"HANDOFF_API_TOKENS": f"{TOKEN}:alice", "OPENAI_BASE_URL": fault_model.base_url,
           "OPENAI_API_KEY": "sk-fault-suite", "HANDOFF_MODEL_TIMEOUT": str(MODEL_DEADLINE_S)}
    (folder / "signals").mkdir()
    with running_workers(1, db, folder / "signals", folder, env=env) as [worker], \
            BlockingHandoffService.open(db, model=OfflineChatModel()) as reader:
        yield Stack(backend, worker, reader)


def assert_refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    """A refusal in the documented shape, with nothing of the database or the interpreter in it."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "fields"} and error["code"] and error["message"], error
    assert not any(word in response.text for word in LEAKS), response.text[:500]
    return error


def post_json(url: str, body: Any) -> httpx.Response:
    """POST ``body`` as JSON with every non-ASCII character escaped (a lone surrogate is valid JSON
    as an escape, never as UTF-8)."""
    return httpx.post(url, content=json.dumps(body).encode(), timeout=REQUEST_LIMIT,
                      headers={**AUTH, "content-type": "application/json"})


def escalate(stack: Stack, tag: str) -> str:
    """A thread that waits for a person."""
    thread_id = stack.start_thread()
    waiting = stack.say(thread_id, WANTS_A_PERSON.format(tag=tag))
    assert waiting.result and waiting.result["escalation"], waiting.result
    return thread_id


def pending(stack: Stack, thread_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{stack.url}/threads/{thread_id}", headers=AUTH, timeout=REQUEST_LIMIT)
    assert response.status_code == 200, response.text
    return response.json()["escalation"]


# ------------------------------------------------------------------ characters


@pytest.mark.parametrize("char", BAD_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_nul_and_control_characters_anywhere_are_refused_and_poison_nothing(stack: Stack, char: str) -> None:
    thread_id = escalate(stack, f"chars-{ord(char)}")
    base = f"{stack.url}/threads"
    bad = f"a{char}b"
    escaped = quote(bad.encode("utf-8", "surrogatepass"))
    reply = {"reply": "A person here.", "stream": False}
    cases: list[tuple[str, httpx.Response]] = [
        ("thread_id", httpx.get(f"{base}/{escaped}", headers=AUTH)),
        ("thread_id", httpx.get(f"{base}/{escaped}/handoffs", headers=AUTH)),
        ("thread_id", post_json(f"{base}/{escaped}/messages", {"text": "Hello", "stream": False})),
        ("thread_id", post_json(f"{base}/{escaped}/escalation", reply)),
        ("limit", httpx.get(f"{base}/{thread_id}?limit=1{quote(char.encode('utf-8', 'surrogatepass'))}",
                            headers=AUTH)),
        ("graph", post_json(base, {"graph": f"customer-service{char}"})),
        ("text", post_json(f"{base}/{thread_id}/messages", {"text": f"Hello {bad} there", "stream": False})),
        ("message_id", post_json(f"{base}/{thread_id}/messages", {"text": "Hello", "message_id": bad})),
        ("reply", post_json(f"{base}/{thread_id}/escalation", {**reply, "reply": f"A person {bad}"})),
        ("hand_back_to", post_json(f"{base}/{thread_id}/escalation", {**reply, "hand_back_to": bad})),
        ("escalation_id", post_json(f"{base}/{thread_id}/escalation", {**reply, "escalation_id": bad})),
        ("case_file_updates", post_json(f"{base}/{thread_id}/escalation",
                                        {**reply, "case_file_updates": {"note": bad}})),
        ("case_file_updates", post_json(f"{base}/{thread_id}/escalation",
                                        {**reply, "case_file_updates": {bad: "value"}})),
        ("case_file_updates", post_json(f"{base}/{thread_id}/escalation",
                                        {**reply, "case_file_updates": {"a": [{"b": ["ok", bad]}]}})),
        (bad, post_json(f"{base}/{thread_id}/messages", {"text": "Hello", bad: True})),
    ]
    for name, response in cases:
        if name == "limit" and char.isspace() and response.status_code == 200:
            continue  # whitespace around a number: read as the number, as JSON numbers are
        error = assert_refused(response)
        # a field name that is not text (a lone surrogate) cannot be named: the body is refused
        names = (name, "body") if name == bad else (name,)
        assert error["message"].startswith(tuple(f"{n}{sep}" for n in names for sep in ":.")), \
            (name, error["message"])

    # nothing was stored: the escalation still waits, is answered, and the conversation goes on
    escalation = pending(stack, thread_id)
    assert escalation is not None
    answered = post_json(f"{base}/{thread_id}/escalation",
                         {**reply, "escalation_id": escalation["id"], "hand_back_to": HAND_BACK})
    assert answered.status_code == 200, answered.text
    stack.say(thread_id, AFTER.format(tag=f"chars-{ord(char)}"))
    stack.check(thread_id)


# ------------------------------------------------------------------ depth and size


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep (``depth`` containers, innermost empty)."""
    value: Any = {}
    for level in range(depth - 1):
        value = {"k": value} if level % 2 else [value]
    return value


def test_every_json_field_has_a_depth_and_a_size_limit(stack: Stack) -> None:
    thread_id = escalate(stack, "limits")
    base = f"{stack.url}/threads"
    reply = {"reply": "A person here.", "stream": False}
    answer = f"{base}/{thread_id}/escalation"
    message = f"{base}/{thread_id}/messages"
    over = {
        "text": post_json(message, {"text": "t" * (MAX_MESSAGE_CHARS + 1), "stream": False}),
        "message_id": post_json(message, {"text": "Hello", "message_id": "m" * (THREAD_ID_MAX + 1)}),
        "graph": post_json(base, {"graph": "g" * (NAME_CHARS + 1)}),
        "reply": post_json(answer, {**reply, "reply": "r" * (MAX_MESSAGE_CHARS + 1)}),
        "hand_back_to": post_json(answer, {**reply, "hand_back_to": "h" * (NAME_CHARS + 1)}),
        "escalation_id": post_json(answer, {**reply, "escalation_id": "e" * (THREAD_ID_MAX + 1)}),
    }
    for name, response in over.items():
        assert assert_refused(response)["message"].startswith(f"{name}:"), name

    too_much = [
        {"notes": "n" * (MAX_MESSAGE_CHARS + 1)},
        {"many": list(range(MAX_MESSAGE_CHARS))},
        {"deep": nested(MAX_DEPTH)},  # one level more than the limit, counting case_file_updates itself
        {"amount": 2**64},
    ]
    for updates in too_much:
        error = assert_refused(post_json(answer, {**reply, "case_file_updates": updates}))
        assert error["message"].startswith("case_file_updates")
    non_finite = httpx.post(answer, headers={**AUTH, "content-type": "application/json"},
                            content=b'{"reply": "A person here.", "case_file_updates": {"x": NaN}}')
    assert_refused(non_finite)
    # deeper than the JSON parser goes: refused as an unreadable body, never a 5xx
    bomb = b'{"reply": "A person here.", "case_file_updates": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    assert_refused(httpx.post(answer, content=bomb, headers={**AUTH, "content-type": "application/json"}))
    # the body itself: refused unread when it says it is too long, and when it turns out to be
    too_long = b'{"reply": "' + b"r" * MAX_BODY_BYTES + b'"}'
    assert_refused(httpx.post(answer, content=too_long, headers={**AUTH, "content-type": "application/json"}),
                   413)
    assert_refused(httpx.post(answer, content=iter([too_long[:1000], too_long[1000:]]),
                              headers={**AUTH, "content-type": "application/json"}), 413)

    # every refusal left the escalation waiting; a structured answer within the limits goes through
    escalation = pending(stack, thread_id)
    assert escalation is not None
    within = post_json(answer, {**reply, "escalation_id": escalation["id"], "hand_back_to": HAND_BACK,
                                "case_file_updates": {"notes": "n" * 1000, "deep": nested(MAX_DEPTH // 2)}})
    assert within.status_code == 200, within.text[:500]
    stack.say(thread_id, AFTER.format(tag="limits"))
    stack.check(thread_id)


# ------------------------------------------------------------------ faulty models


def test_a_trickling_model_ends_its_turn_honestly_and_stalls_no_one(stack: Stack, fault_model: FaultModel) -> None:
    slow, quick = stack.start_thread(), stack.start_thread()
    stack.say(slow, HELLO.format(tag="trickle"))
    cut_before = fault_model.cut
    finished: list[str] = []

    def trickled() -> Sent:
        sent = stack.say(slow, "[trickle] My internet keeps dropping every evening.")
        finished.append("trickled")
        return sent

    with ThreadPoolExecutor(max_workers=1) as pool:
        turn = pool.submit(trickled)
        for tag in ("one", "two", "three"):  # another conversation goes on meanwhile
            stack.say(quick, AFTER.format(tag=f"quick {tag}"))
        finished.append("quick")
        held = turn.result(timeout=REQUEST_LIMIT)

    assert finished == ["quick", "trickled"], "the trickling model held up another conversation"
    assert held.attempts == ["ok"] and held.result is not None
    assert "could not answer" in held.result["reply"], held.result["reply"]
    assert fault_model.cut > cut_before, "the worker never hung up on the trickling model"
    after = stack.say(slow, AFTER.format(tag="trickle"))
    assert after.result and after.result["reply"] and "could not answer" not in after.result["reply"]
    stack.check(slow)
    stack.check(quick)


def test_malformed_tool_calls_and_garbled_text_leave_the_conversation_whole(
    stack: Stack, fault_model: FaultModel
) -> None:
    thread_id = stack.start_thread()
    refused_before = len(fault_model.refused)
    stack.say(thread_id, HELLO.format(tag="malformed"))
    for round_ in range(len(BAD_CALLS)):
        sent = stack.say(thread_id, f"[bad-tool-call] My internet keeps dropping (round {round_}).")
        assert sent.attempts == ["ok"] and sent.result and sent.result["reply"], sent.result
    garbled = stack.say(thread_id, "[garbled] What did you find?")
    assert garbled.result is not None
    assert not any(ch in garbled.result["reply"] for ch in BAD_CHARS), repr(garbled.result["reply"])
    assert {kind for kind, _ in BAD_CALLS} <= set(fault_model.seen)
    after = stack.say(thread_id, AFTER.format(tag="malformed"))
    # a malformed call kept in the history as it came would make the model server refuse every later
    # request of this conversation: poisoned for good
    refused = fault_model.refused[refused_before:]
    assert refused == [], f"the model server refused the conversation's history: {refused}"
    assert after.result and "could not answer" not in after.result["reply"], after.result["reply"]

    state = httpx.get(f"{stack.url}/threads/{thread_id}", headers=AUTH, timeout=REQUEST_LIMIT)
    assert state.status_code == 200, state.text[:300]
    shown = json.dumps(state.json())
    assert "\\u0000" not in shown and "\\u001b" not in shown and "\\ud800" not in shown
    stack.check(thread_id)


# ------------------------------------------------------------------ load and memory


def test_sixteen_clients_at_once_on_one_worker_never_fail(stack: Stack) -> None:
    def converse(n: int) -> str:
        thread_id = stack.start_thread()
        for template in (HELLO, AFTER, "[garbled] And now? ({tag})", AFTER):
            sent = stack.say(thread_id, template.format(tag=f"client {n}"))
            # no retry was needed: no 503, no 409, no connection reset
            assert sent.attempts == ["ok"], sent.attempts
            read = httpx.get(f"{stack.url}/threads/{thread_id}", headers=AUTH, timeout=REQUEST_LIMIT)
            assert read.status_code == 200, read.text[:300]
        return thread_id

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        threads = list(pool.map(converse, range(CLIENTS), timeout=4 * REQUEST_LIMIT))
    assert len(set(threads)) == CLIENTS
    for thread_id in threads:
        stack.check(thread_id)


def resident_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def upload(megabytes: int) -> Iterator[bytes]:
    """A body streamed a megabyte at a time, never held whole by the test."""
    chunk = b"x" * (1024 * 1024)
    for _ in range(megabytes):
        yield chunk


def test_unauthenticated_oversized_bodies_cost_the_worker_no_memory(stack: Stack) -> None:
    pid = stack.worker.proc.pid
    url = f"{stack.url}/threads/{uuid.uuid4().hex}/messages"
    before = resident_mb(pid)
    declared = {"content-type": "application/json", "content-length": str(UPLOAD_MB * 1024 * 1024)}
    for headers in ({"content-type": "application/json"}, declared,
                    {**declared, "Authorization": "Bearer not-a-token"}):
        response = httpx.post(url, content=upload(UPLOAD_MB), headers=headers, timeout=REQUEST_LIMIT)
        assert_refused(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    with_token = httpx.post(url, content=upload(UPLOAD_MB), headers={**declared, **AUTH}, timeout=REQUEST_LIMIT)
    assert_refused(with_token, 413)
    grown = resident_mb(pid) - before
    assert grown < RSS_GROWTH_MB, f"the worker grew by {grown:.0f} MB over the refused uploads"
    assert httpx.get(f"{stack.url}/healthz", timeout=REQUEST_LIMIT).status_code == 200


# ------------------------------------------------------------------ the end


def test_every_thread_holds_each_message_once_in_order(stack: Stack) -> None:
    """Last: every conversation of the suite, read back from the database."""
    assert len(stack.conversations) >= CLIENTS
    for thread_id in stack.conversations:
        stack.check(thread_id)
    log = stack.worker.log.read_text(errors="replace")
    assert "database is locked" not in log and "Exception in ASGI application" not in log, log[-3000:]
