"""The handoff gate: validate -> transfer context -> initialise -> record.

Every handoff, whoever asked for it, passes here. A rejection is a value
(``HandoffRejection``) the source agent reads in its tool result; the state
changes only in what the outcome calls for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handoff.agents.spec import AgentSpec, HandoffCheck, HandoffPayload, InitContext, call_precondition
from handoff.graphs.boundary import MAX_NOTE_CHARS, check_text, check_value, clean_text
from handoff.graphs.briefing import briefing_text
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, journaled_node
from handoff.state import (
    CaseFile,
    CaseFileError,
    HandoffEvent,
    HandoffRecord,
    HandoffRejection,
    HandoffRequest,
    HandoffState,
    InitResult,
    checked_update,
    records_of,
    request_of,
)

GATE = "handoff_gate"


class GatePolicy(BaseModel):
    """Limits the gate enforces on every handoff."""

    model_config = ConfigDict(frozen=True)

    max_hops_per_turn: int = Field(default=3, ge=1, description="Handoffs allowed in one user turn.")
    ping_pong_limit: int = Field(
        default=3, ge=1, description="Handoffs allowed between one pair within the recent records."
    )
    fallback: str | None = Field(
        default=None, description="Where unrecoverable rejections go; the default agent if None."
    )
    max_payload_chars: int = Field(
        default=8000, ge=100, description="Largest handoff payload (as JSON) the gate accepts."
    )


Check = Callable[..., HandoffRejection | None]


def validate(
    request: HandoffRequest,
    *,
    specs: Mapping[str, AgentSpec],
    state: HandoffState,
    policy: GatePolicy,
    context: Any = None,
) -> tuple[HandoffPayload | None, HandoffRejection | None]:
    """Run every check; return the typed payload, or the first rejection.

    ``context`` is the run's context (the graph's ``context_schema``): the source's enabled-checks and
    the receiver's preconditions may read it.
    """
    if state.get("hops", 0) >= policy.max_hops_per_turn:
        return None, HandoffRejection(
            code="hop_budget_spent",
            message=f"{policy.max_hops_per_turn} handoffs already tried this turn; answer the user.",
        )
    receiver = specs.get(request.target)
    if receiver is None:
        return None, HandoffRejection(
            code="unknown_target",
            message=f"there is no agent {request.target!r}; known: {', '.join(sorted(specs))}",
        )
    source = specs.get(request.source)
    if source is None or request.target not in source.handoffs:
        allowed = ", ".join(source.handoffs) if source else "none"
        return None, HandoffRejection(
            code="edge_not_allowed",
            message=f"{request.source} may not hand to {request.target}; allowed: {allowed}",
        )
    case_file = state.get("case_file") or {}
    if not handoff_enabled(source, request.target, case_file, context):
        return None, HandoffRejection(
            code="handoff_disabled",
            message=f"the handoff from {request.source} to {request.target} is not available now",
        )
    size = len(json.dumps(request.payload, default=str))
    if size > policy.max_payload_chars:
        return None, HandoffRejection(
            code="invalid_payload",
            message=f"payload for {request.target} is {size} characters; the limit is "
            f"{policy.max_payload_chars}: summarise instead of copying the conversation",
        )
    try:
        payload = receiver.payload_schema.model_validate(request.payload)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
                           for e in exc.errors())
        return None, HandoffRejection(
            code="invalid_payload", message=f"payload for {request.target} is invalid: {fields}"
        )
    for precondition in receiver.preconditions:
        try:
            reason = call_precondition(precondition, case_file, payload, context)
        except Exception as exc:  # a check that cannot decide does not let the handoff through
            reason = f"its check {getattr(precondition, '__name__', 'precondition')} failed ({type(exc).__name__})"
        if reason:
            return None, HandoffRejection(
                code="precondition_failed", message=f"{request.target} cannot take this yet: {reason}"
            )
    pair = {request.source, request.target}
    bounces = sum(
        1 for r in records_of(state)
        if r.outcome == "accepted" and {r.source, r.target} == pair
    )
    if bounces >= policy.ping_pong_limit:
        return None, HandoffRejection(
            code="ping_pong",
            message=f"{request.source} and {request.target} have passed this conversation back and "
            f"forth {bounces} times; it goes to the fallback instead",
        )
    return payload, None


def handoff_enabled(source: AgentSpec, target: str, case_file: dict[str, Any], context: Any) -> bool:
    """Whether ``source``'s handoff to ``target`` may be taken now (its ``Handoff.is_enabled``).

    A check that raises counts as disabled: a handoff nobody can vouch for is not offered.
    """
    policy = source.policy_for(target)
    if policy is None or policy.is_enabled is None:
        return True
    try:
        return bool(policy.is_enabled(HandoffCheck(source=source.name, target=target, case_file=case_file,
                                                   context=context)))
    except Exception:
        return False


UNRECOVERABLE = frozenset({"hop_budget_spent", "ping_pong"})


class Decision(BaseModel):
    """What the gate decided about one request, before anything is written."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    payload: HandoffPayload | None = None
    rejection: HandoffRejection | None = None
    init: InitResult | None = None
    case_file_updates: dict[str, Any] = Field(default_factory=dict)


