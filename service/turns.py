"""Running one turn of a thread: the graph streamed as typed events, under the thread's lock.

A **turn stream** holds the thread's turn lock from the moment the request is
accepted until the turn's last event is produced. The lock is released
*before* the final ``done`` (or ``error``) event is handed out, so a client
that sends its next message as soon as it reads ``done`` never finds its own
thread busy.

Every run streams with ``durability="sync"`` (each step is checkpointed before
the next begins) and with ``HandoffSession``'s run config (LangSmith metadata,
tags and masking, graphs/telemetry.py), and checks between steps that it
still holds the thread's lock; a lost lock stops it at its last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graphs.journal import Journal
from graphs.session import HandoffSession
from service.errors import as_service_error
from service.locks import TurnLock
from service.models import (
    ChatMessage,
    DoneEvent,
    ErrorEvent,
    EscalationEvent,
    MessageEvent,
    StepEvent,
    TurnEvent,
    TurnResponse,
)
from service.transcript import SentBefore, chat_messages, find_sent, pending_escalation
from state import HandoffEvent

log = logging.getLogger("service")


class TurnStream(Iterator[TurnEvent]):
    """The events of one turn, run as they are read; holds the thread's lock until the turn ends.

    Read it to the end (or ``close()`` it): a stream dropped unread releases
    the lock when it is garbage-collected, but closing says so explicitly.
    """

    def __init__(self, events: Iterator[TurnEvent], lock: TurnLock) -> None:
        self._events = events
        self._lock = lock

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> TurnEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop the turn (if it is still running) and release the thread's lock."""
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._lock.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # e.g. at interpreter shutdown
            self.close()


def config(thread_id: str) -> dict[str, Any]:
    """The config that reads a thread's state (no run, nothing traced)."""
    return {"configurable": {"thread_id": thread_id}}


def stream_run(
    graph: CompiledStateGraph, graph_name: str, thread_id: str, graph_input: Any, lock: TurnLock
) -> Iterator[tuple[str, Any]]:
    """The graph's ``(mode, chunk)`` stream for one run, checking the lock after every step."""
    run_config = HandoffSession(graph, thread_id, graph_name=graph_name).config
    for mode, chunk in graph.stream(graph_input, run_config, stream_mode=["custom", "updates"],
                                    durability="sync"):
        yield mode, chunk
        if mode == "updates":
            lock.check()


def complete_run(graph: CompiledStateGraph, graph_name: str, thread_id: str, lock: TurnLock) -> None:
    """Finish the run a dead worker (or a lost database) left unfinished, before anything else runs.

    Raises:
        ServiceError: PersistenceUnavailable, TurnInterrupted or TurnFailed.
    """
    log.warning("completing an interrupted run thread=%s", thread_id)
    try:
        for _ in stream_run(graph, graph_name, thread_id, None, lock):
            pass
    except Exception as exc:
        raise as_service_error(exc) from None


def run_turn(
    graph: CompiledStateGraph, graph_name: str, thread_id: str, graph_input: Any, lock: TurnLock,
    message_id: str | None, *, duplicate: bool = False,
) -> Iterator[TurnEvent]:
    """The events of one run: handoff events, steps, messages, then escalation and done (or error).

    Args:
        graph: The thread's compiled graph.
        graph_name: Its registry name (for traces).
        thread_id: The thread.
        graph_input: New input, a ``Command(resume=...)``, or None to go on with an unfinished run.
        lock: The thread's lock, held; released before the last event.
        message_id: The user message this turn answers (None for an escalation answer).
        duplicate: The message had been accepted before (this completes its interrupted turn).
    """
    started = time.monotonic()
    events: list[HandoffEvent] = []
    said: list[ChatMessage] = []
    log.info("turn started thread=%s graph=%s resumed=%s", thread_id, graph_name, graph_input is None)
    try:
        try:
            for mode, chunk in stream_run(graph, graph_name, thread_id, graph_input, lock):
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
            if duplicate and message_id is not None:
                said = _said_after(graph, thread_id, message_id) or said
            result = turn_response(graph, thread_id, events, said, message_id, duplicate)
        except Exception as exc:  # the stream has begun: report, do not raise
            error = as_service_error(exc)
            lock.release()
            log.warning("turn failed thread=%s code=%s error=%s", thread_id, error.code, type(exc).__name__)
            yield ErrorEvent(code=error.code, message=error.message)
            return
        lock.release()
        log.info("turn done thread=%s agent=%s ms=%d", thread_id, result.active_agent,
                 (time.monotonic() - started) * 1000)
        if result.escalation is not None:
            yield EscalationEvent(escalation=result.escalation)
        yield DoneEvent(result=result)
    finally:
        lock.release()


def replay_turn(graph: CompiledStateGraph, thread_id: str, sent: SentBefore, lock: TurnLock) -> Iterator[TurnEvent]:
    """The outcome of a turn that already ran, as its events would have told it; nothing runs."""
    try:
        said = chat_messages(sent.after)
        result = turn_response(graph, thread_id, [], said, sent.message.id, True)
    except Exception as exc:
        error = as_service_error(exc)
        lock.release()
        yield ErrorEvent(code=error.code, message=error.message)
        return
    finally:
        lock.release()
    for message in said:
        yield MessageEvent(message=message)
    if result.escalation is not None:
        yield EscalationEvent(escalation=result.escalation)
    yield DoneEvent(result=result)


def _said_after(graph: CompiledStateGraph, thread_id: str, message_id: str) -> list[ChatMessage]:
    values = graph.get_state(config(thread_id)).values or {}
    sent = find_sent(Journal(graph.store, thread_id), values, message_id)
    return chat_messages(sent.after) if sent is not None else []


def turn_response(
    graph: CompiledStateGraph, thread_id: str, events: list[HandoffEvent], said: list[ChatMessage],
    message_id: str | None, duplicate: bool,
) -> TurnResponse:
    """The turn's result as the thread now stands."""
    snapshot = graph.get_state(config(thread_id))
    values = snapshot.values or {}
    reply = next((m.text for m in reversed(said) if m.role == "agent"), "")
    return TurnResponse(
        thread_id=thread_id,
        message_id=message_id,
        duplicate=duplicate,
        reply=reply,
        active_agent=values.get("active_agent"),
        messages=said,
        events=events,
        handoffs=HandoffSession(graph, thread_id).records(values),
        case_file=values.get("case_file") or {},
        escalation=pending_escalation(snapshot),
    )
