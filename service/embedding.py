"""The embedding API: conversations with the handoff graphs, for any application.

``HandoffService`` owns one persistence (memory, SQLite or PostgreSQL, see
graphs/persistence.py) and compiles each graph once against it. Several
services on one PostgreSQL database share their threads: any of them may take
a conversation's next turn or answer its pending escalation.

Turns are streams of typed events (``service.models.TurnEvent``): handoff
events as the gate emits them, each node's step, what agents say, a pending
escalation, then ``done`` with the whole result. ``send`` and ``answer`` check
the request before they return the stream, so errors surface before any event.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from graphs.gate import GATE
from graphs.human import HumanAnswer
from graphs.intake import INTAKE
from graphs.journal import Journal
from graphs.persistence import Persistence, open_persistence
from graphs.registry import GRAPHS, GraphEntry
from graphs.session import HandoffSession
from service.errors import (
    EscalationNotFound,
    EscalationPending,
    InvalidAnswer,
    NoPendingEscalation,
    ThreadBusy,
    ThreadNotFound,
    TurnFailed,
    UnknownGraph,
)
from service.models import (
    DEFAULT_GRAPH,
    AnswerEscalation,
    ChatMessage,
    DoneEvent,
    ErrorEvent,
    Escalation,
    EscalationEvent,
    GraphInfo,
    MessageEvent,
    StepEvent,
    ThreadInfo,
    ThreadState,
    TurnEvent,
    TurnResponse,
)
from state import HandoffEvent, HandoffRecord

THREADS_NAMESPACE = ("handoff", "threads")
"""Store namespace of the service's thread registry: thread id -> graph name, creation time."""
NOT_AGENTS = frozenset({"__start__", "__end__", INTAKE, GATE})
TRANSCRIPT_LIMIT = 200


