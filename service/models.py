"""Request and response bodies of the handoff service (and of its embedding API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from handoff.graphs.boundary import MAX_DEPTH, MAX_ID_CHARS, InputRefused, check_text, check_value
from handoff.graphs.session import MAX_MESSAGE_CHARS
from handoff.graphs.streaming import TokenEvent
from handoff.state import HandoffEvent, HandoffRecord

DEFAULT_GRAPH = "customer-service"
NAME_CHARS = 64
"""Longest graph or agent name a request may carry."""
NOT_BLANK: dict[str, Any] = {"minLength": 1, "not": {"pattern": r"^\s*$"}}
"""What the OpenAPI document says of a text that must not be blank (the validators say why)."""


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


def _storable(check: Any, value: Any, field: str, **limits: Any) -> Any:
    """``value`` if the graph's boundary (graphs/boundary.py) takes it; its refusal as a validation
    error, so it is a 422 naming the field and the limit before anything runs.

    The boundary's message starts with the field it was given; request validation puts the field
    in front again, so only a message about a part of the field (``case_file_updates.x``) keeps it.
    """
    try:
        return check(value, field=field, **limits)
    except InputRefused as exc:
        raise ValueError(str(exc).removeprefix(f"{field}: ")) from None


class Request(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped, and a value
    of the wrong JSON type is an error, not coerced (``"stream": "no"`` is not ``false``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class StartThread(Request):
    """Start a conversation with one of the graphs."""

    graph: str = Field(default=DEFAULT_GRAPH, max_length=NAME_CHARS, description="Graph name; see GET /graphs.")

    @field_validator("graph")
    @classmethod
    def _graph(cls, value: str) -> str:
        return _storable(check_text, value, "graph", max_chars=NAME_CHARS, free_text=False)


MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class SendMessage(Request):
    """The user's next message."""

    text: str = Field(max_length=MAX_MESSAGE_CHARS, json_schema_extra=NOT_BLANK,
                      description="What the user says (not blank).")
    message_id: str | None = Field(
        default=None, pattern=MESSAGE_ID_PATTERN,
        description="The client's id for this message (e.g. a UUID). Sending it again, after a lost "
        "connection or a 5xx, never adds the message twice: the service completes the turn it started "
        "if that was interrupted, or returns its outcome with `duplicate: true`.",
    )
    stream: bool = Field(default=True, description="Answer as server-sent events; JSON when false.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _storable(check_text, _not_blank(value, "message"), "text", max_chars=MAX_MESSAGE_CHARS)


class AnswerEscalation(Request):
    """A person's answer to the escalation a thread is waiting on (graphs/human.py's HumanAnswer)."""

    reply: str = Field(max_length=MAX_MESSAGE_CHARS, json_schema_extra=NOT_BLANK,
                       description="What the user is told (not blank).")
    hand_back_to: str | None = Field(default=None, max_length=NAME_CHARS,
                                     description="Agent to take the conversation again.")
    case_file_updates: dict[str, Any] = Field(
        default_factory=dict, description=f"Facts for the case file; at most {MAX_MESSAGE_CHARS} characters of "
        f"JSON, {MAX_DEPTH} levels deep."
    )
    escalation_id: str | None = Field(
        default=None, max_length=128,
        description="The pending escalation's id; refused if it is not the pending one.",
    )
    stream: bool = Field(default=True, description="Answer as server-sent events; JSON when false.")

    @field_validator("reply")
    @classmethod
    def _reply(cls, value: str) -> str:
        return _storable(check_text, _not_blank(value, "reply"), "reply", max_chars=MAX_MESSAGE_CHARS)

    @field_validator("hand_back_to", "escalation_id")
    @classmethod
    def _name(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        return _storable(check_text, value, info.field_name, max_chars=MAX_ID_CHARS, free_text=False)

    @field_validator("case_file_updates")
    @classmethod
    def _case_file_updates(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _storable(check_value, value, "case_file_updates", max_chars=MAX_MESSAGE_CHARS)


class GraphInfo(BaseModel):
    """One graph the service can run."""

    name: str
    title: str
    flow: str
    agents: list[str] = Field(description="Node names of its agents, the human included.")


class ThreadInfo(BaseModel):
    """A conversation and the graph it runs on."""

    thread_id: str
    graph: str
    created_at: datetime


class ChatMessage(BaseModel):
    """One message of the transcript as the user (or a person helping) sees it."""

    role: Literal["user", "agent", "tool"]
    agent: str | None = Field(default=None, description="Who spoke (agent node name) or which tool ran.")
    text: str


class Escalation(BaseModel):
    """A pending human escalation: LangGraph's interrupt, with what the person needs."""

    id: str = Field(description="The interrupt id; answer with it to be sure you answer this one.")
    node: str = Field(description="The node that paused the graph (``human``).")
    source: str = Field(default="", description="Agent that escalated.")
    reason: str = Field(default="", description="Why it was escalated.")
    briefing: str = Field(default="", description="What the person is told about the case.")
    question: str = Field(default="", description="The user's last message.")
    value: Any = Field(default=None, description="The interrupt's value, as the graph gave it.")


class ThreadState(BaseModel):
    """Everything a client needs to show a conversation."""

    thread_id: str
    graph: str
    created_at: datetime
    active_agent: str | None = Field(description="Who answers the next message (None before the first).")
    turn: int
    case_file: dict[str, Any]
    messages: list[ChatMessage] = Field(description="The transcript, oldest first (at most `limit`).")
    handoffs: list[HandoffRecord]
    escalation: Escalation | None = Field(description="The pending human escalation, if any.")


class TurnResponse(BaseModel):
    """What one turn (a message, or a person's answer) produced."""

    thread_id: str
    message_id: str | None = Field(
        default=None, description="Id of the user message this turn answered (the client's or the service's)."
    )
    duplicate: bool = Field(
        default=False, description="The message had been accepted before: it was not added again; the turn "
        "it started was completed if it had been interrupted, and this is its outcome.",
    )
    reply: str = Field(description="The last thing said to the user this turn; '' when none.")
    active_agent: str | None
    messages: list[ChatMessage] = Field(description="What was said this turn.")
    events: list[HandoffEvent] = Field(description="This turn's handoff events, in order.")
    handoffs: list[HandoffRecord] = Field(description="All the thread's handoff records.")
    case_file: dict[str, Any]
    escalation: Escalation | None


class StepEvent(BaseModel):
    """A node of the graph finished a step."""

    type: Literal["step"] = "step"
    node: str


class MessageEvent(BaseModel):
    """An agent (or a person) said something to the user: the whole message, as stored."""

    type: Literal["message"] = "message"
    message: ChatMessage
    message_id: str | None = Field(
        default=None, description="The message's id when the graph gave it one: the `message_id` of the "
        "`token` events that streamed it, whose text this replaces.")


class EscalationEvent(BaseModel):
    """The graph paused for a person."""

    type: Literal["escalation"] = "escalation"
    escalation: Escalation


class DoneEvent(BaseModel):
    """The turn ended; the result is complete."""

    type: Literal["done"] = "done"
    result: TurnResponse


class ErrorEvent(BaseModel):
    """The turn failed after the stream began."""

    type: Literal["error"] = "error"
    code: str
    message: str


TurnEvent = HandoffEvent | TokenEvent | StepEvent | MessageEvent | EscalationEvent | DoneEvent | ErrorEvent
"""What a turn streams; every variant has a ``type`` (the SSE event name)."""


class ErrorDetail(BaseModel):
    """A readable error: a code to branch on and a message for people."""

    code: str
    message: str
    fields: list[dict[str, Any]] | None = Field(default=None, description="Per-field problems (422).")


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail
