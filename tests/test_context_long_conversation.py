"""A 100-turn conversation with many handoffs: bounded prompts, every fact delivered, tool calls paired."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import (
    BILLING,
    GENERAL,
    TECHNICAL,
    SupportCaseFile,
    customer_service_agents,
)
from handoff.agents.prompt_markers import BRIEFING_MARKER, CASE_FILE_MARKER, JUST_RECEIVED
from handoff.agents.spec import ContextPolicy
from handoff.graphs.briefing import prompt_tokens
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.session import HandoffSession
from tests.helpers import compile_memory
from tests.support.long_conversation import scripted_model, user_lines

POLICIES = {
    GENERAL: ContextPolicy(mode="window", last_messages=6, token_budget=1100),
    TECHNICAL: ContextPolicy(mode="full", token_budget=1300),
    BILLING: ContextPolicy(mode="filtered", last_messages=8, token_budget=1200),
}
TURNS = 100


def facts(case_file: dict[str, Any]) -> dict[str, Any]:
    """Case-file fields that hold a value, as the prompt renders them."""
    return json.loads(json.dumps({k: v for k, v in case_file.items() if v not in (None, "", [])}))


def prompt_case_file(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    system = str(messages[0].content)
    line = next(x for x in system.splitlines() if x.startswith(CASE_FILE_MARKER))
    return json.loads(line.removeprefix(CASE_FILE_MARKER))


def unpaired(messages: Sequence[BaseMessage]) -> list[str]:
    """Problems a provider would reject: calls without results, results without calls, gaps."""
    problems: list[str] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        if isinstance(m, ToolMessage):
            problems.append(f"tool result {m.tool_call_id} without its call just before it")
        if isinstance(m, AIMessage) and m.tool_calls:
            wanted = {tc["id"] for tc in m.tool_calls}
            j = i + 1
            while j < len(messages) and isinstance(messages[j], ToolMessage):
                wanted.discard(messages[j].tool_call_id)
                j += 1
            problems.extend(f"tool call {c} has no result" for c in sorted(wanted))
            i = j
            continue
        i += 1
    return problems


@pytest.fixture(scope="module")
def conversation() -> dict[str, Any]:
    """Play the conversation once; the tests below read what happened."""
    model = scripted_model()
    specs = [s.model_copy(update={"context": POLICIES[s.name]}) for s in customer_service_agents(BackOffice())]
    graph = compile_memory(build_handoff_graph(specs, default_agent=GENERAL, case_file_model=SupportCaseFile,
                                               model=model))
    session = HandoffSession(graph, "long")
    turns = []
    for line in user_lines(TURNS):
        before = session.result().case_file if turns else {}
        start = len(model.calls)
        result = session.send(line.text)
        turns.append({"line": line, "before": before, "after": result.case_file,
                      "calls": model.calls[start:], "result": result})
    return {"turns": turns, "records": session.records(), "model": model}


def test_the_script_really_hands_off_and_runs_long(conversation: dict[str, Any]) -> None:
    records = conversation["records"]
    assert len(conversation["turns"]) == TURNS
    assert len(records) >= 12
    assert all(r.outcome == "accepted" for r in records)
    assert {r.request.trigger for r in records} == {"tool", "rule"}
    for turn in conversation["turns"]:
        assert turn["result"].active_agent == turn["line"].answered_by, turn["line"].number


def test_every_model_call_stays_within_the_receivers_budget(conversation: dict[str, Any]) -> None:
    calls = conversation["model"].calls
    assert len(calls) > TURNS
    budgets_reached = set()
    for call in calls:
        size = prompt_tokens(call["messages"])
        assert size <= POLICIES[call["agent"]].token_budget, (call["agent"], size)
        if size > 0.7 * POLICIES[call["agent"]].token_budget:
            budgets_reached.add(call["agent"])
    assert budgets_reached == set(POLICIES), "the budgets should bind, or this test proves little"


def test_every_case_file_fact_reaches_every_later_model_call(conversation: dict[str, Any]) -> None:
    for turn in conversation["turns"][1:]:
        known = facts(turn["before"])
        for call in turn["calls"]:
            shown = prompt_case_file(call["messages"])
            for key, value in known.items():
                assert key in shown, (turn["line"].number, call["agent"], key)
                assert shown[key] == value or shown[key] == facts(turn["after"]).get(key), key
    final = facts(conversation["turns"][-1]["after"])
    assert {"account_id", "customer_name", "identity_verified", "product", "region", "problem_summary",
            "steps_tried", "service_status", "invoice_id", "amount", "refund_ids"} <= set(final)
    assert final["account_id"] == "ACC-1001"  # stated by the user in turn 1


def test_each_receiver_gets_the_envelope_on_its_first_call(conversation: dict[str, Any]) -> None:
    for turn in conversation["turns"]:
        if not turn["line"].handoff:
            continue
        receiver = turn["line"].answered_by
        first = next(c for c in turn["calls"] if c["agent"] == receiver)
        system = str(first["messages"][0].content)
        record = next(r for r in reversed(conversation["records"]) if r.target == receiver
                      and r.request.summary.startswith(("User said:",)))
        assert BRIEFING_MARKER in system and JUST_RECEIVED in system
        assert record.request.reason in system
        assert facts(turn["after"]).keys() >= prompt_case_file(first["messages"]).keys()


def test_no_model_call_sees_an_unpaired_tool_call(conversation: dict[str, Any]) -> None:
    tool_calls_seen = 0
    for call in conversation["model"].calls:
        messages = call["messages"]
        assert isinstance(messages[0], SystemMessage)
        assert unpaired(messages) == [], call["agent"]
        tool_calls_seen += sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))
    assert tool_calls_seen > 20, "tool calls should appear in the history, paired"


def test_the_users_current_message_is_always_in_the_prompt(conversation: dict[str, Any]) -> None:
    for turn in conversation["turns"]:
        for call in turn["calls"]:
            last_user = [m for m in call["messages"] if isinstance(m, HumanMessage)][-1]
            assert turn["line"].text.startswith(str(last_user.content).removesuffix(" [...]"))