class HandoffService:
    """Threads of the named graphs over one persistence."""

    def __init__(
        self,
        persistence: Persistence,
        *,
        model: BaseChatModel | None = None,
        graphs: Mapping[str, GraphEntry] | None = None,
    ) -> None:
        """Serve ``graphs`` over ``persistence``.

        Args:
            persistence: Checkpointer and store, from ``open_persistence``.
            model: The chat model for every graph; the environment's (or offline) by default.
            graphs: The graphs served, by name; the registry's by default.
        """
        self.persistence = persistence
        self.model = model
        self.entries = dict(graphs if graphs is not None else GRAPHS)
        self._compiled: dict[str, CompiledStateGraph] = {}
        self._compile_lock = threading.Lock()
        self._turn_locks: dict[str, threading.Lock] = {}

    @classmethod
    @contextmanager
    def open(cls, url: str = "memory", **kwargs: Any) -> Iterator[HandoffService]:
        """A service over ``open_persistence(url)``, closed on exit; kwargs go to the constructor."""
        with open_persistence(url) as persistence:
            yield cls(persistence, **kwargs)

    # graphs -----------------------------------------------------------------

    def graph(self, name: str) -> CompiledStateGraph:
        """Graph ``name`` compiled with this service's checkpointer and store (once)."""
        entry = self.entries.get(name)
        if entry is None:
            raise UnknownGraph(f"unknown graph {name!r}; known graphs: {', '.join(sorted(self.entries))}")
        with self._compile_lock:
            if name not in self._compiled:
                self._compiled[name] = entry.build(model=self.model).compile(
                    checkpointer=self.persistence.checkpointer, store=self.persistence.store
                )
            return self._compiled[name]

    def graphs(self) -> list[GraphInfo]:
        """The graphs this service runs."""
        return [
            GraphInfo(name=e.name, title=e.title, flow=e.flow, agents=agent_names(self.graph(e.name)))
            for e in self.entries.values()
        ]

    # threads ----------------------------------------------------------------

    def start_thread(self, graph: str = DEFAULT_GRAPH) -> ThreadInfo:
        """Register a new conversation on ``graph``."""
        self.graph(graph)
        info = ThreadInfo(thread_id=uuid.uuid4().hex, graph=graph, created_at=datetime.now(UTC))
        self.persistence.store.put(
            THREADS_NAMESPACE, info.thread_id, info.model_dump(mode="json", exclude={"thread_id"}),
            index=False,
        )
        return info

    def thread(self, thread_id: str) -> ThreadInfo:
        """The thread's registration; ThreadNotFound if this service never started it."""
        item = self.persistence.store.get(THREADS_NAMESPACE, thread_id)
        if item is None:
            raise ThreadNotFound(f"no thread {thread_id!r}; start one with POST /threads")
        return ThreadInfo(thread_id=thread_id, **item.value)

    def state(self, thread_id: str, limit: int = TRANSCRIPT_LIMIT) -> ThreadState:
        """The thread's transcript (last ``limit`` messages), agent, case file, handoffs, escalation."""
        info = self.thread(thread_id)
        graph = self.graph(info.graph)
        snapshot = graph.get_state(_config(thread_id))
        values = snapshot.values or {}
        journal = Journal(graph.store, thread_id)
        stored = journal.messages(values.get("transcript_len", 0), last=limit)
        transcript = stored or list(values.get("messages") or [])[-limit:]
        return ThreadState(
            thread_id=thread_id,
            graph=info.graph,
            created_at=info.created_at,
            active_agent=values.get("active_agent"),
            turn=values.get("turn", 0),
            case_file=values.get("case_file") or {},
            messages=chat_messages(transcript),
            handoffs=self._records(graph, thread_id),
            escalation=pending_escalation(snapshot),
        )

    def handoffs(self, thread_id: str) -> list[HandoffRecord]:
        """Every handoff record of the thread, oldest first."""
        info = self.thread(thread_id)
        return self._records(self.graph(info.graph), thread_id)

    def escalation(self, thread_id: str) -> Escalation | None:
        """The escalation the thread waits on, or None."""
        info = self.thread(thread_id)
        return pending_escalation(self.graph(info.graph).get_state(_config(thread_id)))

    # turns ------------------------------------------------------------------

    def send(self, thread_id: str, text: str) -> Iterator[TurnEvent]:
        """Take the user's message; returns the turn's event stream (run as it is read).

        Raises (before any event): ThreadNotFound, ThreadBusy, EscalationPending.
        """
        info = self.thread(thread_id)
        self._check_idle(thread_id)
        pending = self.escalation(thread_id)
        if pending is not None:
            raise EscalationPending(
                f"thread {thread_id!r} is waiting for a person to answer escalation {pending.id!r}; "
                "answer it before sending another message"
            )
        return self._turn(info, {"messages": [HumanMessage(content=text)]})

    def answer(self, thread_id: str, answer: AnswerEscalation) -> Iterator[TurnEvent]:
        """Resume the thread with a person's answer (``Command(resume=...)``); returns the event stream.

        Raises (before any event): ThreadNotFound, ThreadBusy, NoPendingEscalation,
        EscalationNotFound (``escalation_id`` is not the pending one), InvalidAnswer.
        """
        info = self.thread(thread_id)
        self._check_idle(thread_id)
        pending = self.escalation(thread_id)
        if pending is None:
            raise NoPendingEscalation(f"thread {thread_id!r} has no pending human escalation to answer")
        if answer.escalation_id is not None and answer.escalation_id != pending.id:
            raise EscalationNotFound(
                f"escalation {answer.escalation_id!r} is not pending on thread {thread_id!r}; "
                f"the pending one is {pending.id!r}"
            )
        agents = [a for a in agent_names(self.graph(info.graph)) if a != pending.node]
        if answer.hand_back_to is not None and answer.hand_back_to not in agents:
            raise InvalidAnswer(f"cannot hand back to {answer.hand_back_to!r}; agents: {', '.join(agents)}")
        resume = HumanAnswer(reply=answer.reply, hand_back_to=answer.hand_back_to,
                             case_file_updates=answer.case_file_updates).model_dump()
        return self._turn(info, Command(resume={pending.id: resume}))

    @staticmethod
    def result(events: Iterable[TurnEvent]) -> TurnResponse:
        """Run a turn's stream to its end and return the result; a failed turn raises TurnFailed."""
        for event in events:
            if isinstance(event, DoneEvent):
                return event.result
            if isinstance(event, ErrorEvent):
                raise TurnFailed(event.message)
        raise TurnFailed("the turn ended without a result")

    def _check_idle(self, thread_id: str) -> None:
        if self._lock(thread_id).locked():
            raise ThreadBusy(f"thread {thread_id!r} is already running a turn; wait for it to finish")

    def _lock(self, thread_id: str) -> threading.Lock:
        with self._compile_lock:
            return self._turn_locks.setdefault(thread_id, threading.Lock())

    def _turn(self, info: ThreadInfo, graph_input: Any) -> Iterator[TurnEvent]:
        lock = self._lock(info.thread_id)
        if not lock.acquire(blocking=False):
            yield ErrorEvent(code=ThreadBusy.code, message=f"thread {info.thread_id!r} is already running a turn")
            return
        try:
            graph = self.graph(info.graph)
            events: list[HandoffEvent] = []
            said: list[ChatMessage] = []
            try:
                for mode, chunk in graph.stream(graph_input, _config(info.thread_id),
                                                stream_mode=["custom", "updates"]):
                    if mode == "custom":
                        if isinstance(chunk, dict) and chunk.get("type") == "handoff":
                            event = HandoffEvent.model_validate(chunk)
                            events.append(event)
                            yield event
                        continue
                    for node, update in (chunk or {}).items():
                        if node.startswith("__"):
                            continue
                        yield StepEvent(node=node)
                        for message in chat_messages((update or {}).get("messages") or []):
                            said.append(message)
                            yield MessageEvent(message=message)
            except Exception as exc:  # the stream has begun: report, do not raise
                yield ErrorEvent(code=TurnFailed.code, message=f"{type(exc).__name__}: {exc}")
                return
            result = self._response(graph, info.thread_id, events, said)
            if result.escalation is not None:
                yield EscalationEvent(escalation=result.escalation)
            yield DoneEvent(result=result)
        finally:
            lock.release()

    def _response(
        self, graph: CompiledStateGraph, thread_id: str, events: list[HandoffEvent], said: list[ChatMessage]
    ) -> TurnResponse:
        snapshot = graph.get_state(_config(thread_id))
        values = snapshot.values or {}
        reply = next((m.text for m in reversed(said) if m.role == "agent"), "")
        return TurnResponse(
            thread_id=thread_id,
            reply=reply,
            active_agent=values.get("active_agent"),
            messages=said,
            events=events,
            handoffs=self._records(graph, thread_id),
            case_file=values.get("case_file") or {},
            escalation=pending_escalation(snapshot),
        )

    @staticmethod
    def _records(graph: CompiledStateGraph, thread_id: str) -> list[HandoffRecord]:
        return HandoffSession(graph, thread_id).records()


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def agent_names(graph: CompiledStateGraph) -> list[str]:
    """The graph's agent nodes (the human included), in declaration order."""
    return [n for n in graph.nodes if n not in NOT_AGENTS]


def chat_messages(messages: Iterable[BaseMessage]) -> list[ChatMessage]:
    """Messages as the user sees them; AI messages with no text (bare tool calls) are left out."""
    out: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            out.append(ChatMessage(role="user", text=message.text))
        elif isinstance(message, AIMessage) and message.text.strip():
            out.append(ChatMessage(role="agent", agent=message.name, text=message.text))
        elif isinstance(message, ToolMessage):
            out.append(ChatMessage(role="tool", agent=message.name, text=message.text))
    return out


def pending_escalation(snapshot: StateSnapshot) -> Escalation | None:
    """The first pending interrupt of the snapshot's tasks, as an Escalation; None when none waits."""
    for task in snapshot.tasks:
        for pending in task.interrupts:
            value = pending.value
            fields = value if isinstance(value, dict) else {"question": str(value)}
            return Escalation(
                id=pending.id,
                node=task.name,
                source=str(fields.get("source") or ""),
                reason=str(fields.get("reason") or ""),
                briefing=str(fields.get("briefing") or ""),
                question=str(fields.get("question") or ""),
                value=value,
            )
    return None
