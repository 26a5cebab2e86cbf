"""Embedding API: hold a conversation with a compiled handoff graph."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphs.journal import Journal
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
    """One thread of one compiled graph."""

    def __init__(self, graph: CompiledStateGraph, thread_id: str | None = None) -> None:
        self.graph = graph
        self.thread_id = thread_id or uuid.uuid4().hex

    @property
    def config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.thread_id}}

    def send(self, text: str, on_event: Callable[[HandoffEvent], None] | None = None) -> TurnResult:
        """Run one user turn; ``on_event`` sees each handoff event as it happens."""
        message = UserMessage(text=text)
        events: list[HandoffEvent] = []
        path: list[str] = []
        for mode, chunk in self.graph.stream(
            {"messages": [HumanMessage(content=message.text)]},
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
        values = self.graph.get_state(self.config).values
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
        values = self.graph.get_state(self.config).values
        count = values.get("handoff_count", 0)
        journal = Journal(self.graph.store, self.thread_id)
        if journal.store is None:
            return list(values.get("handoffs") or [])
        return journal.records(count)
