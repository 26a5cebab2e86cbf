"""One validation layer at every boundary: nothing a person, a caller, a model or a tool sends can make a
thread unstorable. PostgreSQL's JSON refuses ``\\u0000``, serializers give up on deep nesting; so input is
refused before anything runs (naming the field and the limit) and output is made storable, and the
thread goes on either way. Run on PostgreSQL through the sync graph API and the async one."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import JsonValue, ValidationError

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import GENERAL
from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec, InitContext
from handoff.graphs.boundary import (
    MAX_DEPTH,
    MAX_VALUE_CHARS,
    REPLACEMENT,
    TOO_DEEP,
    InputRefused,
    check_text,
    check_value,
    clean_value,
    for_embedding,
    sanitize_value,
)
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.human import HUMAN, HumanAnswer
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence
from handoff.service.storage import open_service_persistence
from handoff.state import CaseFile, InitResult

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ASK_FOR_A_PERSON = "I want to speak to a human about my bill"


def nested(levels: int, leaf: Any = "x") -> Any:
    """``leaf`` inside ``levels`` dicts, built without recursion."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize(("value", "named"), [
    ("hello\x00world", r"note: the control character U\+0000 \(NUL\) at position 5"),
    ({"k": ["ok", "bell\x07"]}, r"note\.k\[1\]: the control character U\+0007"),
    ({"bad\nkey": 1}, r"U\+000A"),
    ("half \ud800 pair", r"unpaired surrogate U\+D800"),
    (nested(MAX_DEPTH + 1), rf"nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}"),
    (nested(600), rf"the limit is {MAX_DEPTH}"),
    (nested(200_000), rf"the limit is {MAX_DEPTH}"),  # far past Python's recursion limit
    ("x" * (MAX_VALUE_CHARS + 1), rf"note: more than {MAX_VALUE_CHARS} characters as JSON"),
    ([float("nan")], "nan is not a finite number"),
    ({"n": 2**70}, "wider than 64 bits"),
    ({1: "a"}, "the key 1 is not text"),
    (object(), "not JSON data"),
], ids=["nul", "bell-in-list", "newline-in-key", "surrogate", "depth-33", "depth-600", "depth-200000",
        "too-large", "nan", "wide-int", "int-key", "object"])
def test_check_value_refuses_naming_where_and_which_limit(value: Any, named: str) -> None:
    with pytest.raises(InputRefused, match=named):
        check_value(value, field="note")


def test_free_text_keeps_tabs_and_line_breaks_and_a_value_at_the_limits_passes() -> None:
    text = "line one\r\nline\ttwo"
    assert check_text(text, field="reply", max_chars=100) == text
    assert check_value(nested(MAX_DEPTH, text), field="note") == nested(MAX_DEPTH, text)
    with pytest.raises(InputRefused, match="reply: the control character U\\+0009"):
        check_text("tab\there", field="reply", max_chars=100, free_text=False)
    with pytest.raises(InputRefused, match="reply: 101 characters; the limit is 100"):
        check_text("x" * 101, field="reply", max_chars=100)


def test_a_model_value_is_repaired_where_it_can_be_and_refused_where_it_cannot() -> None:
    repaired = sanitize_value({"a": "x\x00y", "n": float("inf"), "w": 2**70}, field="args")
    assert repaired == {"a": f"x{REPLACEMENT}y", "n": "inf", "w": str(2**70)}
    with pytest.raises(InputRefused, match=str(MAX_DEPTH)):
        sanitize_value(nested(300), field="args")


def test_clean_value_never_refuses_and_bounds_what_it_keeps() -> None:
    cleaned = clean_value({"deep": nested(600), "big": "y" * 50_000, "nul": "\x00"}, max_chars=1_000)
    assert "\x00" not in repr(cleaned)
    assert TOO_DEEP in repr(cleaned["deep"])
    assert len(repr(cleaned)) < 1_500


