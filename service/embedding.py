"""The embedding API: conversations with the handoff graphs, for any application.

``HandoffService`` owns one persistence (memory, SQLite or PostgreSQL, see
graphs/persistence.py and service/storage.py) and compiles each graph once
against it. Several services on one PostgreSQL database share their threads:
any of them may take a conversation's next turn or answer its pending
escalation.

The service is async: its graphs run with ``astream`` over an async
checkpointer and store (service/storage.py), so one event loop carries many
threads' turns at once and a slow model call blocks no other thread. Use it
from async code (``async with HandoffService.open(url) as service``), or from
sync code through ``handoff.service.blocking.BlockingHandoffService``.

Turns are streams of typed events (``handoff.service.models.TurnEvent``): handoff
events as the gate emits them, each node's step, what agents say, a pending
escalation, then ``done`` with the whole result. ``send`` and ``answer`` take
the thread's turn lock and check the request before they return the stream,
so refusals (busy, unknown thread, ...) surface before any event.

A thread runs one turn at a time (service/locks.py: an advisory lock on
PostgreSQL, shared by every worker). Each turn streams with
``durability="sync"`` and the run config of ``HandoffSession`` (tracing
metadata, tags and masking), so a worker killed mid-turn leaves the thread at
the last finished step; the next request on the thread completes that run
before anything else. A message sent with a ``message_id`` the thread already
holds is never added twice (see ``send``).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import ValidationError

from handoff.graphs.boundary import InputRefused, admit, check_thread_id
from handoff.graphs.gate import GATE
from handoff.graphs.human import HumanAnswer
from handoff.graphs.intake import INTAKE
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import Persistence
from handoff.graphs.registry import GRAPHS, GraphEntry
from handoff.graphs.session import HandoffSession
from handoff.service.errors import (
    ERRORS_BY_CODE,
    EscalationNotFound,
    EscalationPending,
    InvalidAnswer,
    MessageIdReused,
    NoPendingEscalation,
    ThreadBusy,
    ThreadNotFound,
    TurnFailed,
    UnknownGraph,
    refused,
)
from handoff.service.locks import TurnLock, TurnLocks, turn_locks_for
from handoff.service.models import (
    DEFAULT_GRAPH,
    AnswerEscalation,
    DoneEvent,
    ErrorEvent,
    Escalation,
    GraphInfo,
    ThreadInfo,
    ThreadState,
    TurnEvent,
    TurnResponse,
)
from handoff.service.storage import open_service_persistence
from handoff.service.transcript import chat_messages, find_sent, pending_escalation, settled, unfinished
from handoff.service.turns import TurnStream, complete_run, replay_turn, run_turn
from handoff.service.turns import config as _config
from handoff.state import HandoffRecord

THREADS_NAMESPACE = ("handoff", "threads")
"""Store namespace of the service's thread registry: thread id -> graph name, creation time, owner."""
NOT_AGENTS = frozenset({"__start__", "__end__", INTAKE, GATE})
TRANSCRIPT_LIMIT = 200
SENT_INDEX = "sent_index"
"""A registration's mark that the thread's journal keeps every user message's position by id
(graphs/journal.py, ``SENT``) from its first message on, so a resent message is found, or known new,
with one keyed read. Threads registered before the journal did so lack it and are read as before."""
REGISTRATIONS_KEPT = 10_000
"""Thread registrations a service keeps in memory (most recently used): a registration never changes
once written, so every request on a thread after the first needs no store read to find it."""

log = logging.getLogger("handoff.service")
"""The service's own log: thread ids, graph and agent names, codes and timings; never message
texts, case files, tokens or exception messages (which may quote them)."""


