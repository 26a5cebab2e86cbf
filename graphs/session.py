"""Embedding API: hold a conversation with a compiled handoff graph."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from handoff.graphs import streaming
from handoff.graphs.boundary import MAX_MESSAGE_CHARS, check_thread_id
from handoff.graphs.journal import Journal
from handoff.graphs.streaming import TokenEvent, TokenTranslator, aitems, items, speaking_agents
from handoff.graphs.telemetry import TraceOptions, tracing_config
from handoff.state import HandoffEvent, HandoffRecord, records_of

OnEvent = Callable[[HandoffEvent], None]
OnToken = Callable[[TokenEvent], None]


class UserMessage(BaseModel):
    """A user's message as it enters the graph."""

    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message is empty")
        return value.strip()


class TurnResult(BaseModel):
    """What one user turn produced (the shape of ``handoff run --json``)."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    reply: str = Field(description="What the user sees from this turn; empty while a person is awaited.")
    speaker: str = Field(default="", description="Who wrote the reply: an agent, or 'human'.")
    active_agent: str
    handoffs: list[HandoffRecord]
    case_file: dict[str, Any]
    events: list[HandoffEvent] = Field(default_factory=list, exclude=True)
    path: list[str] = Field(default_factory=list, description="Nodes this turn ran, in order.")
    streamed: bool = Field(default=False, exclude=True,
                           description="The reply was already shown whole, as token events (``on_token``).")


class HandoffSession:
    """One thread of one compiled graph.

    The session names the thread and the trace options; the metadata, tags,
    tracer and masking of every run are added by the compiled graph itself, for
    this entry point as for every other (graphs/telemetry.py).
    """

    def __init__(
        self,
        graph: CompiledStateGraph,
        thread_id: str | None = None,
        *,
        graph_name: str | None = None,
        trace: TraceOptions | None = None,
    ) -> None:
        """Args:
        graph: A compiled handoff graph with a checkpointer.
        thread_id: The conversation to continue; a new one otherwise.
        graph_name: Name for traces and checkpoint metadata; the builder's ``name`` otherwise.
        trace: LangSmith options, sent with each run as ``configurable['handoff_trace']``; the
            environment's (``TraceOptions.from_env()``) when each run starts otherwise.
        """
        self.graph = graph
        self.thread_id = check_thread_id(thread_id) if thread_id is not None else uuid.uuid4().hex
        self.graph_name = graph_name or graph_name_of(graph)
        self.trace = trace
        self._records: list[HandoffRecord] = []

    @property
    def config(self) -> dict[str, Any]:
        """The run config as plain JSON data: thread id, trace options (``configurable['handoff_trace']``),
        LangSmith metadata, tags and run name. The compiled graph adds its tracer and masking when a run
        starts (graphs/telemetry.run_config), as it does for every other entry point."""
        return tracing_config(graph_name=self.graph_name, thread_id=self.thread_id, options=self.trace)

    @property
    def state_config(self) -> dict[str, Any]:
        """Just the thread id: for reading state, where no run is traced."""
        return {"configurable": {"thread_id": self.thread_id}}

    def send(self, text: str, on_event: OnEvent | None = None, *, on_token: OnToken | None = None) -> TurnResult:
        """Run one user turn; ``on_event`` sees each handoff event as it happens, ``on_token`` each
        piece of the agents' replies as it is written (graphs/streaming.py), in one order."""
        return self._run(_user_input(text), on_event, on_token)

    async def asend(self, text: str, on_event: OnEvent | None = None, *,
                    on_token: OnToken | None = None) -> TurnResult:
        """``send`` for async applications: the graph runs with ``astream``, so model calls are
        awaited (the graph must be compiled with a checkpointer that has an async interface)."""
        return await self._arun(_user_input(text), on_event, on_token)

    def resume(self, on_event: OnEvent | None = None, *, on_token: OnToken | None = None) -> TurnResult:
        """Run what the thread's current checkpoint still has to do (e.g. after a fork)."""
        return self._run(None, on_event, on_token)

    async def aresume(self, on_event: OnEvent | None = None, *, on_token: OnToken | None = None) -> TurnResult:
        """``resume`` for async applications."""
        return await self._arun(None, on_event, on_token)

    STREAM: dict[str, Any] = {"stream_mode": ["custom", "updates", "values"], "durability": "sync"}
    """How every run of a conversation streams: handoff events, node updates and the state after each
    step (the turn's result is the last, so it is not read back from the checkpointer), and each
    step's checkpoint written before the next step starts, so a process killed mid-handoff resumes
    from the gate's checkpoint, not before it."""
    TOKEN_STREAM: dict[str, Any] = {**STREAM, **streaming.TOKEN_STREAM,
                                    "stream_mode": [*streaming.TOKEN_STREAM["stream_mode"], "values"]}
    """``STREAM`` plus the models' tokens (graphs/streaming.py), for a run whose replies are shown as they
    are written. Only such runs ask the model to stream: a caller that shows whole replies keeps working
    with an OpenAI-compatible server that cannot stream."""

    def _run(self, graph_input: Any, on_event: OnEvent | None, on_token: OnToken | None) -> TurnResult:
        turn = _TurnLog(on_event, on_token, self.graph)
        stream = self.graph.stream(graph_input, self.config, **turn.stream)
        try:
            for namespace, mode, chunk in items(stream, subgraphs=turn.tokens is not None):
                turn.add(namespace, mode, chunk)
        finally:
            turn.close()
        if turn.values is None:
            return self.result(events=turn.events, path=turn.path, streamed=turn.streamed)
        return self._result(turn.values, self.records(turn.values), turn.events, turn.path, turn.streamed)

    async def _arun(self, graph_input: Any, on_event: OnEvent | None, on_token: OnToken | None) -> TurnResult:
        turn = _TurnLog(on_event, on_token, self.graph)
        stream = self.graph.astream(graph_input, self.config, **turn.stream)
        try:
            async for namespace, mode, chunk in aitems(stream, subgraphs=turn.tokens is not None):
                turn.add(namespace, mode, chunk)
        finally:
            turn.close()
        if turn.values is None:
            return await self.aresult(events=turn.events, path=turn.path, streamed=turn.streamed)
        return self._result(turn.values, await self.arecords(turn.values), turn.events, turn.path, turn.streamed)

    def result(self, events: list[HandoffEvent] | None = None, path: list[str] | None = None,
               streamed: Mapping[str, str] | None = None) -> TurnResult:
        """The thread as it stands: this turn's reply, who answers next, records, case file.
        ``streamed``: the messages shown whole as tokens this turn (id -> text)."""
        values = self.graph.get_state(self.state_config).values
        return self._result(values, self.records(values), events, path, streamed)

    async def aresult(self, events: list[HandoffEvent] | None = None, path: list[str] | None = None,
                      streamed: Mapping[str, str] | None = None) -> TurnResult:
        """``result`` for async applications."""
        values = (await self.graph.aget_state(self.state_config)).values
        return self._result(values, await self.arecords(values), events, path, streamed)

    def _result(
        self, values: dict[str, Any], records: list[HandoffRecord],
        events: list[HandoffEvent] | None, path: list[str] | None, streamed: Mapping[str, str] | None = None,
    ) -> TurnResult:
        messages = values.get("messages") or []
        last_user = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        answer = next((m for m in reversed(messages[last_user + 1:])
                       if isinstance(m, AIMessage) and m.content and not m.tool_calls), None)
        return TurnResult(
            thread_id=self.thread_id,
            reply=str(answer.content) if answer else "",
            speaker=(answer.name or "") if answer else "",
            active_agent=values.get("active_agent", ""),
            handoffs=records,
            case_file=values.get("case_file") or {},
            events=events or [],
            path=path or [],
            streamed=answer is not None and _was_streamed(answer, streamed or {}),
        )

    def records(self, values: dict[str, Any] | None = None) -> list[HandoffRecord]:
        """Every handoff record of this thread, oldest first.

        Records already read are kept, so a turn reads only the new ones from the
        journal; the cache is dropped when the thread's history was rewound.
        """
        if values is None:
            values = self.graph.get_state(self.state_config).values
        journal, count, cached = self._cached(values)
        if journal is None:
            return records_of(values)
        self._records = cached + journal.records(count, last=count - len(cached))
        return list(self._records)

    async def arecords(self, values: dict[str, Any] | None = None) -> list[HandoffRecord]:
        """``records`` for async applications."""
        if values is None:
            values = (await self.graph.aget_state(self.state_config)).values
        journal, count, cached = self._cached(values)
        if journal is None:
            return records_of(values)
        self._records = cached + await journal.arecords(count, last=count - len(cached))
        return list(self._records)

    def _cached(self, values: dict[str, Any]) -> tuple[Journal | None, int, list[HandoffRecord]]:
        """The journal (None without a store), the record count, and the cached records still valid."""
        journal = Journal(self.graph.store, self.thread_id)
        if journal.store is None:
            return None, 0, []
        window = records_of(values)
        count = values.get("handoff_count", 0)
        cached = self._records if len(self._records) <= count else []
        if cached and _record_at(window, count, len(cached) - 1) not in (None, cached[-1].request.id):
            cached = []  # the thread was rewound and took another branch
        if len(window) == count:
            cached = window  # the state's own window holds every record: nothing to read
        return journal, count, cached


