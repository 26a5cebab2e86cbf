"""Running one turn of a thread: the graph streamed as typed events, under the thread's lock.

A **turn stream** holds the thread's turn lock from the moment the request is
accepted until the turn's last event is produced. The lock is released
*before* the final ``done`` (or ``error``) event is handed out, so a client
that sends its next message as soon as it reads ``done`` never finds its own
thread busy.

Every run is ``graph.astream`` on the event loop: the agents' model calls are
awaited, so many threads' turns run at once on one loop and a slow model call
holds up nobody else. It streams with ``durability="sync"`` (each step is
checkpointed before the next begins) and with ``HandoffSession``'s run config
(LangSmith metadata, tags and masking, graphs/telemetry.py), and checks
between steps that it still holds the thread's lock; a lost lock stops it at
its last checkpoint.

A turn's replies stream as ``token`` events while the agents write them
(graphs/streaming.py), and each whole message follows as a ``message`` event
with the same ``message_id`` once its node's step ends; a reply that broke off
gets an ``interrupted`` token event, and only whole messages are stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from handoff.graphs.journal import Journal
from handoff.graphs.session import HandoffSession
from handoff.graphs.streaming import Item, TokenTranslator, aitems, speaking_agents
from handoff.service import primed
from handoff.service.errors import as_service_error
from handoff.service.locks import TurnLock
from handoff.service.models import (
    ChatMessage,
    DoneEvent,
    ErrorEvent,
    EscalationEvent,
    MessageEvent,
    StepEvent,
    TurnEvent,
    TurnResponse,
)
from handoff.service.transcript import SentBefore, Settled, chat_messages, find_sent, pending_escalation
from handoff.state import HandoffEvent

log = logging.getLogger("handoff.service")

INTERRUPT = "__interrupt__"
"""The key of the ``updates`` item a run stopped at an interrupt sends (LangGraph's, private there)."""

STREAM_TOKENS: ContextVar[bool] = ContextVar("handoff_stream_tokens", default=True)
"""Whether a turn that starts in this context streams its replies' tokens. The HTTP app turns it off
in the task of a turn whose client asked for JSON (``stream: false``): nobody reads those tokens, and
asking the model to stream them costs CPU on every turn (service/app.py, ``run_in_background``)."""


class TurnStream(AsyncIterator[TurnEvent]):
    """The events of one turn, run as they are read; holds the thread's lock until the turn ends.

    Read it to the end, or ``aclose()`` it (``async with`` does): that stops a turn
    still running at its last checkpoint and releases the thread's lock.
    """

    def __init__(self, events: AsyncGenerator[TurnEvent, None], lock: TurnLock) -> None:
        self._events = events
        self._lock = lock

    def __aiter__(self) -> TurnStream:
        return self

    async def __anext__(self) -> TurnEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the turn (if it is still running) and release the thread's lock."""
        try:
            await self._events.aclose()
        finally:
            await self._lock.release()

    async def __aenter__(self) -> TurnStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def config(thread_id: str) -> dict[str, Any]:
    """The config that reads a thread's state (no run, nothing traced)."""
    return {"configurable": {"thread_id": thread_id}}


async def stream_run(
    graph: CompiledStateGraph, graph_name: str, thread_id: str, graph_input: Any, lock: TurnLock,
    *, tokens: bool = False, start: Settled | None = None,
) -> AsyncIterator[Item]:
    """The graph's ``(namespace, mode, chunk)`` stream for one run (``HandoffSession``'s stream options,
    whose ``values`` make the last chunk the turn's outcome), checking the
    lock after every step; with the models' tokens (``messages``, subgraphs' too) when ``tokens``.
    ``start``: the thread's latest checkpoint as the turn read it under the lock, which the run
    starts from instead of reading it again (service/primed.py)."""
    run_config = HandoffSession(graph, thread_id, graph_name=graph_name).config
    if start is not None:
        primed.prime(thread_id, start.saved)
    try:
        stream = graph.astream(graph_input, run_config,
                               **(HandoffSession.TOKEN_STREAM if tokens else HandoffSession.STREAM))
        async for namespace, mode, chunk in aitems(stream, subgraphs=tokens):
            yield namespace, mode, chunk
            if mode == "updates" and not namespace:
                await lock.check()
    finally:
        primed.unprime()


async def complete_run(graph: CompiledStateGraph, graph_name: str, thread_id: str, lock: TurnLock) -> None:
    """Finish the run a dead worker (or a lost database) left unfinished, before anything else runs.

    Raises:
        ServiceError: PersistenceUnavailable, TurnInterrupted or TurnFailed.
    """
    log.warning("completing an interrupted run thread=%s", thread_id)
    try:
        async for _ in stream_run(graph, graph_name, thread_id, None, lock):
            pass
    except Exception as exc:
        raise as_service_error(exc) from None


async def run_turn(
    graph: CompiledStateGraph, graph_name: str, thread_id: str, graph_input: Any, lock: TurnLock,
    message_id: str | None, *, duplicate: bool = False, start: Settled | None = None,
) -> AsyncGenerator[TurnEvent, None]:
    """The events of one run: handoff events, tokens, steps, messages, then escalation and done (or error).

    Args:
        graph: The thread's compiled graph.
        graph_name: Its registry name (for traces).
        thread_id: The thread.
        graph_input: New input, a ``Command(resume=...)``, or None to go on with an unfinished run.
        lock: The thread's lock, held; released before the last event.
        message_id: The user message this turn answers (None for an escalation answer).
        duplicate: The message had been accepted before (this completes its interrupted turn).
        start: The thread's latest checkpoint as the turn read it, for the run to start from.
    """
    started = time.monotonic()
    events: list[HandoffEvent] = []
    said: list[ChatMessage] = []
    outcome: Outcome = Outcome()
    tokens = TokenTranslator(speaking_agents(graph))
    log.info("turn started thread=%s graph=%s resumed=%s", thread_id, graph_name, graph_input is None)
    try:
        try:
            async for namespace, mode, chunk in stream_run(graph, graph_name, thread_id, graph_input, lock,
                                                           tokens=STREAM_TOKENS.get(), start=start):
                for token in tokens.feed(mode, chunk, namespace):
                    yield token
                if namespace:
                    continue  # a bring-your-own agent's own steps: only its tokens are the turn's
                if mode == "custom":
                    if isinstance(chunk, dict) and chunk.get("type") == "handoff":
                        event = HandoffEvent.model_validate(chunk)
                        events.append(event)
                        yield event
                    continue
                if mode == "values":
                    outcome.values = chunk if isinstance(chunk, dict) else None
                    continue
                if mode != "updates":
                    continue
                for node, update in (chunk or {}).items():
                    if node.startswith("__"):
                        outcome.paused |= node == INTERRUPT
                        continue
                    yield StepEvent(node=node)
                    for raw in (update or {}).get("messages") or []:
                        for message in chat_messages([raw]):  # none for a bare tool call
                            said.append(message)
                            yield MessageEvent(message=message, message_id=raw.id)
            for token in tokens.close():
                yield token
            if duplicate and message_id is not None:
                said = await _said_after(graph, thread_id, message_id) or said
            result = await turn_response(graph, thread_id, events, said, message_id, duplicate,
                                         outcome=outcome)
        except Exception as exc:  # the stream has begun: report, do not raise
            for token in tokens.close():
                yield token
            error = as_service_error(exc)
            await lock.release()
            log.warning("turn failed thread=%s code=%s error=%s", thread_id, error.code, type(exc).__name__)
            yield ErrorEvent(code=error.code, message=error.message)
            return
        await lock.release()
        log.info("turn done thread=%s agent=%s ms=%d", thread_id, result.active_agent,
                 (time.monotonic() - started) * 1000)
        if result.escalation is not None:
            yield EscalationEvent(escalation=result.escalation)
        yield DoneEvent(result=result)
    finally:
        await lock.release()


async def replay_turn(
    graph: CompiledStateGraph, thread_id: str, sent: SentBefore, lock: TurnLock
) -> AsyncGenerator[TurnEvent, None]:
    """The outcome of a turn that already ran, as its events would have told it; nothing runs."""
    try:
        said = chat_messages(sent.after)
        result = await turn_response(graph, thread_id, [], said, sent.message.id, True)
    except Exception as exc:
        error = as_service_error(exc)
        await lock.release()
        yield ErrorEvent(code=error.code, message=error.message)
        return
    finally:
        await lock.release()
    for message in said:
        yield MessageEvent(message=message)
    if result.escalation is not None:
        yield EscalationEvent(escalation=result.escalation)
    yield DoneEvent(result=result)


async def _said_after(graph: CompiledStateGraph, thread_id: str, message_id: str) -> list[ChatMessage]:
    values = (await graph.aget_state(config(thread_id))).values or {}
    sent = await find_sent(Journal(graph.store, thread_id), values, message_id)
    return chat_messages(sent.after) if sent is not None else []


@dataclass
class Outcome:
    """Where a run left the thread, as its stream told it."""

    values: dict[str, Any] | None = None
    """The state after the run's last step (the graph's output keys); None when no step ran."""
    paused: bool = False
    """The run stopped at an interrupt: a person is awaited."""

    def settled(self, graph: CompiledStateGraph) -> dict[str, Any] | None:
        """The values the result can be built from without reading the checkpoint, or None: after an
        interrupt (the escalation is read from the checkpoint's tasks), or when the graph's output
        leaves out a key the result reads."""
        if self.values is None or self.paused or not set(graph.output_channels) >= RESULT_KEYS:
            return None
        return self.values


RESULT_KEYS = frozenset({"active_agent", "case_file", "handoffs", "handoff_count"})
"""The state keys a turn's result reads."""


async def turn_response(
    graph: CompiledStateGraph, thread_id: str, events: list[HandoffEvent], said: list[ChatMessage],
    message_id: str | None, duplicate: bool, *, outcome: Outcome | None = None,
) -> TurnResponse:
    """The turn's result as the thread now stands: from the run's ``outcome`` when it settles it,
    otherwise read from the checkpoint."""
    values = outcome.settled(graph) if outcome is not None else None
    escalation = None
    if values is None:
        snapshot = await graph.aget_state(config(thread_id))
        values = snapshot.values or {}
        escalation = pending_escalation(snapshot)
    reply = next((m.text for m in reversed(said) if m.role == "agent"), "")
    return TurnResponse(
        thread_id=thread_id,
        message_id=message_id,
        duplicate=duplicate,
        reply=reply,
        active_agent=values.get("active_agent"),
        messages=said,
        events=events,
        handoffs=await HandoffSession(graph, thread_id).arecords(values),
        case_file=values.get("case_file") or {},
        escalation=escalation,
    )

