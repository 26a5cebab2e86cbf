"""Handoff events: one schema for every outcome, on the custom stream, matching the stored records."""

from __future__ import annotations

import json
from typing import Any, get_args

from langchain_core.messages import HumanMessage

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec, InitContext
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.session import HandoffSession
from handoff.state import EventKind, HandoffEvent, HandoffRecord, InitResult
from tests.helpers import compile_memory, support_session

TECH = {"reason": "line keeps dropping", "summary": "evening drops", "account_id": "ACC-1001",
        "symptoms": "drops every evening"}
ALL_KINDS = {"requested", "accepted", "rejected", "failed", "initialised", "completed"}


def custom_events(session: HandoffSession, text: str) -> list[dict[str, Any]]:
    """The raw chunks of ``stream_mode="custom"`` for one user turn."""
    return [chunk for chunk in session.graph.stream({"messages": [HumanMessage(text)]}, session.config,
                                                    stream_mode="custom")]


def assert_event_matches_record(event: HandoffEvent, record: HandoffRecord) -> None:
    """An outcome event says what the stored record says."""
    expected = HandoffEvent.from_record(record)
    assert event.model_dump(exclude={"at"}) == expected.model_dump(exclude={"at"})


def test_the_schema_names_every_outcome_and_round_trips_as_json() -> None:
    assert set(get_args(EventKind)) == ALL_KINDS
    schema = HandoffEvent.model_json_schema()
    assert set(schema["properties"]["kind"]["enum"]) == ALL_KINDS
    assert set(schema["required"]) >= {"kind", "handoff_id", "source", "target", "reason", "trigger"}
    for kind in sorted(ALL_KINDS):
        event = HandoffEvent(kind=kind, handoff_id="h1", source="a", target="b", reason="r", trigger="tool")
        wire = json.loads(json.dumps(event.model_dump(mode="json")))
        assert wire["type"] == "handoff"
        assert HandoffEvent.model_validate(wire) == event


def test_an_accepted_handoff_streams_requested_initialised_accepted_then_completed() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH))],
        TECHNICAL: ["Looking at your line now."],
    })
    session = support_session(model)

    chunks = custom_events(session, "My internet drops every evening, account ACC-1001")

    events = [HandoffEvent.model_validate(c) for c in chunks]
    assert [e.kind for e in events] == ["requested", "initialised", "accepted", "completed"]
    [record] = session.records()
    assert {e.handoff_id for e in events} == {record.request.id}
    assert all((e.source, e.target, e.trigger) == (GENERAL, TECHNICAL, "tool") for e in events)
    assert record.init_result is not None
    assert events[1].detail == record.init_result.summary
    assert_event_matches_record(events[2], record)


def test_a_rejected_handoff_streams_requested_then_rejected_with_the_code() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", {"reason": "line drops"})),
                  "I need your account id first."],
    })
    session = support_session(model)

    events = session.send("My line drops").events

    assert [e.kind for e in events] == ["requested", "rejected"]
    [record] = session.records()
    assert record.outcome == "rejected" and record.rejection is not None
    assert events[1].detail.startswith("invalid_payload:")
    assert_event_matches_record(events[1], record)


def _broken_ledger(ctx: InitContext) -> InitResult:
    raise RuntimeError("ledger offline")


def test_a_handoff_whose_receiver_on_enter_raises_streams_failed() -> None:
    front = AgentSpec(name="front", title="Front desk", description="First contact.",
                      instructions="Greet people.", handoffs=("back",))
    back = AgentSpec(name="back", title="Back office", description="Paperwork.",
                     instructions="File things.", handoffs=("front",), on_enter=_broken_ledger)
    model = ScriptedChatModel(scripts={
        "front": [calls(tool_call("transfer_to_back", {"reason": "needs paperwork"})),
                  "The back office is unavailable; I will help you."],
    })
    session = HandoffSession(compile_memory(
        build_handoff_graph([front, back], default_agent="front", model=model, name="events-test")))

    result = session.send("I need a form filed")

    assert [e.kind for e in result.events] == ["requested", "failed"]
    [record] = result.handoffs
    assert record.outcome == "failed" and record.routed_to == "front"
    assert record.rejection is not None and record.rejection.code == "init_failed"
    assert "ledger offline" in result.events[1].detail
    assert_event_matches_record(result.events[1], record)
    assert result.active_agent == "front"


def test_completed_names_the_handoff_the_receiver_answered_even_after_its_own_refused_handoff() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH))],
        TECHNICAL: [calls(tool_call("transfer_to_billing_expert", {"reason": "a bill question"})),
                    "I will look at it myself."],
    })
    session = support_session(model)

    events = session.send("internet drops and a bill question, ACC-1001").events

    accepted = next(e for e in events if e.kind == "accepted")
    completed = [e for e in events if e.kind == "completed"]
    assert [e.handoff_id for e in completed] == [accepted.handoff_id]


def test_a_receiver_that_fails_after_acceptance_streams_failed() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH)), "Back with me."],
        TECHNICAL: [ValueError("model returned garbage")],
    })
    session = support_session(model)

    result = session.send("internet drops, ACC-1001")

    assert result.handoffs[-1].outcome == "failed"
    assert [e.kind for e in result.events][-1] == "failed"
    assert_event_matches_record(result.events[-1], result.handoffs[-1])


def test_rule_triggered_handoff_events_name_the_rule_trigger() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH))],
        TECHNICAL: ["Diagnostics look fine."],
        BILLING: ["I see two charges."],
    })
    session = support_session(model)
    session.send("internet drops, account ACC-1001")

    events = session.send("I was charged twice, I want a refund").events

    assert [e.kind for e in events] == ["requested", "initialised", "accepted", "completed"]
    assert {(e.source, e.target, e.trigger) for e in events} == {(TECHNICAL, BILLING, "rule")}