def decide(
    request: HandoffRequest,
    *,
    specs: Mapping[str, AgentSpec],
    state: HandoffState,
    policy: GatePolicy,
    case_file_model: type[CaseFile],
    context: Any = None,
) -> Decision:
    """Validate, transfer the payload into the case file, run the receiver's initialisation."""
    payload, rejection = validate(request, specs=specs, state=state, policy=policy, context=context)
    if payload is None:
        return Decision(rejection=rejection)
    case_file = state.get("case_file") or {}
    try:
        updates = checked_update(case_file_model, case_file, payload.model_dump())
    except CaseFileError as exc:
        return Decision(rejection=HandoffRejection(code="invalid_payload", message=str(exc)))
    try:
        init = _initialise(specs[request.target], request, payload, case_file, context)
        if init is not None:
            _check_init(init)
            updates = {**updates, **checked_update(
                case_file_model, {**case_file, **updates}, init.case_file_updates)}
    except Exception as exc:  # any failure of the receiver's set-up is a failed handoff
        # The error's text goes into the record and the source's tool result: made storable.
        error = clean_text(f"{type(exc).__name__}: {exc}", max_chars=MAX_NOTE_CHARS)
        return Decision(payload=payload, rejection=HandoffRejection(
            code="init_failed", message=f"{request.target} failed while taking over: {error}",
        ))
    return Decision(payload=payload, init=init, case_file_updates=updates)


def route(request: HandoffRequest, rejection: HandoffRejection | None, *, specs: Mapping[str, AgentSpec],
          fallback: str) -> str:
    """Who holds the conversation after the gate: the receiver, the source, or the fallback."""
    if rejection is None:
        return request.target
    recoverable = rejection.code not in UNRECOVERABLE and request.source in specs
    return request.source if recoverable else fallback


def make_gate(
    specs: Mapping[str, AgentSpec],
    *,
    case_file_model: type[CaseFile],
    policy: GatePolicy,
    default_agent: str,
) -> RunnableCallable:
    """The gate node for one graph: decide, route, record, answer the source."""
    fallback = policy.fallback or default_agent

    def handoff_gate(state: HandoffState, runtime: Runtime, journal: Journal) -> dict[str, Any]:
        request = request_of(state)
        if request is None:
            return {}
        started = time.perf_counter()
        emit = runtime.stream_writer
        emit(HandoffEvent.of("requested", request).model_dump(mode="json"))
        decision = decide(request, specs=specs, state=state, policy=policy, case_file_model=case_file_model,
                          context=runtime.context)
        rejection = decision.rejection
        outcome = "accepted" if rejection is None else (
            "failed" if rejection.code == "init_failed" else "rejected")
        record = HandoffRecord(
            request=request, outcome=outcome, rejection=rejection, init_result=decision.init,
            routed_to=route(request, rejection, specs=specs, fallback=fallback),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        if decision.init is not None and outcome == "accepted":
            emit(HandoffEvent.of("initialised", request, decision.init.summary).model_dump(mode="json"))
        emit(HandoffEvent.from_record(record).model_dump(mode="json"))
        return _record(state, journal, record, decision, specs)

    return journaled_node(GATE, handoff_gate)


def _record(
    state: HandoffState, journal: Journal, record: HandoffRecord, decision: Decision,
    specs: Mapping[str, AgentSpec],
) -> dict[str, Any]:
    """The state update for a decided handoff; the record also goes to the journal."""
    request = record.request
    count = state.get("handoff_count", 0)
    journal.append_record(count, record)
    update: dict[str, Any] = {
        "pending_handoff": None,
        "active_agent": record.routed_to,
        "handoffs": [record],
        "handoff_count": count + 1,
        "hops": state.get("hops", 0) + 1,
    }
    if request.tool_call_id:
        message = ToolMessage(content=_tool_answer(record, specs), tool_call_id=request.tool_call_id,
                              name=request.trigger_name or f"transfer_to_{request.target}",
                              status="success" if record.outcome == "accepted" else "error")
        update["messages"] = [message]
        update["transcript_len"] = journal.append_messages(state.get("transcript_len", 0), [message])
    elif record.rejection is not None:
        update["notice"] = f"Your handoff to {request.target} was refused: {record.rejection}."
    if record.outcome == "accepted" and decision.payload is not None:
        source_title = specs[request.source].title if request.source in specs else request.source
        update["case_file"] = decision.case_file_updates
        update["briefing"] = briefing_text(request, decision.payload, decision.init, source_title)
        update["receiving"] = request.id
    return update


def _initialise(
    receiver: AgentSpec, request: HandoffRequest, payload: HandoffPayload, case_file: dict[str, Any],
    context: Any = None,
) -> InitResult | None:
    if receiver.on_enter is None:
        return None
    return receiver.on_enter(InitContext(request=request, payload=payload, case_file=case_file, context=context))


def _check_init(init: InitResult) -> None:
    """An initialisation result is stored in the record and the briefing: it must be storable.

    Raises:
        InputRefused: its summary or case-file updates hold what cannot be stored, or are too large.
    """
    check_text(init.action, field="initialisation action", max_chars=MAX_NOTE_CHARS, free_text=False)
    check_text(init.summary, field="initialisation summary", max_chars=MAX_NOTE_CHARS)
    check_value(init.case_file_updates, field="initialisation case-file updates")


def _tool_answer(record: HandoffRecord, specs: Mapping[str, AgentSpec]) -> str:
    if record.outcome == "accepted":
        title = specs[record.target].title
        return f"Handoff accepted: {title} now has the conversation."
    assert record.rejection is not None
    where = "" if record.routed_to == record.source else f" The conversation goes to {record.routed_to}."
    return f"Handoff {record.outcome} [{record.rejection.code}]: {record.rejection.message}.{where}"
