"""Load: many concurrent conversations through the HTTP service, on several workers sharing PostgreSQL.

Run with ``python -m benchmarks.load`` (options: ``--conversations``, ``--turns``,
``--workers``, ``--db``, ``--stream``, ``--json``, ``--vs-floor``; see ``--help``). It is a
benchmark, not a test; ``tests/test_load_smoke.py`` runs it at a tiny scale.

``--vs-floor N`` (what ``make bench-load`` runs, with N = 2) also serves bare LangGraph with the
same client, lines, HTTP stack, checkpointer, store and pool (benchmarks/load_floor.py), in N
pairs of whole runs whose order is swapped every pair, and prints the service's CPU, p95 and
throughput as multiples of the floor's: what the service's own work costs, on whatever machine
it runs. The floor's threads are checked too: every acknowledged line in its transcript, in
order, with an answer.

What it does:

1. starts ``--workers`` service processes (``python -m handoff.service --port P --db URL``,
   each in its own process group, on free local ports, on the offline model)
   sharing one PostgreSQL database, and waits for ``/healthz``;
2. plays a reference copy of every script once in this process, on an
   in-memory store with the same offline model: the offline model is
   deterministic, so this is the exact shape every conversation must have;
3. starts ``--conversations`` threads (``POST /threads``) and then plays them
   all at once, each turn a ``POST /threads/{id}/messages`` (JSON, or SSE with
   ``--stream``), each conversation's turns one after the other, turn ``k`` of
   conversation ``c`` on worker ``(c + k) mod workers``, so consecutive turns
   of a conversation always change process. Three conversations in four run
   the customer-service graph with a script that hands General -> Technical
   (transfer tool) -> Billing (keyword rule) -> General; the fourth runs one
   of the other three graphs (``--graphs customer-service`` turns that off);
4. measures the time to the first token: with the same workers, ``--probe``
   more conversations (20 by default, at most ``--conversations``) are played
   all at once as SSE, and each turn's time from sending it to its first
   ``token`` event is taken (the offline model streams its answer in chunks,
   as a real model does; a turn whose answer no model wrote, e.g. a person's,
   has none and is counted apart);
5. stops the workers, then reads every thread back from PostgreSQL itself (not
   through the service) and counts lost and corrupted turns (see ``verify``),
   and deletes the run's threads (``--keep-threads`` leaves them).

Every user message carries a marker naming its run, conversation and turn, so
a message that lands on the wrong thread is caught; when the service takes a
``message_id`` (it is read from ``/openapi.json``) the same name is the turn's
id, so a turn whose connection drops, times out or gets a 5xx is sent again
safely (counted as a retry), and the stored message must carry that id. A 409
``thread_busy`` (nothing was done) is counted and sent again. A conversation
stops at its first turn that still fails. Throughput is acknowledged turns per
second of the turn phase (thread creation excluded); latency is the client's
time from first sending a turn to having its whole answer, retries included.
CPU per turn is read from ``/proc`` for the workers, this process (the client)
and a local PostgreSQL server. The machine line includes the load average
before the run: numbers taken while something else ran are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, messages_from_dict
from langgraph.store.base import BaseStore, PutOp

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.journal import HANDOFFS, SENT, TRANSCRIPT, Journal
from handoff.graphs.registry import GRAPHS
from handoff.service.blocking import BlockingHandoffService
from handoff.service.embedding import THREADS_NAMESPACE
from handoff.service.errors import ERRORS_BY_CODE, ThreadBusy
from handoff.state import HandoffRecord

DEFAULT_DB = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[1]
CUSTOMER_SERVICE = "customer-service"
OTHER_GRAPHS = ("content-creation", "problem-solving", "sales")

CUSTOMER_SERVICE_SCRIPT = (
    "Hi, this is Dana, account ACC-1001, postcode 90210.",
    "Can you confirm the email you have for me?",
    "My internet keeps dropping every evening.",  # General -> Technical (transfer tool)
    "The router lights blink amber after each drop.",
    "I restarted the router twice already.",
    "Thanks. Also I was charged twice on invoice INV-2002 and want a refund.",  # Technical -> Billing (rule)
    "When will the money be back in my account?",
    "Please also check last month's statement.",
    "Thanks, a general question now: when are your shops open?",  # Billing -> General (transfer tool)
    "That is all, thank you.",
)
"""Ten customer-service turns with three handoffs; longer conversations cycle through it."""

FILLER = ("Thanks, noted.", "Could you summarise where we are?", "OK, thank you.",
          "Please keep me posted.", "Fine, thanks again.")
"""Lines that follow another graph's demo script to make up the turns."""

MODEL_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_MODEL", "HANDOFF_FALLBACK_MODEL",
             "HANDOFF_MODEL_TIMEOUT", "HANDOFF_MODEL_RETRIES", "LANGSMITH_TRACING",
             "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "HANDOFF_DB", "HANDOFF_API_TOKENS")
"""Environment the workers must not inherit: offline model, ``--db``, open access (no tokens)."""

MAX_RETRIES = 6
"""A turn is sent at most this many more times: after a 409 ``thread_busy`` (nothing was done), and,
when the service takes ``message_id`` (so a retry never adds the message twice), after a dropped
connection, a timeout or a 5xx. Every retry is counted in the report."""
KEEPALIVE_EXPIRY = 2.0
"""Seconds the client keeps an idle connection: below uvicorn's 5 s, so the client never reuses a
connection the server is closing at that moment."""