class HandoffService:
    """Threads of the named graphs over one persistence."""

    def __init__(
        self,
        persistence: Persistence,
        *,
        model: BaseChatModel | None = None,
        graphs: Mapping[str, GraphEntry] | None = None,
        locks: TurnLocks | None = None,
    ) -> None:
        """Serve ``graphs`` over ``persistence``.

        Args:
            persistence: Checkpointer and store, from ``open_persistence``.
            model: The chat model for every graph; the environment's (or offline) by default.
            graphs: The graphs served, by name; the registry's by default.
            locks: Per-thread turn locks; advisory locks on PostgreSQL, in-process ones otherwise.
        """
        self.persistence = persistence
        self.model = model
        self.entries = dict(graphs if graphs is not None else GRAPHS)
        self.locks = locks if locks is not None else turn_locks_for(persistence.url)
        self._compiled: dict[str, CompiledStateGraph] = {}
        self._registrations: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str = "memory", **kwargs: Any) -> AsyncIterator[HandoffService]:
        """A service over ``url`` (pooled connections on PostgreSQL), closed on exit; kwargs go to
        the constructor."""
        async with open_service_persistence(url) as persistence:
            service = cls(persistence, **kwargs)
            try:
                yield service
            finally:
                await service.close()

    async def close(self) -> None:
        """Release the turn locks' connections (the persistence is closed by whoever opened it)."""
        await self.locks.close()

    # graphs -----------------------------------------------------------------

    def graph(self, name: str) -> CompiledStateGraph:
        """Graph ``name`` compiled with this service's checkpointer and store (once)."""
        entry = self.entries.get(name)
        if entry is None:
            raise UnknownGraph(f"unknown graph {name!r}; known graphs: {', '.join(sorted(self.entries))}")
        if name not in self._compiled:  # one event loop: no other coroutine runs in between
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

    async def start_thread(self, graph: str = DEFAULT_GRAPH, *, owner: str | None = None) -> ThreadInfo:
        """Register a new conversation on ``graph``; its id is a random UUID4 (unguessable).

        Args:
            graph: The graph's name.
            owner: Who may use the thread when access tokens are on (see ``thread``).
        """
        self.graph(graph)
        thread_id = checked_thread_id(uuid.uuid4().hex)  # the id every entry point will check again
        info = ThreadInfo(thread_id=thread_id, graph=graph, created_at=datetime.now(UTC))
        value = {**info.model_dump(mode="json", exclude={"thread_id"}), "owner": owner, SENT_INDEX: True}
        await self.persistence.store.aput(THREADS_NAMESPACE, info.thread_id, value, index=False)
        self._remember(info.thread_id, value)
        log.info("thread started thread=%s graph=%s owner=%s", info.thread_id, graph, owner or "-")
        return info

    async def thread(self, thread_id: str, *, owner: str | None = None) -> ThreadInfo:
        """The thread's registration.

        Args:
            thread_id: The thread.
            owner: When given, the thread must have been started by this owner; another
                owner's thread is reported exactly like a missing one, so ids do not leak.

        Raises:
            InvalidInput: ``thread_id`` is not a thread id (graphs/boundary.py), e.g. it holds a NUL.
            ThreadNotFound: never started here, or (with ``owner``) started by someone else.
        """
        value = await self._registration(thread_id, owner=owner)
        return ThreadInfo(thread_id=thread_id, graph=value["graph"], created_at=value["created_at"])

    async def _registration(self, thread_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """The thread's stored registration; raises as ``thread`` does."""
        checked_thread_id(thread_id)
        value = self._registrations.get(thread_id)
        if value is None:
            item = await self.persistence.store.aget(THREADS_NAMESPACE, thread_id)
            value = item.value if item is not None else None
            if value is not None:
                self._remember(thread_id, value)
        else:
            self._registrations.move_to_end(thread_id)
        if value is None or (owner is not None and value.get("owner") != owner):
            raise ThreadNotFound(f"no thread {thread_id!r}; start one with POST /threads")
        return value

    def _remember(self, thread_id: str, value: dict[str, Any]) -> None:
        self._registrations[thread_id] = value
        if len(self._registrations) > REGISTRATIONS_KEPT:
            self._registrations.popitem(last=False)

    async def state(self, thread_id: str, limit: int = TRANSCRIPT_LIMIT, *, owner: str | None = None) -> ThreadState:
        """The thread's transcript (last ``limit`` messages), agent, case file, handoffs, escalation."""
        info = await self.thread(thread_id, owner=owner)
        graph = self.graph(info.graph)
        snapshot = await graph.aget_state(_config(thread_id))
        values = snapshot.values or {}
        journal = Journal(graph.store, thread_id)
        stored = await journal.amessages(values.get("transcript_len", 0), last=limit)
        transcript = stored or list(values.get("messages") or [])[-limit:]
        return ThreadState(
            thread_id=thread_id,
            graph=info.graph,
            created_at=info.created_at,
            active_agent=values.get("active_agent"),
            turn=values.get("turn", 0),
            case_file=values.get("case_file") or {},
            messages=chat_messages(transcript),
            handoffs=await self._records(graph, thread_id, values),
            escalation=pending_escalation(snapshot),
        )

    async def handoffs(self, thread_id: str, *, owner: str | None = None) -> list[HandoffRecord]:
        """Every handoff record of the thread, oldest first."""
        info = await self.thread(thread_id, owner=owner)
        return await self._records(self.graph(info.graph), thread_id)

    async def escalation(self, thread_id: str, *, owner: str | None = None) -> Escalation | None:
        """The escalation the thread waits on, or None."""
        info = await self.thread(thread_id, owner=owner)
        return pending_escalation(await self.graph(info.graph).aget_state(_config(thread_id)))

    # turns ------------------------------------------------------------------

    async def send(
        self, thread_id: str, text: str, *, message_id: str | None = None, owner: str | None = None
    ) -> TurnStream:
        """Take the user's message; returns the turn's event stream (run as it is read).

        With a ``message_id`` the thread already holds (a retry), nothing is added:
        if the turn it started was interrupted it is completed, otherwise its outcome
        is returned; either way the result says ``duplicate=True``. Before a new
        message, a run that an earlier worker left unfinished is completed first.

        Raises (before any event): InvalidInput (the graph would refuse the text), ThreadNotFound,
        ThreadBusy, EscalationPending, MessageIdReused, PersistenceUnavailable, TurnInterrupted,
        TurnFailed.
        """
        registration = await self._registration(thread_id, owner=owner)
        graph_name = registration["graph"]
        graph = self.graph(graph_name)
        message = HumanMessage(content=text, id=message_id or uuid.uuid4().hex)
        graph_input = admitted({"messages": [message]})
        lock = await self._acquire(thread_id)
        try:
            # most threads ended their last run: their checkpoint row says so, and gives what the
            # resend check needs, without rebuilding the state; only the others are read whole
            ended = await settled(graph, thread_id)
            snapshot = None if ended is not None else await graph.aget_state(_config(thread_id))
            if message_id is not None:
                values = (snapshot.values or {}) if snapshot is not None else {"transcript_len": ended.transcript_len}
                sent = await find_sent(Journal(graph.store, thread_id), values, message_id,
                                       indexed=bool(registration.get(SENT_INDEX)))
                if sent is not None:
                    if str(sent.message.content) != text:
                        raise MessageIdReused(
                            f"message_id {message_id!r} was already used on thread {thread_id!r} "
                            "for a different message; use a new id for a new message")
                    log.info("duplicate message thread=%s message_id=%s", thread_id, message_id)
                    if sent.latest and snapshot is not None and unfinished(snapshot):
                        return TurnStream(run_turn(graph, graph_name, thread_id, None, lock, message_id,
                                                   duplicate=True), lock)
                    return TurnStream(replay_turn(graph, thread_id, sent, lock), lock)
            if snapshot is not None:
                if unfinished(snapshot):
                    await complete_run(graph, graph_name, thread_id, lock)
                    snapshot = await graph.aget_state(_config(thread_id))
                pending = pending_escalation(snapshot)
                if pending is not None:
                    raise EscalationPending(
                        f"thread {thread_id!r} is waiting for a person to answer escalation {pending.id!r}; "
                        "answer it before sending another message"
                    )
            return TurnStream(run_turn(graph, graph_name, thread_id, graph_input, lock, message.id, start=ended),
                              lock)
        except BaseException:
            await lock.release()
            raise

    async def answer(self, thread_id: str, answer: AnswerEscalation, *, owner: str | None = None) -> TurnStream:
        """Resume the thread with a person's answer (``Command(resume=...)``); returns the event stream.

        Raises (before any event): ThreadNotFound, ThreadBusy, NoPendingEscalation,
        EscalationNotFound (``escalation_id`` is not the pending one), InvalidAnswer.
        """
        info = await self.thread(thread_id, owner=owner)
        graph = self.graph(info.graph)
        lock = await self._acquire(thread_id)
        try:
            snapshot = await graph.aget_state(_config(thread_id))
            if unfinished(snapshot):
                await complete_run(graph, info.graph, thread_id, lock)
                snapshot = await graph.aget_state(_config(thread_id))
            pending = pending_escalation(snapshot)
            if pending is None:
                raise NoPendingEscalation(f"thread {thread_id!r} has no pending human escalation to answer")
            if answer.escalation_id is not None and answer.escalation_id != pending.id:
                raise EscalationNotFound(
                    f"escalation {answer.escalation_id!r} is not pending on thread {thread_id!r}; "
                    f"the pending one is {pending.id!r}"
                )
            agents = [a for a in agent_names(graph) if a != pending.node]
            if answer.hand_back_to is not None and answer.hand_back_to not in agents:
                raise InvalidAnswer(f"cannot hand back to {answer.hand_back_to!r}; agents: {', '.join(agents)}")
            try:
                resume = HumanAnswer(reply=answer.reply, hand_back_to=answer.hand_back_to,
                                     case_file_updates=answer.case_file_updates).model_dump()
            except ValidationError as exc:  # what AnswerEscalation let through and the graph would refuse
                raise InvalidAnswer(f"the answer is not one the graph takes: {_problems(exc)}") from None
            try:
                command = admit(Command(resume={pending.id: resume}))
            except InputRefused as exc:  # named as the request names it, not by the interrupt's id
                raise refused("body", InputRefused(str(exc).removeprefix(f"resume.{pending.id}."))) from None
            return TurnStream(run_turn(graph, info.graph, thread_id, command, lock, None), lock)
        except BaseException:
            await lock.release()
            raise

    @staticmethod
    async def result(events: AsyncIterable[TurnEvent]) -> TurnResponse:
        """Run a turn's stream to its end and return the result.

        Raises:
            TurnFailed, PersistenceUnavailable, TurnInterrupted: the stream ended with that error.
        """
        outcome: DoneEvent | ErrorEvent | None = None
        try:
            async for event in events:
                if isinstance(event, DoneEvent | ErrorEvent):
                    outcome = event
        finally:
            if isinstance(events, TurnStream):
                await events.aclose()
        return settle(outcome)

    async def _acquire(self, thread_id: str) -> TurnLock:
        lock = await self.locks.acquire(thread_id)
        if lock is None:
            log.info("thread busy thread=%s", thread_id)
            raise ThreadBusy(f"thread {thread_id!r} is running another turn; nothing was done with this "
                             "request: send it again when that turn has finished")
        return lock

    @staticmethod
    async def _records(
        graph: CompiledStateGraph, thread_id: str, values: dict[str, Any] | None = None
    ) -> list[HandoffRecord]:
        """The thread's records; pass the state values already read to skip a second read."""
        return await HandoffSession(graph, thread_id).arecords(values)


def settle(outcome: DoneEvent | ErrorEvent | None) -> TurnResponse:
    """A turn's result from its last event; its error raised as the matching ServiceError."""
    if isinstance(outcome, DoneEvent):
        return outcome.result
    if isinstance(outcome, ErrorEvent):
        raise ERRORS_BY_CODE.get(outcome.code, TurnFailed)(outcome.message)
    raise TurnFailed("the turn ended without a result")


def checked_thread_id(thread_id: str, *, location: str = "argument") -> str:
    """``thread_id`` if the graphs take it as a thread id (graphs/boundary.py's rule).

    Raises:
        InvalidInput: 422 naming ``thread_id``: empty, too long, or a character outside the rule.
    """
    try:
        return check_thread_id(thread_id)
    except InputRefused as exc:
        raise refused(location, exc, "thread_id") from None


def admitted(graph_input: Any, field: str | None = None) -> Any:
    """A turn's input as the graph's boundary admits it, checked before the thread is locked, so a
    refusal is a 422 (naming ``field``, or what the boundary names) and nothing runs; the graph
    checks it again on entry."""
    try:
        return admit(graph_input)
    except InputRefused as exc:
        raise refused("body", exc, field) from None


def _problems(exc: ValidationError) -> str:
    """A validation error's problems as ``field: what`` (never the values: they may be anything)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors(include_input=False))[:500]


def agent_names(graph: CompiledStateGraph) -> list[str]:
    """The graph's agent nodes (the human included), in declaration order."""
    return [n for n in graph.nodes if n not in NOT_AGENTS]
