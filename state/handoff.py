"""The handoff envelope (request) and its outcome (record)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TriggerKind = Literal["tool", "rule", "semantic", "classifier", "human"]
"""How a handoff was asked for: the agent's transfer tool, a declared rule, a semantic trigger
(embedding similarity above its threshold and margin), a classifier above its threshold, or a person."""

Outcome = Literal["accepted", "rejected", "failed"]

RejectionCode = Literal[
    "unknown_target",
    "edge_not_allowed",
    "invalid_payload",
    "precondition_failed",
    "handoff_disabled",
    "ping_pong",
    "hop_budget_spent",
    "init_failed",
    "receiver_failed",
]


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _now() -> datetime:
    return datetime.now(UTC)


class HandoffRequest(BaseModel):
    """The envelope one agent (or a trigger acting for it) sends to another."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=_new_id, description="Stable id of this handoff.")
    source: str = Field(description="Agent handing the conversation over.")
    target: str = Field(description="Agent asked to take it.")
    reason: str = Field(description="Why the handoff is wanted, in one sentence.")
    summary: str = Field(default="", description="What the receiver needs to know.")
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Typed fields for the receiver, validated by its schema."
    )
    trigger: TriggerKind = Field(description="What asked for the handoff.")
    trigger_name: str | None = Field(default=None, description="The rule or tool that fired.")
    score: float | None = Field(
        default=None, ge=-1, le=1, allow_inf_nan=False,
        description="How sure the trigger was: a semantic trigger's similarity, a classifier's confidence.")
    tool_call_id: str | None = Field(
        default=None, description="The transfer tool call to answer, when trigger is 'tool'."
    )
    created_at: datetime = Field(default_factory=_now)


class HandoffRejection(BaseModel):
    """Why the gate refused a handoff: a code to branch on and a readable message."""

    model_config = ConfigDict(frozen=True)

    code: RejectionCode
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InitResult(BaseModel):
    """What the receiver's initialisation action did before it answered."""

    model_config = ConfigDict(frozen=True)

    action: str = Field(description="Name of the initialisation action.")
    summary: str = Field(description="One line for the receiver's briefing and the record.")
    case_file_updates: dict[str, Any] = Field(default_factory=dict)


class HandoffRecord(BaseModel):
    """A handoff request plus what became of it."""

    model_config = ConfigDict(frozen=True)

    request: HandoffRequest
    outcome: Outcome
    rejection: HandoffRejection | None = None
    init_result: InitResult | None = None
    routed_to: str = Field(description="Agent that holds the conversation after the gate.")
    latency_ms: float = Field(ge=0, description="Time the gate spent on this handoff.")
    decided_at: datetime = Field(default_factory=_now)

    @property
    def source(self) -> str:
        return self.request.source

    @property
    def target(self) -> str:
        return self.request.target


# The conversation state keeps requests and records as plain JSON data, never as these classes:
# a checkpoint then holds only what LangGraph's strict msgpack mode loads with any checkpointer's
# default serializer (a notebook's ``InMemorySaver()``, ``langgraph dev``), with no type to register.
# Nodes write either form; the reducers below store the plain one, the readers give back the models.


def plain_request(left: Any, right: Any) -> dict[str, Any] | None:
    """Reducer of ``pending_handoff``: the latest request as plain data (validated), or None."""
    if right is None:
        return None
    request = right if isinstance(right, HandoffRequest) else HandoffRequest.model_validate(right)
    return request.model_dump(mode="json")


def plain_record(record: Any) -> dict[str, Any]:
    """A handoff record as the state stores it (validated)."""
    model = record if isinstance(record, HandoffRecord) else HandoffRecord.model_validate(record)
    return model.model_dump(mode="json")


def plain_update(update: dict[str, Any]) -> dict[str, Any]:
    """A node's state update with its requests and records as plain data.

    LangGraph stores a node's writes as they are (pending writes, before any reducer runs), and
    reads them back for crash resume and history: so nodes write plain data too.
    """
    if "pending_handoff" in update:
        update["pending_handoff"] = plain_request(None, update["pending_handoff"])
    if update.get("handoffs"):
        records = update["handoffs"] if isinstance(update["handoffs"], list) else [update["handoffs"]]
        update["handoffs"] = [plain_record(r) for r in records]
    return update


def request_of(values: Mapping[str, Any]) -> HandoffRequest | None:
    """The pending handoff request in a state (or checkpoint values), as the model."""
    raw = values.get("pending_handoff")
    if raw is None or isinstance(raw, HandoffRequest):
        return raw
    return HandoffRequest.model_validate(raw)


def records_of(values: Mapping[str, Any]) -> list[HandoffRecord]:
    """The recent handoff records in a state (or checkpoint values), as models, oldest first."""
    return [r if isinstance(r, HandoffRecord) else HandoffRecord.model_validate(r)
            for r in values.get("handoffs") or []]


def records_newest_first(values: Mapping[str, Any]) -> Iterator[HandoffRecord]:
    """``records_of`` newest first, each read only when reached: a node that looks at the last record
    or two does not validate all of them on every turn."""
    for raw in reversed(values.get("handoffs") or []):
        yield raw if isinstance(raw, HandoffRecord) else HandoffRecord.model_validate(raw)