@dataclass(frozen=True)
class LoadConfig:
    """What to run."""

    conversations: int = 200
    turns: int = 10
    workers: int = 2
    db: str = DEFAULT_DB
    mix: bool = True
    """One conversation in four on another graph than customer-service."""
    stream: bool = False
    """Turns as server-sent events (also measures time to the first event) instead of JSON."""
    request_timeout: float = 120.0
    """Seconds one HTTP request may take."""
    deadline: float = 300.0
    """Seconds the whole turn phase may take; unfinished turns are then counted as not done."""
    startup_timeout: float = 90.0
    """Seconds a worker may take to answer ``/healthz``."""
    keep_threads: bool = False
    probe: int = 20
    """Conversations played after the load, all at once, as SSE, to time the first token (0: none);
    at most ``conversations``."""
    worker_module: str = "handoff.service"
    """What each worker runs (``python -m <module> --port P --db URL``); benchmarks/profile_service.py
    runs the same service under a profiler."""
    worker_args: tuple[tuple[str, ...], ...] = ()
    """More arguments for worker ``i`` (``worker_args[i]``), e.g. benchmarks/ab_service.py's ``--service-dir``."""
    floor: bool = False
    """Serve bare LangGraph instead of the service (benchmarks/load_floor.py): the same lines, HTTP
    stack, checkpointer, store and pool, none of the service's own work. No probe; each thread's
    transcript is checked for lost and corrupted turns."""


@dataclass
class TurnOutcome:
    """What the client saw for one turn."""

    status: int
    """HTTP status; 0 when no response came (timeout, connection error)."""
    seconds: float
    first_event_seconds: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    code: str | None = None
    """The service's error code (from the JSON error body, or an SSE ``error`` event)."""
    attempts: int = 1
    first_token_seconds: float | None = None
    """Seconds from sending to the first ``token`` event (SSE only; None when the answer had none)."""
    worker: int = -1
    """Which worker answered the last attempt."""

    @property
    def ok(self) -> bool:
        """The service acknowledged the turn with its result."""
        return self.status == 200 and self.result is not None


@dataclass
class Conversation:
    """One conversation of the run and what happened to each of its turns."""

    index: int
    graph: str
    texts: list[str]
    message_ids: list[str]
    ids_sent: bool = False
    """The service takes ``message_id`` and the turns were sent with ``message_ids``."""
    thread_id: str | None = None
    outcomes: list[TurnOutcome] = field(default_factory=list)
    busy: int = 0
    """409 ``thread_busy`` answers received."""
    retries: int = 0
    """Turns sent again after a dropped connection, a timeout or a 5xx (same ``message_id``)."""
    retry_reasons: list[str] = field(default_factory=list)
    """Why each retry was needed: the status and error code, or the connection error."""

    @property
    def acked(self) -> list[str]:
        """Texts of the turns the service acknowledged (a prefix: a conversation stops at its first failure)."""
        return [self.texts[k] for k, o in enumerate(self.outcomes) if o.ok]


@dataclass(frozen=True)
class Reference:
    """The shape every conversation on one graph must have, turn by turn."""

    segments: list[list[tuple[str, ...]]]
    """Per turn: a signature of each message from the user's message up to the next one."""
    records: list[list[tuple[str, ...]]]
    """Per turn: a signature of each handoff record the turn added."""
    active: list[str | None]
    """Per turn: who answers next, after the turn."""


@dataclass
class LoadReport:
    """What the benchmark measured and checked."""

    served: str
    """What the workers ran: ``service`` (handoff.service) or ``floor`` (benchmarks/load_floor.py)."""
    conversations: int
    turns_per_conversation: int
    workers: int
    graphs: dict[str, int]
    mode: str
    turns_planned: int
    turns_acked: int
    wall_seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    first_event_p50_ms: float | None
    first_event_p95_ms: float | None
    first_token_p50_ms: float | None
    """Time to the first token over the probe's turns (None without a probe)."""
    first_token_p95_ms: float | None
    probe_conversations: int
    probe_turns: int
    """Probe turns acknowledged."""
    probe_streamed: int
    """Probe turns whose answer came with tokens (the others had no model-written answer)."""
    probe_turn_p50_ms: float | None
    """Whole-turn p50 of the probe's turns, for comparison with its first token."""
    probe_errors: int
    thread_start_seconds: float
    handoffs: int
    handoffs_rejected: int
    busy_409: int
    retries: int
    """Turns sent again with the same message_id after a dropped connection, timeout or 5xx."""
    retry_reasons: dict[str, int]
    """How many retries each reason caused."""
    duplicates: int
    """Answers marked ``duplicate``: the service recognised a retried message and did not add it again."""
    errors: int
    not_run: int
    lost: int
    corrupted: int
    worker_cpu_ms_per_turn: float
    postgres_cpu_ms_per_turn: float | None
    """CPU of the local PostgreSQL server's processes (None when it is not readable in /proc)."""
    client_cpu_ms_per_turn: float
    worker_cpu_ms_per_turn_each: list[float]
    """Each worker's CPU over the turns it answered (benchmarks/ab_service.py compares two)."""
    problems: list[str]
    machine: dict[str, str]

    @property
    def clean(self) -> bool:
        """Every planned turn was acknowledged, none lost or corrupted (409s and retries are only counted)."""
        return (self.lost == 0 and self.corrupted == 0 and self.errors == 0 and self.not_run == 0
                and self.probe_errors == 0)

    def table(self) -> str:
        """The markdown table the benchmark prints."""
        first = ("" if self.first_event_p50_ms is None
                 else f" | {self.first_event_p50_ms:.0f} / {self.first_event_p95_ms:.0f}")
        pg = "?" if self.postgres_cpu_ms_per_turn is None else f"{self.postgres_cpu_ms_per_turn:.1f}"
        head_first = "" if self.first_event_p50_ms is None else " | first event p50 / p95 ms"
        rows = [
            f"| served | conversations x turns | workers | mode | turns acked | wall s | turns/s | p50 ms | p95 ms "
            f"| max ms{head_first} | CPU ms/turn: workers / PostgreSQL / client | handoffs (rejected) "
            f"| 409 / retries | failed | lost | corrupted |",
            "|---" * (16 + (1 if head_first else 0)) + "|",
            f"| {self.served} | {self.conversations} x {self.turns_per_conversation} | {self.workers} | {self.mode} "
            f"| {self.turns_acked}/{self.turns_planned} | {self.wall_seconds:.1f} | {self.throughput:.1f} "
            f"| {self.p50_ms:.0f} | {self.p95_ms:.0f} | {self.max_ms:.0f}{first} "
            f"| {self.worker_cpu_ms_per_turn:.1f} / {pg} / {self.client_cpu_ms_per_turn:.1f} "
            f"| {self.handoffs} ({self.handoffs_rejected}) "
            f"| {self.busy_409} / {self.retries} | {self.errors} | {self.lost} | {self.corrupted} |",
        ]
        return "\n".join(rows)

    def first_token_line(self) -> str:
        """What the probe measured, or that there was none."""
        if self.first_token_p50_ms is None:
            return "time to first token: not measured (--probe 0, or no probe turn streamed tokens)"
        return (f"time to first token (offline streaming model, SSE, {self.probe_conversations} "
                f"conversation{'' if self.probe_conversations == 1 else 's'} at "
                f"once after the load): p50 {self.first_token_p50_ms:.0f} ms, p95 {self.first_token_p95_ms:.0f} ms"
                f"; whole turn p50 {self.probe_turn_p50_ms:.0f} ms; {self.probe_streamed} of {self.probe_turns} "
                "turns streamed tokens")

    def machine_line(self) -> str:
        """One line naming what the numbers were measured on."""
        m = self.machine
        return (f"{m['nproc']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}, {m['packages']}, "
                f"PostgreSQL {m['postgresql']}; load average before the run {m['load_before']}")


# scripts and the reference --------------------------------------------------------------------------


def script(graph: str, turns: int) -> list[str]:
    """The lines of a conversation on ``graph``, ``turns`` long."""
    if graph == CUSTOMER_SERVICE:
        base = list(CUSTOMER_SERVICE_SCRIPT)
    else:
        base = list(GRAPHS[graph].demo)
        base += [FILLER[i % len(FILLER)] for i in range(max(0, 10 - len(base)))]
    return [base[k % len(base)] for k in range(turns)]


def turn_ref(run: str, index: int, turn: int) -> str:
    """Names turn ``turn`` (0-based) of conversation ``index`` of a run; also the turn's message_id."""
    return f"{run}-c{index:04d}-t{turn + 1:02d}"


def marked(lines: Sequence[str], run: str, index: int) -> list[str]:
    """Each line with a marker naming the run, the conversation and the turn."""
    return [f"{line} (ref {turn_ref(run, index, k)})" for k, line in enumerate(lines)]


def conversation(index: int, graph: str, turns: int, run: str) -> Conversation:
    """Conversation ``index`` of a run on ``graph``: its marked lines and message ids."""
    return Conversation(index=index, graph=graph, texts=marked(script(graph, turns), run, index),
                        message_ids=[turn_ref(run, index, k) for k in range(turns)])


