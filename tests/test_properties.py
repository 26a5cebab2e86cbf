"""Property tests: the handoff gate, the state models and the case-file updates under any input.

Each property holds for every input Hypothesis draws (derandomized, no
example database): malformed handoff requests end as an accepted handoff or
a structured rejection and touch nothing they should not; the reducers keep
what they promise (facts, tool-call pairs, windows, order).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any, get_args
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore
from pydantic import ValidationError

from handoff.agents.customer_service.back_office import ACCOUNTS, BackOffice
from handoff.agents.customer_service.specialists import (
    BILLING,
    GENERAL,
    TECHNICAL,
    SupportCaseFile,
    customer_service_agents,
)
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec, Handoff, HandoffCheck
from handoff.graphs.builder import check_specs
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.gate import UNRECOVERABLE, GatePolicy, make_gate
from handoff.graphs.human import HUMAN, with_escalation
from handoff.graphs.journal import Journal
from handoff.state import (
    MESSAGE_WINDOW,
    RECORD_WINDOW,
    CaseFileError,
    HandoffEvent,
    HandoffRecord,
    HandoffRejection,
    HandoffRequest,
    RejectionCode,
    TriggerKind,
    append_records,
    checked_update,
    merge_case_file,
    merge_usage,
    records_of,
    window_messages,
)
from tests.helpers import compile_memory

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "handoff-hypothesis")
"""Hypothesis' caches (unicode tables, constants) go to the temp dir, not into the repo."""

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""Reproducible and bounded; no .hypothesis folder is written."""

def _once_the_account_is_known(check: HandoffCheck) -> bool:
    return bool(check.case_file.get("account_id"))


SPECS: dict[str, AgentSpec] = check_specs([
    # One handoff with an enabled-check, so the gate's handoff_disabled refusal is among the outcomes.
    s.model_copy(update={"handoff_policies": (Handoff(target=BILLING, is_enabled=_once_the_account_is_known),)})
    if s.name == GENERAL else s
    for s in with_escalation(customer_service_agents(BackOffice()))
], GENERAL)
POLICY = GatePolicy()
GATE = make_gate(SPECS, case_file_model=SupportCaseFile, policy=POLICY, default_agent=GENERAL)
REJECTION_CODES = frozenset(get_args(RejectionCode))
LATE_CODES = frozenset({"invalid_payload", "init_failed"})
"""Refusals after validation: the payload does not fit the case file, or initialisation raised."""

# --- strategies -----------------------------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
"""Integers a checkpoint can hold; wider ones are test_a_transfer_call_with_a_number_beyond_64_bits..."""
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
"""Any JSON value, as a model's tool-call arguments may hold."""

agent_names = st.sampled_from(sorted(SPECS))
any_name = agent_names | st.text(max_size=24) | st.sampled_from(
    ["", "intake", "handoff_gate", "__end__", "General_Support", "human ", "transfer_to_human"])
account_ids = st.sampled_from([*sorted(ACCOUNTS), "ACC-9999"]) | st.from_regex(r"ACC-\d{1,5}", fullmatch=True)
invoice_ids = st.sampled_from(["INV-2001", "INV-2002", "INV-2003"]) | st.from_regex(r"INV-\d{1,5}", fullmatch=True)
words = st.text(min_size=3, max_size=40)

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "reason": words, "summary": st.text(max_size=40), "account_id": account_ids,
    "symptoms": words, "invoice_id": st.none() | invoice_ids, "wants_refund": st.sampled_from([True, True, False]),
}
"""Valid values for every payload field of the customer-service agents."""


