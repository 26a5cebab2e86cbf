"""The handoff event: one schema for every step of a handoff's life."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from handoff.state.handoff import HandoffRecord, HandoffRequest, TriggerKind

EventKind = Literal["requested", "accepted", "rejected", "failed", "initialised", "completed"]


class HandoffEvent(BaseModel):
    """Emitted on LangGraph's ``custom`` stream and attached to LangSmith runs."""

    model_config = ConfigDict(frozen=True)

    type: Literal["handoff"] = "handoff"
    kind: EventKind
    handoff_id: str
    source: str
    target: str
    reason: str
    trigger: TriggerKind
    detail: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, kind: EventKind, request: HandoffRequest, detail: str = "") -> HandoffEvent:
        return cls(kind=kind, handoff_id=request.id, source=request.source, target=request.target,
                   reason=request.reason, trigger=request.trigger, detail=detail)

    @classmethod
    def from_record(cls, record: HandoffRecord) -> HandoffEvent:
        detail = str(record.rejection) if record.rejection else ""
        return cls.of(record.outcome, record.request, detail)