def graph_of(index: int, mix: bool) -> str:
    """Which graph conversation ``index`` runs on: customer-service, or every fourth another graph."""
    if mix and index % 4 == 3:
        return OTHER_GRAPHS[(index // 4) % len(OTHER_GRAPHS)]
    return CUSTOMER_SERVICE


def message_signature(message: BaseMessage) -> tuple[str, ...]:
    """What must be equal between a stored message and the reference's (not its free text)."""
    if isinstance(message, HumanMessage):
        return ("user",)
    if isinstance(message, ToolMessage):
        return ("tool", message.name or "")
    if isinstance(message, AIMessage):
        calls = ",".join(call["name"] for call in message.tool_calls)
        return ("ai", message.name or "", "text" if message.text.strip() else "", calls)
    return (message.type,)


def record_signature(record: HandoffRecord) -> tuple[str, ...]:
    """Who handed to whom, how it was asked for, and what became of it."""
    return (record.source, record.target, record.request.trigger, record.request.trigger_name or "",
            record.outcome, record.rejection.code if record.rejection else "", record.routed_to)


def segments(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    """The transcript cut at each user message; each segment starts with one."""
    out: list[list[BaseMessage]] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            out.append([message])
        elif out:
            out[-1].append(message)
    return out


def references(graphs: set[str], turns: int) -> dict[str, Reference]:
    """Play each graph's script once in memory on the offline model; the shape every copy should have."""
    with BlockingHandoffService.open("memory", model=OfflineChatModel(), graphs={g: GRAPHS[g] for g in graphs}) as svc:
        out = {graph: play_reference(svc, graph, marked(script(graph, turns), "r000000", 0))
               for graph in sorted(graphs)}
    cs = out.get(CUSTOMER_SERVICE)
    if cs is not None and turns >= len(CUSTOMER_SERVICE_SCRIPT):
        kinds = {r[2] for turn in cs.records for r in turn if r[4] == "accepted"}
        if not {"tool", "rule"} <= kinds:
            raise RuntimeError(f"the customer-service script no longer hands over both by a transfer tool and "
                               f"by a rule: {[(r[0], r[1], r[2], r[4]) for turn in cs.records for r in turn]}")
    return out


def play_reference(svc: BlockingHandoffService, graph: str, texts: Sequence[str]) -> Reference:
    """``texts`` played on a new thread of an in-memory service: the shape a stored copy must have."""
    thread = svc.start_thread(graph).thread_id
    counts, active = [], []
    for text in texts:
        result = svc.result(svc.send(thread, text))
        counts.append(len(result.handoffs))
        active.append(result.active_agent)
        if result.escalation is not None:
            raise RuntimeError(f"the {graph} script escalates to a person at {text!r}; change it")
    stored = read_thread(svc.persistence.store, svc, thread)
    return Reference(
        segments=[[message_signature(m) for m in seg] for seg in segments(stored.messages)],
        records=[[record_signature(r) for r in stored.records[(counts[k - 1] if k else 0):counts[k]]]
                 for k in range(len(texts))],
        active=active,
    )


# reading a thread back -------------------------------------------------------------------------------


@dataclass
class StoredThread:
    """A thread as PostgreSQL holds it: the raw journal and the latest checkpoint's counters."""

    graph: str | None
    values: dict[str, Any]
    pending: bool
    messages: list[BaseMessage]
    records: list[HandoffRecord]
    transcript_keys: list[str]
    handoff_keys: list[str]


def _items(store: BaseStore, namespace: tuple[str, ...], expected: int) -> list[tuple[str, Any]]:
    found = store.search(namespace, limit=expected + 1000)
    return sorted((item.key, item.value) for item in found if item.namespace == namespace)


def read_thread(store: BaseStore, svc: BlockingHandoffService, thread_id: str) -> StoredThread:
    """Every journal item of the thread (also any beyond the checkpoint's counters) and its checkpoint."""
    info = store.get(THREADS_NAMESPACE, thread_id)
    graph = info.value.get("graph") if info is not None else None
    values: dict[str, Any] = {}
    pending = False
    if graph in svc.service.entries:
        snapshot = svc.graph(graph).get_state({"configurable": {"thread_id": thread_id}})
        values = dict(snapshot.values or {})
        pending = bool(snapshot.next) or any(task.interrupts for task in snapshot.tasks)
    journal = Journal(store, thread_id)
    transcript = _items(store, journal.namespace(TRANSCRIPT), int(values.get("transcript_len") or 0))
    handoffs = _items(store, journal.namespace(HANDOFFS), int(values.get("handoff_count") or 0))
    return StoredThread(
        graph=graph,
        values=values,
        pending=pending,
        messages=messages_from_dict([v for _, v in transcript]),
        records=[HandoffRecord.model_validate(v) for _, v in handoffs],
        transcript_keys=[k for k, _ in transcript],
        handoff_keys=[k for k, _ in handoffs],
    )


# verification -----------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Turns lost or corrupted, and why."""

    lost: set[tuple[int, int]] = field(default_factory=set)
    corrupted: set[tuple[int, int]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    handoffs: int = 0
    rejected: int = 0

    def merge(self, other: Verdict) -> None:
        """Add another verdict's findings (of other conversations) to this one."""
        self.lost |= other.lost
        self.corrupted |= other.corrupted
        self.problems.extend(other.problems)
        self.handoffs += other.handoffs
        self.rejected += other.rejected

    def bad(self, kind: str, conv: Conversation, turn: int, why: str) -> None:
        """Mark turn ``turn`` (0-based) of ``conv`` lost or corrupted."""
        key = (conv.index, turn)
        if key in self.lost or key in self.corrupted:
            return
        (self.lost if kind == "lost" else self.corrupted).add(key)
        self.problems.append(f"{kind} c{conv.index:04d} turn {turn + 1} ({conv.graph}, {conv.thread_id}): {why}")


def _keys(n: int) -> list[str]:
    return [f"{i:09d}" for i in range(n)]


def verify_conversation(conv: Conversation, stored: StoredThread, ref: Reference, verdict: Verdict) -> None:
    """Check one thread as stored against what the client was told and against the reference.

    A turn is **lost** when the service acknowledged it (200 with a result) but
    its user message is not in the stored transcript. It is **corrupted** when
    its message is stored more than once or out of order, when what follows it
    (agent replies, tool calls and results, handoff records) differs from the
    reference, when the stored reply is not the one the client received, or
    when the thread's counters and journal disagree (blamed on the last turn).
    A stored message the client never sent is a corrupted turn too.
    """
    acked = conv.acked
    # the one turn that may or may not be stored: it failed, or the deadline cut it off in flight
    failed = conv.texts[len(acked)] if len(acked) < len(conv.texts) else None
    last = max(len(acked) - 1, 0)
    thread_problems: list[str] = []
    if stored.graph != conv.graph:
        thread_problems.append(f"registered graph {stored.graph!r}, expected {conv.graph!r}")
    n_msgs, n_recs = int(stored.values.get("transcript_len") or 0), int(stored.values.get("handoff_count") or 0)
    if stored.transcript_keys != _keys(n_msgs):
        thread_problems.append(f"transcript journal has {len(stored.transcript_keys)} items, checkpoint says {n_msgs}")
    if stored.handoff_keys != _keys(n_recs):
        thread_problems.append(f"handoff journal has {len(stored.handoff_keys)} items, checkpoint says {n_recs}")
    if stored.pending:
        thread_problems.append("the thread has an unfinished step or a pending interrupt")
    segs = segments(stored.messages)
    said = [seg[0].text for seg in segs]
    if int(stored.values.get("turn") or 0) != len(acked) + (failed in said):
        thread_problems.append(f"checkpoint turn {stored.values.get('turn')} != {len(acked)} acknowledged turns")
    ids = [m.id for m in stored.messages]
    if len(set(ids)) != len(ids):
        thread_problems.append("a message id is stored twice")

    allowed = set(acked) | ({failed} if failed else set())
    for text in said:
        if text not in allowed:
            verdict.bad("corrupted", conv, last, f"stored a message the client did not send: {text[:80]!r}")
    holder: str | None = None
    for record in stored.records:  # the chain: each handoff starts where the last one left the thread
        if holder is not None and record.source != holder:
            thread_problems.append(f"handoff {record.source}->{record.target} while {holder} held the thread")
        if record.outcome == "accepted" and record.routed_to != record.target:
            thread_problems.append(f"accepted handoff to {record.target} routed to {record.routed_to}")
        holder = record.routed_to
    if holder is not None and stored.values.get("active_agent") != holder:
        thread_problems.append(f"active agent {stored.values.get('active_agent')} but last handoff left {holder}")

    records_before = 0
    for k, text in enumerate(acked):
        result = conv.outcomes[k].result or {}
        ref_records = ref.records[k]
        count = said.count(text)
        if count == 0:
            verdict.bad("lost", conv, k, "acknowledged but not in the stored transcript")
        elif count > 1:
            verdict.bad("corrupted", conv, k, f"stored {count} times")
        elif k >= len(said) or said[k] != text:
            verdict.bad("corrupted", conv, k, f"stored at position {said.index(text) + 1}")
        elif conv.ids_sent and segs[k][0].id != conv.message_ids[k]:
            verdict.bad("corrupted", conv, k, f"stored under message id {segs[k][0].id!r}, "
                                              f"sent as {conv.message_ids[k]!r}")
        else:
            seg = segs[k]
            shape = [message_signature(m) for m in seg]
            replies = [m.text for m in seg if isinstance(m, AIMessage) and m.text.strip()]
            mine = stored.records[records_before:records_before + len(ref_records)]
            if not replies:
                verdict.bad("corrupted", conv, k, "no agent reply stored after the message")
            elif shape != ref.segments[k]:
                verdict.bad("corrupted", conv, k, f"stored turn {shape} differs from the reference {ref.segments[k]}")
            elif replies[-1] != result.get("reply"):
                verdict.bad("corrupted", conv, k, "the stored reply is not the one the client received")
            elif [record_signature(r) for r in mine] != ref_records:
                verdict.bad("corrupted", conv, k, f"handoff records {[record_signature(r) for r in mine]} "
                                                  f"differ from the reference {ref_records}")
        records_before += len(ref_records)
        turn_events = [e.get("kind") for e in result.get("events", [])]
        if result.get("active_agent") != ref.active[k]:
            verdict.bad("corrupted", conv, k, f"client told {result.get('active_agent')} answers next, "
                                              f"reference {ref.active[k]}")
        elif len(result.get("handoffs", [])) != records_before:
            verdict.bad("corrupted", conv, k, f"client saw {len(result.get('handoffs', []))} handoff records, "
                                              f"expected {records_before}")
        elif (conv.outcomes[k].attempts == 1 and not result.get("duplicate")
              and turn_events.count("accepted") != sum(r[4] == "accepted" for r in ref_records)):
            # a retried turn's answer has only the events of the part that ran on the retry
            verdict.bad("corrupted", conv, k, f"client saw handoff events {turn_events}")
    if failed is not None and failed in said and said.index(failed) != len(acked):
        verdict.bad("corrupted", conv, len(acked), "the failed turn's message is stored out of order")
    for why in thread_problems:
        verdict.bad("corrupted", conv, last, why)
    verdict.handoffs += sum(r.outcome == "accepted" for r in stored.records)
    verdict.rejected += sum(r.outcome != "accepted" for r in stored.records)


def verify(db: str, convs: Sequence[Conversation], refs: dict[str, Reference], *, keep: bool) -> Verdict:
    """Read every thread back from ``db`` directly, check it (``verify_conversation``), then delete it."""
    verdict = Verdict()
    with BlockingHandoffService.open(db, model=OfflineChatModel()) as svc:
        store = svc.persistence.store
        for conv in convs:
            if conv.thread_id is None:
                continue
            stored = read_thread(store, svc, conv.thread_id)
            first = Verdict()
            verify_conversation(conv, stored, refs[conv.graph], first)
            if first.corrupted:
                # The offline model and the semantic triggers read each line's marker too, so one
                # conversation may rightly route otherwise than the shared reference: its own texts,
                # played in memory, are the reference it must match.
                with BlockingHandoffService.open("memory", model=OfflineChatModel(),
                                                 graphs={conv.graph: GRAPHS[conv.graph]}) as own:
                    first = Verdict()
                    verify_conversation(conv, stored, play_reference(own, conv.graph, conv.texts), first)
            verdict.merge(first)
        if not keep:
            for conv in convs:
                if conv.thread_id is not None:
                    delete_thread(svc, conv.thread_id)
    return verdict


def delete_thread(svc: BlockingHandoffService, thread_id: str) -> None:
    """Remove a thread's checkpoints, journal and registration."""
    store = svc.persistence.store
    svc.persistence.checkpointer.delete_thread(thread_id)
    journal = Journal(store, thread_id)
    ops = [PutOp(THREADS_NAMESPACE, thread_id, None)]
    for kind in (TRANSCRIPT, HANDOFFS, SENT):
        ns = journal.namespace(kind)
        ops += [PutOp(ns, key, None) for key, _ in _items(store, ns, 10_000)]
    store.batch(ops)


def verify_floor(db: str, convs: Sequence[Conversation], *, keep: bool) -> Verdict:
    """The floor's threads read back from ``db``: each acknowledged line in its transcript, in order,
    each followed by an answer; then the threads are deleted (unless ``keep``)."""
    import psycopg

    from benchmarks.load_floor import NAMESPACE

    verdict = Verdict()
    with psycopg.connect(db, autocommit=True) as conn:
        for conv in convs:
            if conv.thread_id is None:
                continue
            prefix = f"{NAMESPACE}.{conv.thread_id}"
            rows = conn.execute("SELECT value FROM store WHERE prefix = %s ORDER BY key", (prefix,)).fetchall()
            kinds = [row[0].get("type") for row in rows]
            said = [row[0].get("data", {}).get("content") for row in rows if row[0].get("type") == "human"]
            for turn, text in enumerate(conv.acked):
                if turn >= len(said):
                    verdict.bad("lost", conv, turn, "not in the transcript")
                elif said[turn] != text or kinds[2 * turn + 1:2 * turn + 2] != ["ai"]:
                    verdict.bad("corrupted", conv, turn, f"transcript holds {said[turn]!r}")
            if len(said) > len(conv.acked):
                verdict.bad("corrupted", conv, len(conv.acked), f"{len(said) - len(conv.acked)} lines never acknowledged")
            if not keep:
                conn.execute("DELETE FROM store WHERE prefix = %s", (prefix,))
                for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
                    conn.execute(f"DELETE FROM {table} WHERE thread_id = %s", (conv.thread_id,))
    return verdict


# the workers -----------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(data_dir: str) -> dict[str, str]:
    """The workers' environment: offline model, no tracing, data folder outside the project."""
    env = {k: v for k, v in os.environ.items() if k not in MODEL_ENV}
    env.update(HANDOFF_OFFLINE="1", HANDOFF_DATA_DIR=data_dir, PYTHONUNBUFFERED="1")
    return env


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of a process (with its reaped children's), from Linux ``/proc``; 0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = sum(int(f) for f in fields[11:15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(db: str) -> float | None:
    """CPU seconds used so far by a local PostgreSQL server's processes; None when remote or unreadable.

    Backends that exited are counted through the postmaster's reaped-children
    time, so differences between two readings cover short-lived connections.
    """
    host = urlsplit(db).hostname or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name), children=True)
                    seen = True
    return total if seen else None


@contextlib.contextmanager
def service_workers(count: int, db: str, startup_timeout: float, module: str = "handoff.service",
                    extra: Sequence[Sequence[str]] = ()) -> Iterator[list[tuple[str, int]]]:
    """Start ``count`` service processes (``python -m module``, worker ``i`` with ``extra[i]`` added) on
    ``db``; yields ``(base URL, pid)`` each; kills their groups on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="handoff-load-") as tmp:
        try:
            workers = []
            for i in range(count):
                port = free_port()
                log = open(Path(tmp) / f"worker{i}.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", module, "--port", str(port), "--db", db, *(extra[i] if i < len(extra) else ())],
                    cwd=ROOT, env=worker_env(tmp), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
                log.close()
                workers.append((f"http://127.0.0.1:{port}", procs[-1].pid))
            for i, (url, _) in enumerate(workers):
                _wait_healthy(url, procs[i], Path(tmp) / f"worker{i}.log", startup_timeout)
            yield workers
        finally:
            for proc in procs:
                _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{url}/healthz", timeout=2)
            if response.status_code == 200:
                if response.json().get("persistence") != "postgresql":
                    raise RuntimeError(f"worker {url} is not on PostgreSQL: {response.text}")
                return
        time.sleep(0.2)
    raise RuntimeError(f"worker {url} not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


# the client ------------------------------------------------------------------------------------------


async def _start(client: httpx.AsyncClient, url: str, conv: Conversation) -> None:
    response = await client.post(f"{url}/threads", json={"graph": conv.graph})
    response.raise_for_status()
    conv.thread_id = response.json()["thread_id"]


async def _send(client: httpx.AsyncClient, path: str, body: dict[str, Any], stream: bool) -> TurnOutcome:
    """One attempt at a turn: JSON, or SSE read to its ``done`` (or ``error``) event."""
    started = time.perf_counter()
    try:
        if not stream:
            response = await client.post(path, json={**body, "stream": False})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                return TurnOutcome(response.status_code, elapsed, error=response.text[:300],
                                   code=_error_code(response.text))
            return TurnOutcome(200, elapsed, result=response.json())
        first: float | None = None
        async with client.stream("POST", path, json={**body, "stream": True}) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return TurnOutcome(response.status_code, time.perf_counter() - started, error=text[:300],
                                   code=_error_code(text))
            event, result, error, code = "", None, None, None
            first_token: float | None = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    first = first if first is not None else time.perf_counter() - started
                    event = line[len("event:"):].strip()
                    if event == "token" and first_token is None:
                        first_token = time.perf_counter() - started
                elif line.startswith("data:") and event in ("done", "error"):
                    data = json.loads(line[len("data:"):])
                    if event == "done":
                        result = data["result"]
                    else:
                        error, code = data.get("message"), data.get("code")
            return TurnOutcome(200, time.perf_counter() - started, first, result,
                               error or (None if result else "the stream ended without a result"), code,
                               first_token_seconds=first_token)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return TurnOutcome(0, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")


def _error_code(body: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return str(json.loads(body)["error"]["code"])
    return None


def _retryable(outcome: TurnOutcome, ids_sent: bool) -> bool:
    """Whether sending the turn again is safe and may succeed."""
    if outcome.code == ThreadBusy.code:
        return True  # nothing was done
    if not ids_sent:
        return False  # without a message_id a retry could add the message twice
    known = ERRORS_BY_CODE.get(outcome.code or "")
    return outcome.status == 0 or outcome.status >= 500 or (known is not None and known.status >= 500)


async def _converse(urls: Sequence[str], conv: Conversation, cfg: LoadConfig) -> None:
    """Play the conversation's turns one after the other, on a client of its own (as each user has);
    stop at the first turn that fails for good.

    Latency is the user's: from the first attempt to the answer, retries included. A client per
    conversation keeps one connection per worker: one client shared by all of them held about 200
    connections, and httpx looks through its pool on every request, so the client's CPU per turn
    (taken from the same two cores as the workers') grew with the connections, and varied by run
    from 5 to 11 ms.
    """
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=len(urls),
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(cfg.request_timeout, connect=10.0)) as client:
        await _play(client, urls, conv, cfg.stream)


async def _play(client: httpx.AsyncClient, urls: Sequence[str], conv: Conversation, stream: bool) -> None:
    assert conv.thread_id is not None
    for k, text in enumerate(conv.texts):
        body: dict[str, Any] = {"text": text}
        if conv.ids_sent:
            body["message_id"] = conv.message_ids[k]
        started = time.perf_counter()
        for attempt in range(MAX_RETRIES + 1):
            worker = (conv.index + k + attempt) % len(urls)  # a retry goes to the next worker
            outcome = await _send(client, f"{urls[worker]}/threads/{conv.thread_id}/messages", body, stream)
            outcome.worker = worker
            if outcome.ok or attempt == MAX_RETRIES or not _retryable(outcome, conv.ids_sent):
                break
            if outcome.code == ThreadBusy.code:
                conv.busy += 1
            else:
                conv.retries += 1
                conv.retry_reasons.append(f"HTTP {outcome.status} {outcome.code or (outcome.error or '')[:120]}")
            await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
        outcome.seconds = time.perf_counter() - started
        outcome.attempts = attempt + 1
        conv.outcomes.append(outcome)
        if not outcome.ok:
            return


async def takes_message_ids(client: httpx.AsyncClient, url: str) -> bool:
    """Whether the service's message endpoint accepts a ``message_id`` (safe retries)."""
    response = await client.get(f"{url}/openapi.json")
    response.raise_for_status()
    schema = response.json().get("components", {}).get("schemas", {}).get("SendMessage", {})
    return "message_id" in schema.get("properties", {})


async def drive(urls: Sequence[str], convs: Sequence[Conversation], cfg: LoadConfig) -> tuple[float, float, float]:
    """Start every thread, then play every conversation at once.

    Returns the seconds thread creation took, the seconds the turn phase took,
    and this process's CPU seconds during the turn phase.
    """
    limits = httpx.Limits(max_connections=len(convs) + 8, max_keepalive_connections=len(convs) + 8,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    timeout = httpx.Timeout(cfg.request_timeout, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        ids = await takes_message_ids(client, urls[0])
        for conv in convs:
            conv.ids_sent = ids
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(_start(client, urls[c.index % len(urls)], c) for c in convs)), cfg.startup_timeout
        )
        thread_start = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        tasks = [asyncio.create_task(_converse(urls, c, cfg)) for c in convs]
        _, pending = await asyncio.wait(tasks, timeout=cfg.deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return thread_start, time.perf_counter() - started, time.process_time() - cpu


# the run -----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def machine(db: str) -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("langgraph", "langgraph-checkpoint-postgres", "psycopg", "fastapi", "uvicorn", "httpx"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    server = "unknown"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(db, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server = str(row[0]).split()[0] if row else server
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "postgresql": server,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def run_load(cfg: LoadConfig) -> LoadReport:
    """Start the workers, play the conversations, stop the workers, verify, and report."""
    if cfg.conversations < 1 or cfg.turns < 1 or cfg.workers < 1:
        raise ValueError("conversations, turns and workers must be at least 1")
    run = f"r{random.SystemRandom().randrange(10**6):06d}"
    convs = [conversation(i, graph_of(i, cfg.mix), cfg.turns, run) for i in range(cfg.conversations)]
    probe = 0 if cfg.floor else min(max(cfg.probe, 0), cfg.conversations)
    probes = [conversation(i, graph_of(i, cfg.mix), cfg.turns, run)
              for i in range(cfg.conversations, cfg.conversations + probe)]
    host = machine(cfg.db)  # before anything runs: the load average says whether the machine was quiet
    refs = {} if cfg.floor else references({c.graph for c in [*convs, *probes]}, cfg.turns)
    module = "benchmarks.load_floor" if cfg.floor else cfg.worker_module
    with service_workers(cfg.workers, cfg.db, cfg.startup_timeout, module, cfg.worker_args) as workers:
        urls = [url for url, _ in workers]
        cpu_before = [cpu_seconds(pid) for _, pid in workers]
        pg_before = postgres_cpu_seconds(cfg.db)
        thread_start, wall, client_cpu = asyncio.run(drive(urls, convs, cfg))
        worker_cpus = [cpu_seconds(pid) - before for (_, pid), before in zip(workers, cpu_before, strict=True)]
        worker_cpu = sum(worker_cpus)
        pg_after = postgres_cpu_seconds(cfg.db)
        if probes:  # after the load's CPU readings: the probe's turns are not counted in them
            asyncio.run(drive(urls, probes, dataclasses.replace(cfg, stream=True)))
    if pg_before is not None and pg_after is not None and pg_after < pg_before:
        pg_after = None  # the server restarted during the run
    verdict = (verify_floor(cfg.db, convs, keep=cfg.keep_threads) if cfg.floor
               else verify(cfg.db, convs, refs, keep=cfg.keep_threads))
    if probes:  # checked like the others; their handoffs are not the load's
        checked = verify(cfg.db, probes, refs, keep=cfg.keep_threads)
        verdict.lost |= checked.lost
        verdict.corrupted |= checked.corrupted
        verdict.problems += checked.problems

    outcomes = [o for c in convs for o in c.outcomes]
    ok = [o for o in outcomes if o.ok]
    latencies = [o.seconds * 1000 for o in ok]
    firsts = [o.first_event_seconds * 1000 for o in ok if o.first_event_seconds is not None]
    probed = [o for c in probes for o in c.outcomes if o.ok]
    first_tokens = [o.first_token_seconds * 1000 for o in probed if o.first_token_seconds is not None]
    problems = verdict.problems + [
        f"c{c.index:04d} turn {len(c.acked) + 1}: HTTP {o.status} {o.code or ''}: {o.error}"
        for c in [*convs, *probes] for o in c.outcomes if not o.ok
    ]
    graphs: dict[str, int] = {}
    for c in convs:
        graphs[c.graph] = graphs.get(c.graph, 0) + 1
    return LoadReport(
        served="floor" if cfg.floor else "service",
        conversations=cfg.conversations,
        turns_per_conversation=cfg.turns,
        workers=cfg.workers,
        graphs=graphs,
        mode="SSE" if cfg.stream else "JSON",
        turns_planned=cfg.conversations * cfg.turns,
        turns_acked=len(ok),
        wall_seconds=wall,
        throughput=len(ok) / wall if wall > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        max_ms=max(latencies, default=0.0),
        first_event_p50_ms=percentile(firsts, 50) if cfg.stream else None,
        first_event_p95_ms=percentile(firsts, 95) if cfg.stream else None,
        first_token_p50_ms=percentile(first_tokens, 50) if first_tokens else None,
        first_token_p95_ms=percentile(first_tokens, 95) if first_tokens else None,
        probe_conversations=len(probes),
        probe_turns=len(probed),
        probe_streamed=len(first_tokens),
        probe_turn_p50_ms=percentile([o.seconds * 1000 for o in probed], 50) if probed else None,
        probe_errors=len(probes) * cfg.turns - len(probed),
        thread_start_seconds=thread_start,
        handoffs=verdict.handoffs,
        handoffs_rejected=verdict.rejected,
        busy_409=sum(c.busy for c in convs) + sum(o.code == ThreadBusy.code for o in outcomes),
        retries=sum(c.retries for c in convs),
        retry_reasons=dict(Counter(reason for c in [*convs, *probes] for reason in c.retry_reasons)),
        duplicates=sum(bool((o.result or {}).get("duplicate")) for o in ok),
        errors=len(outcomes) - len(ok),
        not_run=cfg.conversations * cfg.turns - len(outcomes),
        lost=len(verdict.lost),
        corrupted=len(verdict.corrupted),
        worker_cpu_ms_per_turn=worker_cpu * 1000 / max(len(ok), 1),
        worker_cpu_ms_per_turn_each=[cpu * 1000 / max(sum(o.worker == i for o in ok), 1)
                                     for i, cpu in enumerate(worker_cpus)],
        postgres_cpu_ms_per_turn=(None if pg_before is None or pg_after is None
                                  else (pg_after - pg_before) * 1000 / max(len(ok), 1)),
        client_cpu_ms_per_turn=client_cpu * 1000 / max(len(ok), 1),
        problems=problems[:50],
        machine=host,
    )


def print_report(report: LoadReport) -> None:
    """The run's heading, table, first-token line, machine and problems."""
    print_heading(report)
    print(report.table())
    print(report.first_token_line())
    if report.retry_reasons:
        print("retried: " + "; ".join(f"{n} x {why}" for why, n in report.retry_reasons.items()))
    print_machine(report)
    print_problems([report])


def print_heading(report: LoadReport) -> None:
    mix = ", ".join(f"{n} {g}" for g, n in sorted(report.graphs.items()))
    print(f"{report.conversations} concurrent conversations x {report.turns_per_conversation} turns "
          f"({mix}), {report.workers} workers on PostgreSQL, the service on the offline model, "
          f"{report.mode} turns; threads started in {report.thread_start_seconds:.1f} s")


def print_machine(report: LoadReport) -> None:
    print(f"\nmeasured on {report.machine_line()}")
    load = float(report.machine["load_before"].split()[0])
    if load > 0.5 * int(report.machine["nproc"]):
        print(f"warning: the machine was busy before the run (load average {load:.2f}); "
              "these numbers are not comparable with a quiet run")


def print_problems(reports: Sequence[LoadReport]) -> None:
    problems = [p for r in reports for p in r.problems]
    if problems:
        print("\nproblems (first 20):")
        for problem in problems[:20]:
            print(f"  {problem}")


def compare_with_floor(cfg: LoadConfig, rounds: int, *, json_out: bool = False) -> list[LoadReport]:
    """``rounds`` pairs of whole runs, the service's and the floor's (benchmarks/load_floor.py), the
    order swapped every pair (service, floor, floor, service, ...); prints every run, in the order
    run, and the service's cost as a multiple of the floor's, pair by pair, with the spread."""
    pairs: list[tuple[LoadReport, LoadReport]] = []
    ran: list[LoadReport] = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        done: dict[bool, LoadReport] = {}
        for floor in order:
            print(f"run {len(ran) + 1} of {2 * rounds}: the {'floor' if floor else 'service'}", file=sys.stderr)
            done[floor] = run_load(dataclasses.replace(cfg, floor=floor))
            ran.append(done[floor])
        pairs.append((done[False], done[True]))
    ratios = {
        "worker CPU ms/turn": [s.worker_cpu_ms_per_turn / f.worker_cpu_ms_per_turn for s, f in pairs],
        "PostgreSQL CPU ms/turn": [s.postgres_cpu_ms_per_turn / f.postgres_cpu_ms_per_turn for s, f in pairs
                                   if s.postgres_cpu_ms_per_turn and f.postgres_cpu_ms_per_turn],
        "p95 ms": [s.p95_ms / f.p95_ms for s, f in pairs if f.p95_ms],
        "turns/s": [s.throughput / f.throughput for s, f in pairs if f.throughput],
    }
    if json_out:
        print(json.dumps({"runs": [{**asdict(r), "clean": r.clean} for r in ran],
                          "service_over_floor": ratios}, indent=2))
        return ran
    print_heading(ran[0])
    print("the floor: bare LangGraph on the same HTTP stack, checkpointer, store and pool, a zero-cost "
          "scripted model (benchmarks/load_floor.py); runs in the order run")
    print("\n".join([*ran[0].table().splitlines(), *(r.table().splitlines()[-1] for r in ran[1:])]))
    print(next((r.first_token_line() for r in ran if r.served == "service"), ""))
    print(f"\nservice / floor, {rounds} pair{'s' if rounds > 1 else ''} of runs, the order swapped each pair:")
    for name, values in ratios.items():
        if values:
            spread = f" (pairs {min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
            print(f"  {name}: {statistics.median(values):.2f}x{spread}")
    print_machine(ran[0])
    print_problems(ran)
    return ran


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print the table (or JSON); exit status 1 unless every turn is clean."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10, help="turns per conversation")
    parser.add_argument("--workers", type=int, default=2, help="service processes")
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL URL the workers share")
    parser.add_argument("--graphs", choices=("mix", CUSTOMER_SERVICE), default="mix",
                        help="mix: one conversation in four on another graph")
    parser.add_argument("--stream", action="store_true", help="SSE turns; also reports time to the first event")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per HTTP request")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole turn phase")
    parser.add_argument("--keep-threads", action="store_true", help="leave the run's threads in the database")
    parser.add_argument("--probe", type=int, default=20,
                        help="conversations played after the load as SSE to time the first token (0: none)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--vs-floor", type=int, default=0, metavar="ROUNDS",
                        help="also run bare LangGraph on the same stack (benchmarks/load_floor.py): ROUNDS pairs "
                             "of whole runs, order swapped each pair, and the service's cost over the floor's")
    args = parser.parse_args(argv)
    if min(args.conversations, args.turns, args.workers) < 1:
        parser.error("--conversations, --turns and --workers must be at least 1")
    if args.vs_floor and args.stream:
        parser.error("--vs-floor plays JSON turns: the floor (benchmarks/load_floor.py) does not stream")
    if not args.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db must be a postgresql:// URL: the workers share threads through it")
    cfg = LoadConfig(conversations=args.conversations, turns=args.turns, workers=args.workers, db=args.db,
                     mix=args.graphs == "mix", stream=args.stream, request_timeout=args.request_timeout,
                     deadline=args.deadline, keep_threads=args.keep_threads, probe=args.probe)
    if args.vs_floor:
        reports = compare_with_floor(cfg, args.vs_floor, json_out=args.json)
        return 0 if all(r.clean for r in reports) else 1
    report = run_load(cfg)
    if args.json:
        print(json.dumps({**asdict(report), "clean": report.clean}, indent=2))
    else:
        print_report(report)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