@st.composite
def payloads(draw: st.DrawFn, target: str) -> dict[str, Any]:
    """A payload for ``target``: random JSON, or its schema's fields with a few mutations."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.dictionaries(st.text(max_size=12), JSON, max_size=5))
    spec = SPECS.get(target)
    names = list(spec.payload_schema.model_fields) if spec else list(FIELDS)
    payload = {name: draw(FIELDS.get(name, JSON)) for name in names}
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(names) | st.text(max_size=8))
        action = draw(st.sampled_from(["drop", "junk"]))
        if action == "drop":
            payload.pop(key, None)
        else:
            payload[key] = draw(JSON)
    return payload


case_files = st.fixed_dictionaries({}, optional={
    "account_id": account_ids, "customer_name": st.text(max_size=20), "identity_verified": st.booleans(),
    "product": st.text(max_size=10), "region": st.text(max_size=10), "problem_summary": st.text(max_size=20),
    "steps_tried": st.lists(st.text(max_size=10), max_size=3), "service_status": st.text(max_size=10),
    "invoice_id": invoice_ids, "amount": st.floats(min_value=0, max_value=1e6),
    "refund_ids": st.lists(st.text(max_size=8), max_size=3), "ticket_id": st.text(max_size=8),
    "sentiment": st.sampled_from(["calm", "frustrated", "angry"]),
})
"""Case files SupportCaseFile accepts, as the state holds them."""

requests_ = st.builds(
    HandoffRequest,
    source=agent_names, target=agent_names, reason=st.text(max_size=20),
    trigger=st.sampled_from(get_args(TriggerKind)),
    created_at=st.datetimes(timezones=st.just(UTC)),
)
records = st.builds(
    HandoffRecord,
    request=requests_,
    outcome=st.sampled_from(["accepted", "rejected", "failed"]),
    rejection=st.none() | st.builds(HandoffRejection, code=st.sampled_from(sorted(REJECTION_CODES)),
                                    message=st.text(max_size=20)),
    routed_to=agent_names,
    latency_ms=st.floats(min_value=0, max_value=1e6),
    decided_at=st.datetimes(timezones=st.just(UTC)),
)


def bounce(source: str, target: str) -> st.SearchStrategy[HandoffRecord]:
    """An accepted handoff between ``source`` and ``target`` (either way), for the ping-pong guard."""
    pair = st.sampled_from([(source, target), (target, source)])
    return pair.flatmap(lambda p: records.map(lambda r: r.model_copy(update={
        "outcome": "accepted", "rejection": None,
        "request": r.request.model_copy(update={"source": p[0], "target": p[1]})})))


@st.composite
def gate_states(draw: st.DrawFn) -> dict[str, Any]:
    """A state with a pending handoff request, however malformed.

    Mostly real agents along declared edges, so that every check gets its turn;
    otherwise any name at all.
    """
    source = draw(agent_names if draw(st.integers(0, 3)) else any_name)
    edges = SPECS[source].handoffs if source in SPECS else ()
    target = draw(st.sampled_from(edges) if edges and draw(st.integers(0, 3)) else any_name)
    request = HandoffRequest(
        source=source, target=target, reason=draw(st.text(max_size=30)),
        summary=draw(st.text(max_size=30)), payload=draw(payloads(target)),
        trigger=draw(st.sampled_from(get_args(TriggerKind))),
        trigger_name=draw(st.none() | st.text(max_size=12)),
        tool_call_id=draw(st.none() | st.text(min_size=1, max_size=12)),
    )
    handoffs = draw(st.lists(records, max_size=RECORD_WINDOW // 2))
    handoffs += draw(st.lists(bounce(source, target), max_size=RECORD_WINDOW // 2))
    return {
        "pending_handoff": request,
        "active_agent": draw(agent_names),
        "case_file": draw(case_files),
        "handoffs": draw(st.permutations(handoffs)),
        "handoff_count": len(handoffs) + draw(st.integers(0, 50)),
        "transcript_len": draw(st.integers(0, 50)),
        "hops": draw(st.just(0) | st.integers(0, POLICY.max_hops_per_turn + 1)),
    }


# --- the gate -------------------------------------------------------------------------------------


def run_gate(state: dict[str, Any]) -> tuple[dict[str, Any], list[HandoffEvent]]:
    """The gate node on ``state`` with a fake runtime; returns its update and the events it emitted."""
    emitted: list[dict[str, Any]] = []
    update = GATE.func(state, Runtime(store=InMemoryStore(), stream_writer=emitted.append))  # type: ignore[arg-type]
    return update, [HandoffEvent.model_validate(e) for e in emitted]


def predicted_rejection(state: Mapping[str, Any]) -> RejectionCode | None:
    """The README's table, in its order: the first check that refuses (None: validation passes,
    so only the case-file merge or the receiver's initialisation can still refuse)."""
    request: HandoffRequest = state["pending_handoff"]
    if state["hops"] >= POLICY.max_hops_per_turn:
        return "hop_budget_spent"
    if request.target not in SPECS:
        return "unknown_target"
    if request.source not in SPECS or request.target not in SPECS[request.source].handoffs:
        return "edge_not_allowed"
    policy = SPECS[request.source].policy_for(request.target)
    if policy and policy.is_enabled and not policy.is_enabled(
            HandoffCheck(source=request.source, target=request.target, case_file=state["case_file"])):
        return "handoff_disabled"
    receiver = SPECS[request.target]
    try:
        payload = receiver.payload_schema.model_validate(request.payload)
    except ValidationError:
        return "invalid_payload"
    if any(check(state["case_file"], payload) for check in receiver.preconditions):
        return "precondition_failed"
    pair = {request.source, request.target}
    bounces = [r for r in records_of(state) if r.outcome == "accepted" and {r.source, r.target} == pair]
    if len(bounces) >= POLICY.ping_pong_limit:
        return "ping_pong"
    return None


