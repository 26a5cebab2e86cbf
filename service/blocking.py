"""``HandoffService`` for synchronous code: scripts, sync web frameworks, tests.

The service is async (service/embedding.py). ``BlockingHandoffService`` runs
one on an event loop in a thread of its own (anyio's ``BlockingPortal``) and
gives each of its methods a blocking twin; a turn is a ``BlockingTurnStream``,
an iterator of the same ``TurnEvent``s that runs the turn as it is read. Many threads of the calling program may use one instance
at once: their turns run side by side on the portal's loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from langgraph.graph.state import CompiledStateGraph

from handoff.graphs.persistence import Persistence
from handoff.service.embedding import TRANSCRIPT_LIMIT, HandoffService, settle
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
from handoff.service.turns import TurnStream
from handoff.state import HandoffRecord


class BlockingHandoffService:
    """The async ``HandoffService`` behind blocking calls."""

    def __init__(self, portal: BlockingPortal, service: HandoffService) -> None:
        self.portal = portal
        self.service = service

    @classmethod
    @contextmanager
    def open(cls, url: str = "memory", **kwargs: Any) -> Iterator[BlockingHandoffService]:
        """A service over ``url`` on an event loop of its own, closed on exit; kwargs go to
        ``HandoffService``."""
        with start_blocking_portal() as portal, \
                portal.wrap_async_context_manager(HandoffService.open(url, **kwargs)) as service:
            yield cls(portal, service)

    @property
    def persistence(self) -> Persistence:
        """The async checkpointer and store (their sync methods work from any thread but the portal's)."""
        return self.service.persistence

    def graph(self, name: str) -> CompiledStateGraph:
        """Graph ``name`` compiled against this service's persistence (on the service's loop, where
        graphs are compiled and cached)."""
        return self.portal.call(self.service.graph, name)

    def graphs(self) -> list[GraphInfo]:
        """The graphs this service runs."""
        return self.portal.call(self.service.graphs)

    def start_thread(self, graph: str = DEFAULT_GRAPH, *, owner: str | None = None) -> ThreadInfo:
        """See ``HandoffService.start_thread``."""
        return self.portal.call(lambda: self.service.start_thread(graph, owner=owner))

    def thread(self, thread_id: str, *, owner: str | None = None) -> ThreadInfo:
        """See ``HandoffService.thread``."""
        return self.portal.call(lambda: self.service.thread(thread_id, owner=owner))

    def state(self, thread_id: str, limit: int = TRANSCRIPT_LIMIT, *, owner: str | None = None) -> ThreadState:
        """See ``HandoffService.state``."""
        return self.portal.call(lambda: self.service.state(thread_id, limit, owner=owner))

    def handoffs(self, thread_id: str, *, owner: str | None = None) -> list[HandoffRecord]:
        """See ``HandoffService.handoffs``."""
        return self.portal.call(lambda: self.service.handoffs(thread_id, owner=owner))

    def escalation(self, thread_id: str, *, owner: str | None = None) -> Escalation | None:
        """See ``HandoffService.escalation``."""
        return self.portal.call(lambda: self.service.escalation(thread_id, owner=owner))

    def send(
        self, thread_id: str, text: str, *, message_id: str | None = None, owner: str | None = None
    ) -> BlockingTurnStream:
        """Take the message (see ``HandoffService.send``); refusals raise here, before any event.
        The turn runs as its events are read: read them to the end (or pass the stream to
        ``result``), or ``close()`` it to stop the turn and release the thread."""
        stream = self.portal.call(
            lambda: self.service.send(thread_id, text, message_id=message_id, owner=owner))
        return self._events(stream)

    def answer(self, thread_id: str, answer: AnswerEscalation, *, owner: str | None = None) -> BlockingTurnStream:
        """See ``HandoffService.answer``."""
        stream = self.portal.call(lambda: self.service.answer(thread_id, answer, owner=owner))
        return self._events(stream)

    def result(self, events: Iterable[TurnEvent]) -> TurnResponse:
        """Run a turn's events to their end and return the result (see ``HandoffService.result``)."""
        outcome: DoneEvent | ErrorEvent | None = None
        try:
            for event in events:
                if isinstance(event, DoneEvent | ErrorEvent):
                    outcome = event
        finally:
            if isinstance(events, BlockingTurnStream):
                events.close()
        return settle(outcome)

    def _events(self, stream: TurnStream) -> BlockingTurnStream:
        return BlockingTurnStream(self.portal, stream)


class BlockingTurnStream(Iterator[TurnEvent]):
    """A turn's events, each read as it is produced; holds the thread until read to the end or closed.

    The thread's lock is taken when the turn is accepted, so read the events to the end, or
    ``close()`` the stream (``with`` does) to stop the turn at its last checkpoint and free the
    thread; a stream dropped unread frees it when it is garbage-collected.
    """

    def __init__(self, portal: BlockingPortal, stream: TurnStream) -> None:
        self._portal = portal
        self._stream = stream
        self._closed = False

    def __iter__(self) -> BlockingTurnStream:
        return self

    def __next__(self) -> TurnEvent:
        if self._closed:
            raise StopIteration
        try:
            return self._portal.call(self._stream.__anext__)
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        """Stop the turn if it still runs, and release the thread's lock."""
        if not self._closed:
            self._closed = True
            self._portal.call(self._stream.aclose)

    def __enter__(self) -> BlockingTurnStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # the portal may already be gone
            self.close()
