"""Triggers and criteria: rules, case-file predicates, classifiers, escalation, build-time checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import (
    CaseFileTrigger,
    ClassifierTrigger,
    KeywordTrigger,
    TriggerContext,
    first_firing,
)
from handoff.graphs.builder import GraphBuildError, build_handoff_graph
from handoff.graphs.escalation import pending_escalation
from handoff.graphs.gate import GatePolicy
from handoff.graphs.session import HandoffSession
from handoff.state import HandoffRequest, plain_request, request_of
from tests.helpers import agents_in, compile_memory, support_session


def spec(name: str, handoffs: tuple[str, ...] = (), **kw) -> AgentSpec:
    return AgentSpec(name=name, title=name.title(), description=f"{name} agent",
                     instructions=f"You are {name}.", handoffs=handoffs, **kw)


def ctx(message: str = "", **case) -> TriggerContext:
    return TriggerContext(source="a", message=message, case_file=case)


def test_keyword_and_pattern_triggers_match_words_not_substrings() -> None:
    trigger = KeywordTrigger(name="money", target="b", reason="money", keywords=("bill",),
                             patterns=(r"\bINV-\d+",))
    assert trigger.request(ctx("my bill is wrong")) is not None
    assert trigger.request(ctx("about INV-2002")) is not None
    assert trigger.request(ctx("I use a billboard")) is None


def test_case_file_predicate_fires_on_two_failed_fixes() -> None:
    trigger = CaseFileTrigger(name="two_failed_fixes", target="b", reason="fixes failed",
                              predicate=lambda cf: len(cf.get("steps_tried", [])) >= 2)
    assert trigger.request(ctx(steps_tried=["reboot"])) is None
    request = trigger.request(ctx(steps_tried=["reboot", "reset"]))
    assert request is not None and request.trigger == "rule" and request.trigger_name == "two_failed_fixes"


def test_classifier_trigger_respects_its_threshold_and_runs_after_rules() -> None:
    classifier = ClassifierTrigger(name="intent", target="b", reason="classified",
                                   classifier=lambda text: ("b", 0.9 if "money" in text else 0.4),
                                   threshold=0.8)
    rule = KeywordTrigger(name="rule", target="c", reason="rule", keywords=("money",))
    assert classifier.request(ctx("hello")) is None
    request = classifier.request(ctx("money please"))
    assert request is not None and request.trigger == "classifier"
    first = first_firing([classifier, rule], ctx("money please"))
    assert first is not None and first.trigger_name == "rule"


def test_edge_not_allowed_is_rejected_and_build_rejects_unknown_targets() -> None:
    model = ScriptedChatModel(scripts={
        "front": [calls(tool_call("transfer_to_middle", {"reason": "go on"}))],
        "middle": [calls(tool_call("transfer_to_front", {"reason": "back"})), "Middle answers."],
    })
    agents = [spec("front", ("middle",)), spec("middle", ("back",)), spec("back")]
    session = HandoffSession(compile_memory(build_handoff_graph(agents, default_agent="front", model=model)))
    result = session.send("hi")
    assert [r.rejection.code for r in result.handoffs if r.rejection] == ["edge_not_allowed"]
    assert "middle may not hand to front" in result.handoffs[-1].rejection.message
    assert result.active_agent == "middle"

    with pytest.raises(GraphBuildError, match="unknown agent 'nobody'"):
        build_handoff_graph([spec("front", ("nobody",))], default_agent="front", model=model)
    with pytest.raises(GraphBuildError, match="default agent"):
        build_handoff_graph([spec("front")], default_agent="x", model=model)


def test_classifier_trigger_routes_before_the_model_runs() -> None:
    trigger = ClassifierTrigger(name="intent", target="billing_desk", reason="classifier says billing",
                                classifier=lambda text: ("billing_desk", 0.95 if "invoice" in text else 0.1))
    model = ScriptedChatModel(scripts={"billing_desk": ["Billing desk here."]})
    agents = [spec("front", ("billing_desk",), triggers=(trigger,)), spec("billing_desk")]
    session = HandoffSession(compile_memory(build_handoff_graph(agents, default_agent="front", model=model)))
    result = session.send("where is my invoice?")
    assert agents_in(result.path) == ["billing_desk"]
    assert model.calls_by("front") == []
    assert result.handoffs[0].request.trigger == "classifier"


@pytest.mark.parametrize("message", ["I want a real person now", "This is ridiculous!!!"])
def test_escalation_triggers_pause_for_a_person(message: str) -> None:
    model = ScriptedChatModel(default="should not be called")
    session = support_session(model)
    session.send(message)
    assert pending_escalation(session.graph, session.config) is not None
    assert model.calls == []


def test_spent_hop_budget_escalates_when_the_fallback_is_a_person() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist",
                                  {"reason": "slow line", "account_id": "ACC-1001", "symptoms": "slow"}))],
        TECHNICAL: [calls(tool_call("transfer_to_billing_expert", {"reason": "billing too", "account_id": "ACC-1001"}))],
    })
    session = support_session(model, policy=GatePolicy(max_hops_per_turn=1, fallback="human"))
    result = session.send("ACC-1001 slow internet")
    assert result.handoffs[-1].rejection is not None
    assert result.handoffs[-1].rejection.code == "hop_budget_spent"
    escalation = pending_escalation(session.graph, session.config)
    assert escalation is not None and escalation.source == TECHNICAL
    assert BILLING not in agents_in(result.path)


def test_fallback_model_answers_when_the_primary_fails() -> None:
    primary = ScriptedChatModel(scripts={"front": [ValueError("primary is down")]})
    backup = ScriptedChatModel(scripts={"front": ["Backup model here."]})
    graph = build_handoff_graph([spec("front")], default_agent="front", model=primary, fallback_model=backup)
    result = HandoffSession(compile_memory(graph)).send("hello")
    assert result.reply == "Backup model here."
    assert len(primary.calls) == 1 and len(backup.calls) == 1


def test_general_answers_general_questions_without_handoff() -> None:
    model = ScriptedChatModel(scripts={GENERAL: ["We are open 9 to 5."]})
    result = support_session(model).send("What are your opening hours?")
    assert result.handoffs == [] and agents_in(result.path) == [GENERAL]


def test_intake_notes_sentiment_in_the_case_file() -> None:
    from handoff.graphs.intake import sentiment_of

    assert [sentiment_of(t) for t in ("hello", "it is still not working, again", "this is outrageous")] == [
        "calm", "frustrated", "angry"]
    model = ScriptedChatModel(scripts={GENERAL: ["Sorry to hear that."]})
    result = support_session(model).send("My line is still not working, again")
    assert result.case_file["sentiment"] == "frustrated"


def test_a_request_keeps_its_score_as_plain_json_and_refuses_an_impossible_one() -> None:
    request = HandoffRequest(source="a", target="b", reason="meaning", trigger="semantic",
                             trigger_name="sounds_like_money", score=0.4321)
    stored = plain_request(None, request)
    assert stored["score"] == 0.4321 and stored["trigger"] == "semantic"
    assert request_of({"pending_handoff": stored}) == request
    for impossible in (1.5, float("nan")):
        with pytest.raises(ValidationError, match="score"):
            HandoffRequest(source="a", target="b", reason="r", trigger="semantic", score=impossible)
