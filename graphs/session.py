"""Embedding API: hold a conversation with a compiled handoff graph."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphs.journal import Journal
from graphs.telemetry import TraceOptions, tracing_config
from state import HandoffEvent, HandoffRecord

MAX_MESSAGE_CHARS = 20_000


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
    reply: str
    active_agent: str
    handoffs: list[HandoffRecord]
    case_file: dict[str, Any]
    events: list[HandoffEvent] = Field(default_factory=list, exclude=True)
    path: list[str] = Field(default_factory=list, description="Nodes this turn ran, in order.")


class HandoffSession:
    """One thread of one compiled graph.

    Every run it starts carries the graph name and thread id as LangSmith
    metadata and tags (and, when tracing is on, a tracer that adds the active
    agent and handoff id per node and masks sensitive text for the graphs in
    ``MASKED_BY_DEFAULT``); see graphs/telemetry.py.
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
        trace: LangSmith options; ``TraceOptions.from_env()`` otherwise.
        """
        self.graph = graph
        self.thread_id = thread_id or uuid.uuid4().hex
        self.graph_name = graph_name or graph_name_of(graph)
        self.trace = trace or TraceOptions.from_env()

    @property
    def config(self) -> dict[str, Any]:
        """The run config: thread id, plus LangSmith metadata, tags, run name and tracer."""
        return {
            "configurable": {"thread_id": self.thread_id},
            **tracing_config(graph_name=self.graph_name, thread_id=self.thread_id, options=self.trace),
        }

    @property
    def state_config(self) -> dict[str, Any]:
        """Just the thread id: for reading state, where no run is traced."""
        return {"configurable": {"thread_id": self.thread_id}}

    def send(self, text: str, on_event: Callable[[HandoffEvent], None] | None = None) -> TurnResult:
        """Run one user turn; ``on_event`` sees each handoff event as it happens."""
        message = UserMessage(text=text)
        return self._run({"messages": [HumanMessage(content=message.text)]}, on_event)

    def resume(self, on_event: Callable[[HandoffEvent], None] | None = None) -> TurnResult:
        """Run what the thread's current checkpoint still has to do (e.g. after a fork)."""
        return self._run(None, on_event)

    def _run(self, graph_input: Any, on_event: Callable[[HandoffEvent], None] | None) -> TurnResult:
        events: list[HandoffEvent] = []
        path: list[str] = []
        for mode, chunk in self.graph.stream(
            graph_input,
            self.config,
            stream_mode=["custom", "updates"],
            # Each step's checkpoint is written before the next step starts, so a process
            # killed mid-handoff resumes from the gate's checkpoint, not before it.
            durability="sync",
        ):
            if mode == "custom" and isinstance(chunk, dict) and chunk.get("type") == "handoff":
                event = HandoffEvent.model_validate(chunk)
                events.append(event)
                if on_event:
                    on_event(event)
            elif mode == "updates" and isinstance(chunk, dict):
                path.extend(k for k in chunk if not k.startswith("__"))
        return self.result(events=events, path=path)

    def result(self, events: list[HandoffEvent] | None = None, path: list[str] | None = None) -> TurnResult:
        values = self.graph.get_state(self.state_config).values
        reply = next(
            (str(m.content) for m in reversed(values.get("messages") or [])
             if isinstance(m, AIMessage) and m.content and not m.tool_calls),
            "",
        )
        return TurnResult(
            thread_id=self.thread_id,
            reply=reply,
            active_agent=values.get("active_agent", ""),
            handoffs=self.records(),
            case_file=values.get("case_file") or {},
            events=events or [],
            path=path or [],
        )

    def records(self) -> list[HandoffRecord]:
        """Every handoff record of this thread, oldest first."""
        values = self.graph.get_state(self.state_config).values
        count = values.get("handoff_count", 0)
        journal = Journal(self.graph.store, self.thread_id)
        if journal.store is None:
            return list(values.get("handoffs") or [])
        return journal.records(count)


def graph_name_of(graph: CompiledStateGraph) -> str:
    """The name the graph's builder was given (``build_handoff_graph(name=...)``)."""
    builder = getattr(graph, "builder", None)
    return str(getattr(builder, "name", None) or graph.name)