class _TurnLog:
    """What a turn's stream told: its handoff events, its replies' tokens and the nodes it ran."""

    def __init__(self, on_event: OnEvent | None, on_token: OnToken | None, graph: CompiledStateGraph) -> None:
        self.on_event = on_event
        self.on_token = on_token
        self.tokens = TokenTranslator(speaking_agents(graph)) if on_token else None
        self.stream = HandoffSession.TOKEN_STREAM if on_token else HandoffSession.STREAM
        self.events: list[HandoffEvent] = []
        self.path: list[str] = []
        self.values: dict[str, Any] | None = None
        """The state after the run's last step, as its stream told it (its output keys)."""

    @property
    def streamed(self) -> dict[str, str]:
        return self.tokens.completed if self.tokens else {}

    def add(self, namespace: tuple[str, ...], mode: str, chunk: Any) -> None:
        if self.tokens and self.on_token:
            for token in self.tokens.feed(mode, chunk, namespace):
                self.on_token(token)
        if namespace:
            return  # a subgraph's own steps and events (a bring-your-own agent's): only its tokens count
        if mode == "custom" and isinstance(chunk, dict) and chunk.get("type") == "handoff":
            event = HandoffEvent.model_validate(chunk)
            self.events.append(event)
            if self.on_event:
                self.on_event(event)
        elif mode == "updates" and isinstance(chunk, dict):
            self.path.extend(k for k in chunk if not k.startswith("__"))
        elif mode == "values" and isinstance(chunk, dict):
            self.values = chunk

    def close(self) -> None:
        """The run ended, or failed: a reply still being written broke off."""
        if self.tokens and self.on_token:
            for token in self.tokens.close():
                self.on_token(token)


def _was_streamed(answer: AIMessage, streamed: Mapping[str, str]) -> bool:
    """Whether ``answer`` was shown whole as tokens: by its id, or (an agent that stores its messages
    under new ids) by its text."""
    return (answer.id is not None and answer.id in streamed) or str(answer.content) in streamed.values()


def _user_input(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=UserMessage(text=text).text)]}


def _record_at(window: list[HandoffRecord], count: int, position: int) -> str | None:
    """The id of the record at ``position`` if the state's window holds it."""
    offset = position - (count - len(window))
    return window[offset].request.id if 0 <= offset < len(window) else None


def graph_name_of(graph: CompiledStateGraph) -> str:
    """The name the graph's builder was given (``build_handoff_graph(name=...)``)."""
    builder = getattr(graph, "builder", None)
    return str(getattr(builder, "name", None) or graph.name)