def test_text_for_an_embedding_is_bounded_and_storable() -> None:
    text = for_embedding("a\x00b" + "c" * 20_000, max_chars=100)
    assert len(text) <= 100 and "\x00" not in text and text.startswith(f"a{REPLACEMENT}b")


def test_an_escalation_answer_refuses_what_cannot_be_stored_when_it_is_made() -> None:
    with pytest.raises(ValidationError, match=rf"case_file_updates.*the limit is {MAX_DEPTH}"):
        HumanAnswer(reply="ok", case_file_updates={"problem_summary": nested(300)})
    with pytest.raises(ValidationError, match=r"reply: the control character U\+0000"):
        HumanAnswer(reply="we will call\x00")


# ---------------------------------------------------------------- on PostgreSQL, sync and async


class Portal:
    """An event loop on a thread of its own, so a test drives the async graph API step by step."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def __call__(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Chat:
    """One new thread of a graph on PostgreSQL, through ``invoke`` or, with a portal, ``ainvoke``."""

    def __init__(self, graph: CompiledStateGraph, portal: Portal | None) -> None:
        self.graph, self.portal = graph, portal
        self.thread_id = f"limits-{uuid.uuid4().hex}"
        self.config = {"configurable": {"thread_id": self.thread_id}}

    def send(self, graph_input: Any) -> dict[str, Any]:
        if self.portal is None:
            return self.graph.invoke(graph_input, self.config)
        return self.portal(self.graph.ainvoke(graph_input, self.config))

    def say(self, text: str) -> dict[str, Any]:
        return self.send({"messages": [HumanMessage(text)]})

    def values(self) -> dict[str, Any]:
        return dict(self.snapshot().values)

    def snapshot(self) -> Any:
        if self.portal is None:
            return self.graph.get_state(self.config)
        return self.portal(self.graph.aget_state(self.config))

    def pending(self) -> bool:
        return any(t.name == HUMAN and t.interrupts for t in self.snapshot().tasks)

    def transcript(self) -> list[BaseMessage]:
        journal = Journal(self.graph.store, self.thread_id)
        upto = int(self.values().get("transcript_len") or 0)
        return journal.messages(upto) if self.portal is None else self.portal(journal.amessages(upto))


@pytest.fixture(params=["sync", "async"])
def chat_on_postgres(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open(builder) -> Chat``: a new thread on PostgreSQL through the sync or the async API."""
    if request.param == "sync":
        with open_persistence(POSTGRES_URL) as persistence:
            yield lambda builder: Chat(builder.compile(checkpointer=persistence.checkpointer,
                                                       store=persistence.store), None)
        return
    portal = Portal()
    opened = open_service_persistence(POSTGRES_URL)
    try:
        persistence = portal(opened.__aenter__())
        try:
            yield lambda builder: Chat(builder.compile(checkpointer=persistence.checkpointer,
                                                       store=persistence.store), portal)
        finally:
            portal(opened.__aexit__(None, None, None))
    finally:
        portal.close()


def support(model: Any = None) -> Any:
    return build_customer_service_graph(model=model or OfflineChatModel(), office=BackOffice())


def replies(chat: Chat) -> list[str]:
    return [str(m.content) for m in chat.transcript() if isinstance(m, AIMessage) and m.content]


def test_a_user_message_with_nul_is_refused_and_the_thread_goes_on(chat_on_postgres: Any) -> None:
    chat = chat_on_postgres(support())
    with pytest.raises(InputRefused, match=r"messages\[0\]: the control character U\+0000 \(NUL\)"):
        chat.say("my line \x00 drops")
    assert chat.values() == {}, "a refused message stores nothing"
    chat.say("my internet keeps dropping, account ACC-1001")
    chat.say("it drops every evening")
    assert [str(m.content) for m in chat.transcript() if isinstance(m, HumanMessage)] == [
        "my internet keeps dropping, account ACC-1001", "it drops every evening"]


