"""Human escalation: a person as a real handoff target.

The ``human`` node pauses the graph with ``interrupt()`` and shows the person
the briefing; ``Command(resume=HumanAnswer(...).model_dump())`` continues it
with the person's reply, optionally handing the conversation back to an agent.

An answer is checked before anything is stored: its size, depth and characters
at the graph's boundary (graphs/boundary.py), its shape here, as the interrupt's
``response_schema``, which LangGraph validates without saving the answer. Either
way a bad answer is refused with ``InputRefused`` and the escalation stays
pending, to be answered again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from handoff.agents.person_request import asks_for_a_person
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import KeywordTrigger, Trigger, TriggerContext
from handoff.graphs.boundary import (
    MAX_DEPTH,
    MAX_ID_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    InputRefused,
    check_text,
    check_value,
)
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, journaled_node
from handoff.state import (
    CaseFile,
    CaseFileError,
    HandoffEvent,
    HandoffRecord,
    HandoffRequest,
    HandoffState,
    checked_update,
    records_of,
)

HUMAN = "human"

HUMAN_SPEC = AgentSpec(
    name=HUMAN,
    title="Human agent",
    description="A person on the support team, for requests the agents cannot or should not settle.",
    instructions="(a person answers here; no model runs)",
)

class PersonRequestTrigger(Trigger):
    """Fires when the user asks for one of our people, by wording or by meaning
    (agents/person_request.py), not on a person mentioned in passing ("send a copy to my manager")."""

    def fires(self, ctx: TriggerContext) -> bool:
        return asks_for_a_person(ctx.message)


ASKS_FOR_A_PERSON = PersonRequestTrigger(
    name="asks_for_a_person",
    target=HUMAN,
    reason="The user asked for a person.",
)
FRUSTRATION = KeywordTrigger(
    name="frustration",
    target=HUMAN,
    reason="The user sounds frustrated.",
    keywords=("ridiculous", "useless", "fed up", "furious", "unacceptable"),
    patterns=(r"!!!",),
)
ESCALATION_TRIGGERS = (ASKS_FOR_A_PERSON, FRUSTRATION)


class EscalationRequest(BaseModel):
    """What the person sees when the graph pauses for them."""

    model_config = ConfigDict(frozen=True)

    handoff_id: str
    source: str
    reason: str
    briefing: str
    question: str
    case_file: dict[str, Any]


class HumanAnswer(BaseModel):
    """The person's answer: a reply for the user, and optionally whom to hand back to."""

    model_config = ConfigDict(extra="forbid")

    reply: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, description="What the user is told.")
    hand_back_to: str | None = Field(default=None, max_length=MAX_ID_CHARS,
                                     description="Agent to take over again.")
    case_file_updates: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Facts for the case file: at most {MAX_DEPTH} levels deep, {MAX_VALUE_CHARS:,} characters "
                    "as JSON.")

    @field_validator("reply")
    @classmethod
    def _storable_reply(cls, value: str) -> str:
        return check_text(value, field="reply", max_chars=MAX_MESSAGE_CHARS)

    @field_validator("case_file_updates")
    @classmethod
    def _storable_updates(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_value(value, field="case_file_updates")


def _as_answer(raw: Any) -> Any:
    """A bare resume value (``Command(resume="text")``) is the reply itself."""
    return raw if isinstance(raw, Mapping | HumanAnswer) else {"reply": str(raw)}


ANSWER_SCHEMA = Annotated[HumanAnswer, BeforeValidator(_as_answer)]
"""What the ``human`` node's interrupt takes (its ``response_schema``)."""


def with_escalation(agents: list[AgentSpec]) -> list[AgentSpec]:
    """Every agent may hand to the human and gets the escalation triggers."""
    out = []
    for spec in agents:
        handoffs = spec.handoffs if HUMAN in spec.handoffs else (*spec.handoffs, HUMAN)
        triggers = (*ESCALATION_TRIGGERS, *spec.triggers)
        out.append(spec.model_copy(update={"handoffs": handoffs, "triggers": triggers}))
    hand_back = tuple(s.name for s in agents)
    out.append(HUMAN_SPEC.model_copy(update={"handoffs": hand_back}))
    return out


def make_human_node(
    specs: Mapping[str, AgentSpec], *, case_file_model: type[CaseFile]
) -> RunnableCallable:
    """The node where a person answers (``interrupt()``)."""

    def human(state: HandoffState, runtime: Runtime, journal: Journal) -> dict[str, Any]:
        last = (records_of(state) or [None])[-1]
        question = next((str(m.content) for m in reversed(state.get("messages") or [])
                         if isinstance(m, HumanMessage)), "")
        request = EscalationRequest(
            handoff_id=last.request.id if last else "",
            source=last.source if last else "",
            reason=last.request.reason if last else "",
            briefing=state.get("briefing") or "",
            question=question,
            case_file=state.get("case_file") or {},
        )
        try:
            answer = interrupt(request.model_dump(mode="json"), response_schema=ANSWER_SCHEMA)
        except ValidationError as exc:  # nothing was saved: the escalation is still pending
            raise InputRefused(f"escalation answer: {_errors(exc)}") from None
        emit = runtime.stream_writer
        if last is not None and last.request.id == state.get("receiving") and last.routed_to == HUMAN:
            emit(HandoffEvent.of("completed", last.request).model_dump(mode="json"))

        message = AIMessage(content=answer.reply, name=HUMAN)
        update: dict[str, Any] = {
            "messages": [message],
            "transcript_len": journal.append_messages(state.get("transcript_len", 0), [message]),
            "receiving": None,
        }
        try:
            update["case_file"] = checked_update(
                case_file_model, state.get("case_file") or {}, answer.case_file_updates)
        except CaseFileError as exc:
            message.content = f"{answer.reply}\n(case file not updated: {exc})"
        target = answer.hand_back_to
        if target and target in specs and target != HUMAN:
            back = HandoffRequest(source=HUMAN, target=target, reason="A person handed the conversation back.",
                                  summary=answer.reply, payload={}, trigger="human")
            record = HandoffRecord(request=back, outcome="accepted", routed_to=target, latency_ms=0.0)
            emit(HandoffEvent.of("requested", back).model_dump(mode="json"))
            emit(HandoffEvent.from_record(record).model_dump(mode="json"))
            count = state.get("handoff_count", 0)
            journal.append_record(count, record)
            update.update({
                "active_agent": target, "handoffs": [record], "handoff_count": count + 1,
                "briefing": f"From a person ({HUMAN}): {answer.reply}",
            })
        return update

    return journaled_node(HUMAN, human)


def _errors(exc: ValidationError) -> str:
    """Every bad field of an answer, by name, without echoing the value."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors())