@PROPERTY
@given(state=gate_states())
def test_any_handoff_request_ends_accepted_or_as_a_structured_rejection(state: dict[str, Any]) -> None:
    before = copy.deepcopy(state)
    request: HandoffRequest = state["pending_handoff"]

    update, events = run_gate(state)

    assert state == before, "the gate changed its input state in place"
    [record] = records_of(update)
    assert record.request == request and update["pending_handoff"] is None
    assert update["hops"] == state["hops"] + 1
    assert update["handoff_count"] == state["handoff_count"] + 1
    # A node's update leaves out what it does not change (graphs/nodes.changes_only): read it over the state.
    routed = update.get("active_agent", state.get("active_agent"))
    assert routed in SPECS, "the conversation must go to a real agent"
    assert [e.kind for e in events][0] == "requested" and events[-1].kind == record.outcome

    if record.outcome == "accepted":
        assert record.rejection is None and predicted_rejection(state) is None
        assert routed == request.target == record.routed_to
        SupportCaseFile.model_validate(merge_case_file(state["case_file"], update.get("case_file")))
        assert update["briefing"] and update["receiving"] == request.id
    else:
        rejection = record.rejection
        assert rejection is not None and rejection.code in REJECTION_CODES and rejection.message
        assert record.outcome == ("failed" if rejection.code == "init_failed" else "rejected")
        predicted = predicted_rejection(state)
        assert rejection.code == predicted or (predicted is None and rejection.code in LATE_CODES)
        back = rejection.code not in UNRECOVERABLE and request.source in SPECS
        assert routed == (request.source if back else GENERAL)
        assert not {"case_file", "briefing", "receiving"} & set(update), "a rejection wrote state"

    if request.tool_call_id:
        [answer] = update["messages"]
        assert isinstance(answer, ToolMessage) and answer.tool_call_id == request.tool_call_id
        assert answer.status == ("success" if record.outcome == "accepted" else "error")
        if record.rejection:
            assert f"[{record.rejection.code}]" in str(answer.content)
    else:
        assert "messages" not in update
        if record.rejection:
            assert record.rejection.code in update["notice"]


@pytest.mark.parametrize("field", ["summary", "reason", "symptoms"])
def test_a_huge_handoff_payload_is_rejected_as_invalid_payload(field: str) -> None:
    payload = {"reason": "line drops", "summary": "evening drops", "account_id": "ACC-1001",
               "symptoms": "drops every evening", field: "x" * 100_000}
    request = HandoffRequest(source=GENERAL, target=TECHNICAL, reason="line drops", payload=payload,
                             trigger="tool", tool_call_id="call_1")
    update, _ = run_gate({"pending_handoff": request, "case_file": {}, "hops": 0})
    [record] = records_of(update)
    assert record.rejection is not None and record.rejection.code == "invalid_payload"
    assert re.search(r"limit|at most", record.rejection.message)
    assert len(record.rejection.message) < 500
    assert "case_file" not in update and update["active_agent"] == GENERAL


@cache
def baseline_case_file() -> dict[str, Any]:
    """What intake alone writes on the turn the transfer test sends."""
    session = compile_memory(build_customer_service_graph(model=ScriptedChatModel(default="Hello.")))
    config = {"configurable": {"thread_id": "baseline"}}
    session.invoke({"messages": [HumanMessage(content=TRANSFER_TURN)]}, config)
    return session.get_state(config).values["case_file"]


TRANSFER_TURN = "Hello there"


@settings(PROPERTY, max_examples=30)
@given(target=any_name, args=st.dictionaries(st.text(max_size=12), JSON, max_size=5)
       | st.just({}) | payloads(TECHNICAL) | payloads(BILLING))
