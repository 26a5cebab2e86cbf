"""A turn no rule hands on is one node and one step checkpoint; the turn's first node takes the
user's message in exactly once, whatever runs after it (a receiver, a retry, a resumed person)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import KeywordTrigger
from handoff.graphs.boundary import InputRefused
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.escalation import answer_escalation, pending_escalation
from handoff.graphs.human import HUMAN, HumanAnswer
from handoff.graphs.journal import Journal
from handoff.graphs.session import HandoffSession
from tests.helpers import compile_memory, support_session, technical_handoff

RETURN_RULE = KeywordTrigger(name="return_words", target="desk", reason="returns", keywords=("return",))


def shop(model: ScriptedChatModel, **build: Any):
    """Two agents; the front's rule sends return words to the desk."""
    agents = [AgentSpec(name="front", title="Front", description="front desk", instructions="You are front.",
                        handoffs=("desk",), triggers=(RETURN_RULE,)),
              AgentSpec(name="desk", title="Desk", description="returns desk", instructions="You are desk.",
                        handoffs=("front",))]
    return compile_memory(build_handoff_graph(agents, default_agent="front", model=model, **build))


def turn_checkpoints(graph, thread_id: str, turn: int) -> list[Any]:
    """The checkpoints one user turn wrote, oldest first: from its input checkpoint to the next one."""
    history = list(reversed(list(graph.get_state_history({"configurable": {"thread_id": thread_id}}))))
    inputs = [i for i, s in enumerate(history) if s.metadata["source"] == "input"]
    end = inputs[turn] if turn < len(inputs) else len(history)
    return history[inputs[turn - 1]:end]


def transcript(graph, thread_id: str) -> list[BaseMessage]:
    values = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    return Journal(graph.store, thread_id).messages(values["transcript_len"])


def user_texts(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, HumanMessage)]