@pytest.mark.parametrize("message", [
    HumanMessage("hi", name="dana\x00"),
    HumanMessage("hi", id="m\x00"),
    HumanMessage("hi", additional_kwargs={"meta": nested(300)}),
    HumanMessage([{"type": "text", "text": "hi \x00"}]),
], ids=["name", "id", "metadata", "content-block"])
def test_whatever_of_a_user_message_is_stored_is_checked(chat_on_postgres: Any, message: HumanMessage) -> None:
    chat = chat_on_postgres(support())
    with pytest.raises(InputRefused, match=r"messages\[0\]"):
        chat.send({"messages": [message]})
    assert chat.values() == {}


def test_a_model_reply_with_nul_is_stored_sanitised_and_later_turns_work(chat_on_postgres: Any) -> None:
    model = ScriptedChatModel(scripts={GENERAL: ["Hello\x00 there \ud800!", "Second answer.", "Third."]})
    chat = chat_on_postgres(support(model))
    chat.say("hello")
    chat.say("and again")
    chat.say("once more")
    assert replies(chat) == [f"Hello{REPLACEMENT} there {REPLACEMENT}!", "Second answer.", "Third."]


def escalated(chat: Chat) -> dict[str, Any]:
    """Ask for a person; returns the state while the escalation is pending."""
    chat.say(ASK_FOR_A_PERSON)
    assert chat.pending()
    return chat.values()


@pytest.mark.parametrize(("answer", "named"), [
    ({"reply": "We will call you\x00 tomorrow"}, r"resume\.reply: the control character U\+0000"),
    ({"reply": "ok", "case_file_updates": {"problem_summary": "bad\x00"}}, r"U\+0000"),
    ({"reply": "ok", "case_file_updates": {"bad\x00key": "x"}}, r"U\+0000"),
    ({"reply": "ok", "case_file_updates": {"problem_summary": nested(300)}}, rf"the limit is {MAX_DEPTH}"),
    ({"reply": "ok", "case_file_updates": {"problem_summary": nested(600)}}, rf"the limit is {MAX_DEPTH}"),
    ({"reply": "ok", "case_file_updates": {"amount": float("nan")}}, "not a finite number"),
    ({"reply": ""}, r"escalation answer: reply: String should have at least 1 character"),
    ({"reply": "ok", "unknown": 1}, r"escalation answer: unknown: Extra inputs are not permitted"),
    ({"reply": "x" * 20_001}, "escalation answer: reply: String should have at most 20000 characters"),
], ids=["nul-reply", "nul-update", "nul-key", "deep-300", "deep-600", "nan", "empty", "extra", "too-long"])
def test_a_bad_escalation_answer_is_refused_and_the_escalation_stays_answerable(
    chat_on_postgres: Any, answer: dict[str, Any], named: str
) -> None:
    chat = chat_on_postgres(support())
    before = escalated(chat)
    with pytest.raises(InputRefused, match=named):
        chat.send(Command(resume=answer))
    assert chat.pending(), "the escalation is still waiting for a person"
    assert chat.values() == before, "nothing was stored"

    chat.send(Command(resume={"reply": "A colleague will call you today.",
                              "case_file_updates": {"problem_summary": "wants a call"}}))
    assert not chat.pending()
    assert replies(chat)[-1] == "A colleague will call you today."
    assert chat.values()["case_file"]["problem_summary"] == "wants a call"
    chat.say("thanks")
    assert len(chat.transcript()) > len(before["messages"]) + 1