def test_a_transfer_call_with_any_arguments_leaves_a_valid_history(target: str, args: dict[str, Any]) -> None:
    """Through the compiled graph: the model calls transfer_to_<anything> with any arguments."""
    model = ScriptedChatModel(
        scripts={GENERAL: [calls(tool_call(f"transfer_to_{target}", args, "call_transfer")),
                           "I can help you with that myself."]},
        default="Happy to help.",
    )
    graph = compile_memory(build_customer_service_graph(model=model))
    config = {"configurable": {"thread_id": "fuzz"}}

    graph.invoke({"messages": [HumanMessage(content=TRANSFER_TURN)]}, config)

    values = graph.get_state(config).values
    assert values["active_agent"] in SPECS and values.get("pending_handoff") is None
    assert_tool_calls_answered(values["messages"])
    [record] = records_of(values)
    if record.outcome == "accepted":
        assert values["active_agent"] == target
    else:
        assert record.rejection is not None and record.rejection.code in REJECTION_CODES
        assert values["active_agent"] == GENERAL
        assert values["case_file"] == baseline_case_file()
        assert not values.get("briefing")



@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1, {"n": 10**30}]])
def test_a_transfer_call_with_a_number_beyond_64_bits_is_rejected_not_a_crash(value: Any) -> None:
    args = {"reason": "line drops", "summary": "", "account_id": value, "symptoms": "drops nightly"}
    model = ScriptedChatModel(
        scripts={GENERAL: [calls(tool_call(f"transfer_to_{TECHNICAL}", args, "call_transfer")),
                           "I can help you with that myself."]},
        default="Happy to help.",
    )
    graph = compile_memory(build_customer_service_graph(model=model))
    config = {"configurable": {"thread_id": "big-number"}}

    graph.invoke({"messages": [HumanMessage(content=TRANSFER_TURN)]}, config)

    values = graph.get_state(config).values
    [record] = records_of(values)
    assert record.rejection is not None and record.rejection.code == "invalid_payload"
    assert values["active_agent"] == GENERAL
    assert_tool_calls_answered(values["messages"])


def assert_tool_calls_answered(messages: list[BaseMessage]) -> None:
    """Every tool call in ``messages`` has exactly one later ToolMessage answering it."""
    for i, message in enumerate(messages):
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                answers = [m for m in messages[i + 1:]
                           if isinstance(m, ToolMessage) and m.tool_call_id == call["id"]]
                assert len(answers) == 1, f"tool call {call['name']} answered {len(answers)} times"


# --- the case file --------------------------------------------------------------------------------

facts = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]) | st.text(max_size=4),
                        JSON | st.lists(st.integers(0, 5), max_size=4), max_size=5)


@PROPERTY
@given(left=st.none() | facts, right=st.none() | facts)
def test_merge_case_file_never_drops_a_known_fact(
    left: dict[str, Any] | None, right: dict[str, Any] | None
) -> None:
    left_before, right_before = copy.deepcopy(left), copy.deepcopy(right)

    merged = merge_case_file(left, right)

    assert (left, right) == (left_before, right_before), "the reducer changed its inputs"
    old, new = left or {}, right or {}
    for key, value in old.items():
        assert key in merged
        update = new.get(key)
        if update is None:
            assert merged[key] == value
        elif isinstance(value, list) and isinstance(update, list):
            assert merged[key][:len(value)] == value
            assert all(item in merged[key] for item in update)
    for key, value in new.items():
        if value is not None and not isinstance(old.get(key), list):
            assert merged[key] == value
    assert set(merged) == set(old) | {k for k, v in new.items() if v is not None}


def field_is_valid(current: dict[str, Any], name: str, value: Any) -> bool:
    """Whether SupportCaseFile takes ``name=value`` on its own on top of ``current``."""
    try:
        SupportCaseFile.model_validate(merge_case_file(current, {name: value}))
    except ValidationError:
        return False
    return True


case_file_fields = st.sampled_from(sorted(SupportCaseFile.model_fields))
updates = st.dictionaries(
    case_file_fields | st.text(max_size=10),
    JSON | account_ids | invoice_ids | st.lists(st.text(max_size=6), max_size=3) | st.floats(-5, 5),
    max_size=6,
)