def floor_checkpoints_per_turn() -> int:
    """What a one-node LangGraph chat graph writes for one turn (the floor the benchmark compares with)."""
    def reply(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", "hi")]}

    floor = (StateGraph(MessagesState).add_node("chat", reply).add_edge(START, "chat").add_edge("chat", END)
             .compile(checkpointer=InMemorySaver()))
    config = {"configurable": {"thread_id": "floor"}}
    floor.invoke({"messages": [("user", "hello")]}, config)
    return len(list(floor.get_state_history(config)))


def test_a_turn_no_rule_hands_on_runs_only_the_agent_and_writes_the_floors_checkpoints() -> None:
    model = ScriptedChatModel(scripts={"front": ["Hello!", "Anything else?"]})
    graph = shop(model)
    session = HandoffSession(graph)
    first = session.send("Hi there")
    second = session.send("Where is my parcel?")

    assert first.path == ["front"] and second.path == ["front"]
    checkpoints = turn_checkpoints(graph, session.thread_id, 2)
    assert len(checkpoints) == floor_checkpoints_per_turn()
    assert [s.metadata["source"] for s in checkpoints] == ["input", "loop", "loop"]
    assert [s.next for s in checkpoints] == [("__start__",), ("front",), ()]
    values = checkpoints[-1].values
    assert values["turn"] == 2 and values["hops"] == 0 and values["active_agent"] == "front"
    assert values["taken_in"] == next(m.id for m in reversed(values["messages"]) if isinstance(m, HumanMessage))
    assert [str(m.content) for m in transcript(graph, session.thread_id)] == [
        "Hi there", "Hello!", "Where is my parcel?", "Anything else?"]


def test_a_turn_a_rule_hands_on_goes_through_intake_and_the_gate() -> None:
    model = ScriptedChatModel(scripts={"desk": ["Let's get that return started."]})
    graph = shop(model)
    session = HandoffSession(graph)
    result = session.send("I want to return my order")

    assert result.path == ["intake", "handoff_gate", "desk"]
    assert model.calls_by("front") == [], "the rule hands on before the front's model runs"
    [record] = result.handoffs
    assert (record.request.trigger, record.request.trigger_name, record.outcome) == ("rule", "return_words", "accepted")
    values = graph.get_state(session.config).values
    assert values["turn"] == 1
    assert user_texts(transcript(graph, session.thread_id)) == ["I want to return my order"]


def test_the_receiver_of_a_model_handoff_does_not_take_the_message_in_again() -> None:
    session, _, result = technical_handoff()

    assert result.path == [GENERAL, "handoff_gate", TECHNICAL]
    values = session.graph.get_state(session.config).values
    assert values["turn"] == 1
    stored = transcript(session.graph, session.thread_id)
    assert user_texts(stored) == ["My internet drops every evening, account ACC-1001"]
    assert len({m.id for m in stored}) == len(stored) == values["transcript_len"]


def test_an_agent_step_that_is_retried_takes_the_message_in_once() -> None:
    model = ScriptedChatModel(scripts={GENERAL: [TimeoutError("the model timed out"), "Hello, how can I help?"]})
    session = support_session(model)
    result = session.send("Hello")

    assert result.reply == "Hello, how can I help?" and result.path == [GENERAL]
    assert len(model.calls_by(GENERAL)) == 2, "the first attempt failed and was run again"
    stored = transcript(session.graph, session.thread_id)
    assert [str(m.content) for m in stored] == ["Hello", "Hello, how can I help?"]
    assert session.graph.get_state(session.config).values["turn"] == 1


def test_the_journal_holds_every_message_the_state_held_once_and_in_order() -> None:
    """A conversation with plain turns, a rule handoff and a model handoff: the transcript is what the
    checkpoints held, message by message, and the turn counter counts the user's turns."""
    model = ScriptedChatModel(scripts={
        "front": ["Hello!", "Back to you.", "Done."],
        "desk": ["Return opened.", calls(tool_call("transfer_to_front", {"reason": "not a return"}))],
    })
    graph = shop(model)
    session = HandoffSession(graph)
    texts = ["Hi", "I want to return a lamp", "Actually, where is my chair?", "Thanks"]
    paths = [session.send(text).path for text in texts]
    assert paths == [["front"], ["intake", "handoff_gate", "desk"], ["desk", "handoff_gate", "front"], ["front"]]

    seen: dict[str, BaseMessage] = {}
    for snapshot in reversed(list(graph.get_state_history(session.config))):
        for message in snapshot.values.get("messages") or []:
            seen.setdefault(message.id, message)
    stored = transcript(graph, session.thread_id)
    assert [m.id for m in stored] == list(seen)
    assert user_texts(stored) == texts
    assert graph.get_state(session.config).values["turn"] == len(texts)


def test_the_async_path_takes_the_message_in_in_the_agents_own_step() -> None:
    model = ScriptedChatModel(scripts={"front": ["Hello!"]})
    graph = shop(model)
    config = {"configurable": {"thread_id": "async-turn"}}
    paths: list[str] = []

    async def run() -> None:
        async for update in graph.astream({"messages": [HumanMessage("Hi there")]}, config, stream_mode="updates"):
            paths.extend(update)

    asyncio.run(run())
    assert paths == ["front"]
    assert [str(m.content) for m in transcript(graph, "async-turn")] == ["Hi there", "Hello!"]
    assert graph.get_state(config).values["turn"] == 1


def test_a_turn_a_person_answers_starts_at_intake_so_the_message_is_archived_while_they_wait() -> None:
    model = ScriptedChatModel(scripts={"front": ["Hello!"]})
    graph = shop(model, human_escalation=True)
    session = HandoffSession(graph)
    session.send("I want to speak to a person")
    answer_escalation(graph, session.config, HumanAnswer(reply="Hi, I am Sam."))
    assert graph.get_state(session.config).values["active_agent"] == HUMAN

    waiting = session.send("Can you check my order?")

    assert waiting.path == ["intake"] and pending_escalation(graph, session.config) is not None
    assert graph.get_state(session.config).values["turn"] == 2
    assert user_texts(transcript(graph, session.thread_id))[-1] == "Can you check my order?"
    answer_escalation(graph, session.config, HumanAnswer(reply="It ships today."))
    assert graph.get_state(session.config).values["turn"] == 2
    assert [str(m.content) for m in transcript(graph, session.thread_id)] == [
        "I want to speak to a person", "Hi, I am Sam.", "Can you check my order?", "It ships today."]


def test_a_caller_cannot_mark_a_message_as_taken_in() -> None:
    graph = shop(ScriptedChatModel(scripts={"front": ["Hello!"]}))
    with pytest.raises(InputRefused, match="taken_in"):
        graph.invoke({"messages": [HumanMessage("Hi", id="m1")], "taken_in": "m1"},
                     {"configurable": {"thread_id": "forged"}})


def test_a_thread_saved_before_the_marker_starts_its_next_turn_at_intake() -> None:
    model = ScriptedChatModel(scripts={"front": ["Hello!", "Again!"]})
    graph = shop(model)
    session = HandoffSession(graph)
    session.send("Hi")
    graph.update_state(session.config, {"taken_in": None})  # as a checkpoint from before the marker

    result = session.send("Hi again")

    assert result.path == ["intake", "front"]
    assert graph.get_state(session.config).values["turn"] == 2
    assert user_texts(transcript(graph, session.thread_id)) == ["Hi", "Hi again"]