def test_tool_arguments_nested_300_deep_are_a_refused_call_and_the_thread_goes_on(chat_on_postgres: Any) -> None:
    model = ScriptedChatModel(scripts={GENERAL: [
        calls(tool_call("lookup_account", {"account_id": nested(300)}, "deep-1")),
        "Could you give me your account id again?",
        "Thanks, got it.",
    ]})
    chat = chat_on_postgres(support(model))
    chat.say("account ACC-1001")
    chat.say("ACC-1001")
    transcript = chat.transcript()
    [call] = [m for m in transcript if isinstance(m, AIMessage) and m.tool_calls]
    assert call.tool_calls[0]["args"] == {}
    [answer] = [m for m in transcript if isinstance(m, ToolMessage)]
    assert answer.tool_call_id == "deep-1" and answer.status == "error"
    assert f"nested more than {MAX_DEPTH} levels deep" in str(answer.content)
    assert "not carried out" in str(answer.content)
    assert replies(chat)[-2:] == ["Could you give me your account id again?", "Thanks, got it."]
    # The refused call was shown to the model with its answer, paired.
    second_prompt = model.calls_by(GENERAL)[1]["messages"]
    assert [m.tool_call_id for m in second_prompt if isinstance(m, ToolMessage)] == ["deep-1"]


def test_oversized_tool_arguments_are_refused_naming_the_limit() -> None:
    model = ScriptedChatModel(scripts={GENERAL: [
        calls(tool_call("lookup_account", {"account_id": "ACC-1001", "note": "y" * 30_000}, "big-1")), "ok"]})
    with open_persistence("memory") as persistence:
        graph = support(model).compile(checkpointer=persistence.checkpointer, store=persistence.store)
        out = graph.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "big"}})
    [answer] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert f"the limit is {MAX_VALUE_CHARS}" in str(answer.content) and answer.status == "error"


# ---------------------------------------------------------------- tool results and initialisation


class NotesCaseFile(CaseFile):
    notes: JsonValue = None
    summary: str | None = None


@tool(response_format="content_and_artifact")
def remember(levels: int) -> tuple[str, dict[str, Any]]:
    """Remember a nested fact. Use when: remember"""
    return "remembered\x00 it", {"notes": nested(levels)}


def back_office_enters(ctx: InitContext) -> InitResult:
    return InitResult(action="load_history", summary="history\x00 loaded", case_file_updates={"summary": "s"})


def notes_graph(model: ScriptedChatModel) -> Any:
    front = AgentSpec(name="front", title="Front Desk", description="First contact.", instructions="Help.",
                      tools=(remember,), handoffs=("back",))
    back = AgentSpec(name="back", title="Back Office", description="The back office.", instructions="Help.",
                     on_enter=back_office_enters)
    return build_handoff_graph([front, back], default_agent="front", case_file_model=NotesCaseFile,
                               model=model, name="notes")


def test_a_tool_result_is_stored_sanitised_and_too_deep_updates_are_refused(chat_on_postgres: Any) -> None:
    model = ScriptedChatModel(scripts={"front": [
        calls(tool_call("remember", {"levels": 300}, "r1")), "Noted.",
        calls(tool_call("remember", {"levels": 3}, "r2")), "Noted again.",
    ]})
    chat = chat_on_postgres(notes_graph(model))
    chat.say("remember this")
    chat.say("remember that")
    first, second = [m for m in chat.transcript() if isinstance(m, ToolMessage)]
    assert str(first.content).startswith(f"remembered{REPLACEMENT} it")
    assert "case-file updates from remember" in str(first.content) and f"limit is {MAX_DEPTH}" in str(first.content)
    assert str(second.content) == f"remembered{REPLACEMENT} it"
    assert chat.values()["case_file"]["notes"] == nested(3)


def test_an_initialisation_result_that_cannot_be_stored_fails_the_handoff_and_nothing_moves(
    chat_on_postgres: Any,
) -> None:
    model = ScriptedChatModel(scripts={"front": [
        calls(tool_call("transfer_to_back", {"reason": "needs the back office"}, "t1")),
        "I will handle it myself.", "Still here.",
    ]})
    chat = chat_on_postgres(notes_graph(model))
    chat.say("please pass me on")
    chat.say("and now?")
    values = chat.values()
    assert values["active_agent"] == "front"
    [answer] = [m for m in chat.transcript() if isinstance(m, ToolMessage)]
    assert "Handoff failed [init_failed]" in str(answer.content)
    assert "initialisation summary: the control character U+0000" in str(answer.content)
    assert replies(chat)[-1] == "Still here."
