"""The receiver's prompt: context policies, token budget, never-trimmed facts, paired tool calls."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from handoff.agents.prompt_markers import BRIEFING_MARKER, CASE_FILE_MARKER, EARLIER_MARKER
from handoff.agents.spec import AgentSpec, ContextPolicy
from handoff.graphs.briefing import EARLIER_CHARS, build_prompt, ensure_paired, prompt_tokens, summarise


@tool
def look_up(query: str) -> str:
    """Look something up."""
    return query


def agent(mode: str = "window", *, last: int = 8, budget: int = 3000, tools: bool = False) -> AgentSpec:
    return AgentSpec(name="receiver", title="Receiver", description="Takes conversations over.",
                     instructions="You take over conversations.", tools=(look_up,) if tools else (),
                     context=ContextPolicy(mode=mode, last_messages=last, token_budget=budget))


def turn(n: int, *, by: str = "receiver", tool_id: str | None = None, size: int = 40) -> list[BaseMessage]:
    """One user turn; with ``tool_id`` the agent calls a tool and gets its result."""
    out: list[BaseMessage] = [HumanMessage(f"question {n} " + "q" * size, id=f"h{n}")]
    if tool_id:
        out.append(AIMessage("", name=by, id=f"c{n}",
                             tool_calls=[{"name": "look_up", "args": {"query": str(n)}, "id": tool_id}]))
        out.append(ToolMessage(f"result {n}", tool_call_id=tool_id, id=f"t{n}"))
    out.append(AIMessage(f"answer {n} " + "a" * size, name=by, id=f"a{n}"))
    return out


def test_window_policy_shows_the_last_turns_and_summarises_earlier_ones() -> None:
    window = [m for n in range(1, 6) for m in turn(n)]
    prompt = build_prompt(agent("window", last=4), targets={}, state={"messages": window},
                          earlier=[HumanMessage("the very first thing I said")])
    assert [m.id for m in prompt[1:]] == ["h4", "a4", "h5", "a5"]
    summary = str(prompt[0].content).split(EARLIER_MARKER, 1)[1]
    assert "the very first thing I said" in summary
    assert "question 3" in summary and "question 4" not in summary


def test_filtered_policy_drops_other_agents_tool_chatter_but_keeps_their_words() -> None:
    window = [*turn(1, by="sender", tool_id="x1"), *turn(2, tool_id="mine")]
    prompt = build_prompt(agent("filtered"), targets={}, state={"messages": window})
    ids = [m.id for m in prompt[1:]]
    assert "c1" not in ids and "t1" not in ids, "the sender's tool call and result are hidden"
    assert "a1" in ids, "what the sender told the user stays"
    assert {"c2", "t2"} <= set(ids), "the receiver's own tool use stays"


def test_full_policy_shows_the_whole_window_when_it_fits() -> None:
    window = [m for n in range(1, 7) for m in turn(n)]
    prompt = build_prompt(agent("full"), targets={}, state={"messages": window})
    assert [m.id for m in prompt[1:]] == [m.id for m in window]
    assert EARLIER_MARKER not in str(prompt[0].content)


def test_budget_cuts_whole_old_turns_and_keeps_every_case_file_fact() -> None:
    case_file = {f"fact_{i}": f"value {i} " + "v" * 30 for i in range(25)}
    window = [m for n in range(1, 7) for m in turn(n, size=400, tool_id=f"t{n}")]
    spec = agent("full", budget=1200)
    prompt = build_prompt(spec, targets={}, state={"messages": window, "case_file": case_file,
                                                   "briefing": "From Sender: reason | Summary: all of it"})
    assert prompt_tokens(prompt) <= spec.context.token_budget
    system = str(prompt[0].content)
    shown = json.loads(system.split(CASE_FILE_MARKER, 1)[1].split("\n", 1)[0])
    assert shown == case_file
    assert f"{BRIEFING_MARKER} From Sender: reason" in system
    assert prompt[1].id is not None and prompt[1].id.startswith("h"), "history starts on a user turn"
    assert prompt[-1].id == "a6" and len(prompt) < len(window) + 1


def test_an_oversized_current_message_is_shortened_not_dropped() -> None:
    huge = HumanMessage("please read all of this " + "x" * 20_000, id="big")
    spec = agent("window", budget=800)
    prompt = build_prompt(spec, targets={}, state={"messages": [*turn(1), huge]})
    assert prompt_tokens(prompt) <= spec.context.token_budget
    assert prompt[-1].id == "big"
    assert str(prompt[-1].content).startswith("please read all of this")
    assert str(prompt[-1].content).endswith("[...]")


def test_this_turns_tool_rounds_fit_inside_the_budget() -> None:
    spec = agent("full", budget=1000, tools=True)
    window = [*(m for n in range(1, 5) for m in turn(n, size=300)), HumanMessage("question 5", id="h5")]
    current = [AIMessage("", name="receiver", id="r1",
                         tool_calls=[{"name": "look_up", "args": {"query": "q"}, "id": "now"}]),
               ToolMessage("r" * 6000, tool_call_id="now", id="r2")]
    first_round = build_prompt(spec, targets={}, state={"messages": window})
    next_round = build_prompt(spec, targets={}, state={"messages": window}, current=current)
    assert prompt_tokens(first_round) <= spec.context.token_budget * 0.8 + 1, "room is kept for tool results"
    assert prompt_tokens(next_round) <= spec.context.token_budget
    assert [m.id for m in next_round[-2:]] == ["r1", "r2"]
    assert next_round[-3].id == "h5", "the user's question stays right before this turn's rounds"


def test_ensure_paired_drops_calls_without_results_and_results_without_calls() -> None:
    both = AIMessage("", id="ai", tool_calls=[
        {"name": "look_up", "args": {}, "id": "answered"}, {"name": "look_up", "args": {}, "id": "lost"}])
    messages = [ToolMessage("orphan", tool_call_id="gone", id="orphan"), both,
                ToolMessage("ok", tool_call_id="answered", id="ok"),
                AIMessage("", id="silent", tool_calls=[{"name": "look_up", "args": {}, "id": "never"}])]
    paired = ensure_paired(messages)
    assert [m.id for m in paired] == ["ai", "ok"]
    assert [tc["id"] for tc in paired[0].tool_calls] == ["answered"]


def test_summary_is_bounded_and_keeps_the_newest_turns() -> None:
    history = [m for n in range(1, 40) for m in turn(n, size=100)]
    summary = summarise(history)
    assert len(summary) <= EARLIER_CHARS
    assert "answer 39" in summary and "question 1 " not in summary