@PROPERTY
@given(current=case_files, changes=updates)
def test_checked_update_validates_or_names_every_bad_field(
    current: dict[str, Any], changes: dict[str, Any]
) -> None:
    known = {k: v for k, v in changes.items() if k in SupportCaseFile.model_fields}
    bad = sorted(k for k, v in known.items() if not field_is_valid(current, k, v))
    try:
        accepted = checked_update(SupportCaseFile, current, changes)
    except CaseFileError as exc:
        assert bad, f"refused an update whose every field is valid: {exc}"
        for name in bad:
            assert re.search(rf"\b{re.escape(name)}\b", str(exc)), f"{name} not named in {exc}"
        return
    assert not bad, f"accepted bad fields {bad}"
    stale = {fact: False for fact, subject in SupportCaseFile.bound_facts.items()
             if current.get(fact) and known.get(fact) is None
             and known.get(subject) is not None and known[subject] != current.get(subject)}
    assert accepted == {**known, **stale}, "a known field was dropped or changed, or a stale fact kept"
    merged = merge_case_file(current, accepted)
    SupportCaseFile.model_validate(merged)
    assert all(k in merged for k in current), "a fact of the case file was dropped"


@PROPERTY
@example(current={}, changes={"amount": float("inf")})
@given(current=case_files, changes=st.dictionaries(case_file_fields, st.floats() | JSON, max_size=4))
def test_what_checked_update_accepts_is_plain_json(current: dict[str, Any], changes: dict[str, Any]) -> None:
    try:
        accepted = checked_update(SupportCaseFile, current, changes)
    except CaseFileError:
        return
    json.dumps(merge_case_file(current, accepted), allow_nan=False)


# --- the state models and reducers ----------------------------------------------------------------


@PROPERTY
@given(record=records)
def test_a_handoff_record_reads_back_from_the_journal_as_written(record: HandoffRecord) -> None:
    journal = Journal(InMemoryStore(), "thread")
    journal.append_record(0, record)
    assert journal.records(1) == [record]
    assert HandoffRecord.model_validate_json(record.model_dump_json()) == record


@PROPERTY
@given(raw=st.dictionaries(st.sampled_from(list(HandoffRequest.model_fields)) | st.text(max_size=6),
                           JSON | st.text(max_size=10), max_size=8))
def test_a_handoff_request_from_any_dict_is_valid_or_a_validation_error(raw: dict[str, Any]) -> None:
    try:
        request = HandoffRequest.model_validate(raw)
    except ValidationError as exc:
        assert exc.errors()
        return
    assert isinstance(request.source, str) and isinstance(request.target, str)
    assert request.trigger in get_args(TriggerKind)
    assert isinstance(request.payload, dict)


def turn(draw: st.DrawFn, number: int) -> list[AnyMessage]:
    """One user turn: the user's message, then replies and tool calls each followed by their results."""
    messages: list[AnyMessage] = [HumanMessage(content=f"user {number}", id=f"h{number}")]
    for step in range(draw(st.integers(0, 5))):
        ids = [f"t{number}.{step}.{k}" for k in range(draw(st.integers(0, 3)))]
        messages.append(AIMessage(content="" if ids else f"reply {number}.{step}", id=f"a{number}.{step}",
                                  tool_calls=[{"name": "tool", "args": {}, "id": i} for i in ids]))
        messages.extend(ToolMessage(content="ok", tool_call_id=i, id=f"r{i}") for i in ids)
    return messages


@st.composite
def conversations(draw: st.DrawFn) -> list[list[AnyMessage]]:
    """Turns of a well-formed conversation (every tool result follows its call in the same turn)."""
    return [turn(draw, n) for n in range(draw(st.integers(0, 8)))]


def assert_window(result: list[AnyMessage], merged: list[AnyMessage]) -> None:
    """The window's promises about ``result``, the reducer's answer for ``merged``."""
    ids = [m.id for m in merged]
    assert [m.id for m in result] == ids[len(ids) - len(result):], "not a suffix of the conversation"
    humans = [i for i, m in enumerate(merged) if isinstance(m, HumanMessage)]
    current = humans[-1] if humans else 0
    assert len(result) >= len(merged) - current, "the current turn was cut"
    if len(result) > MESSAGE_WINDOW:
        assert len(result) == len(merged) - current, "grew past the window beyond the current turn"
    if len(result) < len(merged):
        assert isinstance(result[0], HumanMessage), "cut somewhere other than a user turn"
    called = {c["id"] for m in result if isinstance(m, AIMessage) for c in m.tool_calls}
    orphans = [m.tool_call_id for m in result if isinstance(m, ToolMessage) and m.tool_call_id not in called]
    assert not orphans, f"tool results without their call: {orphans}"


