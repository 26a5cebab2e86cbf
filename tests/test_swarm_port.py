"""The porting guide's claim (docs/from-langgraph-swarm.md): a two-agent langgraph-swarm app, ported,
answers each turn with the same agent and the same words, and its handoffs now pass the gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph_swarm import create_handoff_tool, create_swarm

from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec
from handoff.graphs.builder import build_handoff_graph
from handoff.state import records_of

TURNS = ["what's 3 + 5?", "i'd like to speak to Bob", "who are you?", "back to Alice please", "and 2 + 2?"]


def script() -> list[Any]:
    """The model's replies in call order, the same for both apps."""
    return [
        calls(tool_call("add", {"a": 3, "b": 5}, "c1")), "3 + 5 is 8.",
        calls(tool_call("transfer_to_bob", {}, "c2")), "Ahoy! Bob here.",
        "Still Bob, matey.",
        calls(tool_call("transfer_to_alice", {}, "c3")), "Alice again.",
        calls(tool_call("add", {"a": 2, "b": 2}, "c4")), "2 + 2 is 4.",
    ]


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def agents(model: ScriptedChatModel, alice_name: str, bob_name: str) -> tuple[Any, Any]:
    alice = create_agent(model, [add, create_handoff_tool(agent_name=bob_name)],
                         system_prompt="You are Alice, an addition expert.", name=alice_name)
    bob = create_agent(model, [create_handoff_tool(agent_name=alice_name,
                                                   description="Transfer to Alice, she can help with math")],
                       system_prompt="You are Bob, you speak like a pirate.", name=bob_name)
    return alice, bob


def scripted() -> ScriptedChatModel:
    replies = script()
    reply: Callable[[list[BaseMessage]], AIMessage | str] = lambda _: replies.pop(0)  # noqa: E731
    return ScriptedChatModel(default=reply)


def play(app: Any, speaker: Callable[[dict[str, Any]], str]) -> list[tuple[str, str]]:
    config = {"configurable": {"thread_id": "1"}}
    heard = []
    for text in TURNS:
        out = app.invoke({"messages": [HumanMessage(text)]}, config)
        last = out["messages"][-1]
        heard.append((speaker(app.get_state(config).values), last.text))
    return heard


def test_the_ported_swarm_app_answers_like_the_original_and_records_its_handoffs() -> None:
    alice, bob = agents(scripted(), "alice", "bob")
    swarm = create_swarm([alice, bob], default_active_agent="alice").compile(checkpointer=InMemorySaver())
    original = play(swarm, lambda values: values.get("active_agent", "alice"))  # set at its first handoff

    model = scripted()
    alice, bob = agents(model, "alice", "bob")
    specs = [
        AgentSpec(name="alice", title="Alice", description="An addition expert.",
                  instructions="You are Alice, an addition expert.", handoffs=("bob",), agent=alice),
        AgentSpec(name="bob", title="Bob", description="Speaks like a pirate.",
                  instructions="You are Bob, you speak like a pirate.", handoffs=("alice",), agent=bob),
    ]
    port = build_handoff_graph(specs, default_agent="alice", model=model).compile(checkpointer=InMemorySaver())
    ported = play(port, lambda values: values["active_agent"])

    assert ported == original == [
        ("alice", "3 + 5 is 8."), ("bob", "Ahoy! Bob here."), ("bob", "Still Bob, matey."),
        ("alice", "Alice again."), ("alice", "2 + 2 is 4."),
    ]
    state = port.get_state({"configurable": {"thread_id": "1"}}).values
    assert [(r.source, r.target, r.outcome) for r in records_of(state)] == [
        ("alice", "bob", "accepted"), ("bob", "alice", "accepted")]