@PROPERTY
@given(turns=conversations(), split=st.integers(0, 200), single=st.booleans())
def test_window_messages_keeps_tool_pairs_and_the_current_turn(
    turns: list[list[AnyMessage]], split: int, single: bool
) -> None:
    flat = [m for t in turns for m in t]
    left, right = flat[:split], flat[split:]
    update: Any = right[0] if single and len(right) == 1 else right

    result = window_messages(left, update)

    assert_window(result, add_messages(left, update))


@PROPERTY
@given(turns=conversations())
def test_window_messages_turn_by_turn_equals_one_cut(turns: list[list[AnyMessage]]) -> None:
    state: list[AnyMessage] = []
    everything: list[AnyMessage] = []
    for messages in turns:
        everything = add_messages(everything, messages)
        state = window_messages(state, messages)
        assert_window(state, everything)
    assert [m.id for m in state] == [m.id for m in window_messages([], everything)]


@PROPERTY
@given(left=st.none() | st.lists(records, max_size=RECORD_WINDOW + 3),
       right=records | st.lists(records, max_size=RECORD_WINDOW + 3))
def test_append_records_keeps_the_last_window_in_order(
    left: list[HandoffRecord] | None, right: HandoffRecord | list[HandoffRecord]
) -> None:
    new = right if isinstance(right, list) else [right]
    result = append_records(left, right)
    assert all(isinstance(r, dict) for r in result), "the state keeps records as plain data"
    assert records_of({"handoffs": result}) == [*(left or []), *new][-RECORD_WINDOW:]
    assert len(result) <= RECORD_WINDOW


usage = st.dictionaries(st.sampled_from([GENERAL, TECHNICAL, BILLING, HUMAN]),
                        st.dictionaries(st.sampled_from(["model_calls", "prompt_tokens", "failures"]),
                                        st.integers(0, 10_000), max_size=3), max_size=4)


@PROPERTY
@given(left=st.none() | usage, right=st.none() | usage)
def test_merge_usage_adds_every_counter(
    left: dict[str, dict[str, int]] | None, right: dict[str, dict[str, int]] | None
) -> None:
    before = copy.deepcopy((left, right))
    merged = merge_usage(left, right)
    assert (left, right) == before, "the reducer changed its inputs"
    assert merged == merge_usage(right, left)
    for side in (left or {}, right or {}):
        for agent, counts in side.items():
            for name in counts:
                total = sum((s or {}).get(agent, {}).get(name, 0) for s in (left, right))
                assert merged[agent][name] == total


def test_strategies_reach_every_outcome() -> None:
    """The gate property is only as good as its inputs: they reach acceptance and every rejection
    the gate can make (``receiver_failed`` is the agent node's, after the gate)."""
    seen: set[str] = set()

    @settings(PROPERTY, max_examples=300)
    @given(state=gate_states())
    def collect(state: dict[str, Any]) -> None:
        update, _ = run_gate(state)
        [record] = records_of(update)
        seen.add(record.rejection.code if record.rejection else "accepted")

    collect()
    assert REJECTION_CODES - {"receiver_failed"} | {"accepted"} <= seen, seen



@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), [1.0, {"x": float("nan")}]],
                         ids=["nan", "inf", "-inf", "nested-nan"])
def test_a_tool_call_with_a_non_finite_number_is_stored_on_postgresql(value: Any) -> None:
    from handoff.graphs.persistence import open_persistence
    from tests.test_persistence_factory import POSTGRES_URL

    args = {"invoice_id": "INV-2002", "amount": value}
    model = ScriptedChatModel(
        scripts={GENERAL: [calls(tool_call("lookup_account", {"account_id": value}, "call_nan")),
                           "Could you give me your account number?"]},
        default="Happy to help.",
    )
    config = {"configurable": {"thread_id": f"non-finite-{uuid4().hex}"}}
    with open_persistence(POSTGRES_URL) as p:
        graph = build_customer_service_graph(model=model).compile(checkpointer=p.checkpointer, store=p.store)
        graph.invoke({"messages": [HumanMessage(content=f"refund {args}")]}, config)
        transcript = Journal(p.store, config["configurable"]["thread_id"]).messages(
            graph.get_state(config).values["transcript_len"])
    call = next(m for m in transcript if isinstance(m, AIMessage) and m.tool_calls)
    assert isinstance(call.tool_calls[0]["args"]["account_id"], str | list)
    assert "nan" in json.dumps(call.tool_calls[0]["args"]) or "inf" in json.dumps(call.tool_calls[0]["args"])
    assert_tool_calls_answered(transcript)
