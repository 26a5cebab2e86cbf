"""A faulty model cannot stall or garble a conversation: a total deadline per model call (not per chunk),
malformed tool calls answered like any refused call, and failures logged and told by their kind only.

The real ``ChatOpenAI`` client runs against a local OpenAI-compatible stub (tests/support/openai_stub.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from handoff.agents.customer_service.specialists import GENERAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.retry import MAX_ATTEMPTS
from handoff.graphs.session import HandoffSession
from handoff.service.storage import open_service_persistence
from tests.helpers import compile_memory
from tests.support.debug_logs import Records, root_debug_logs
from tests.support.openai_stub import TRICKLE, OpenAIStub, raw_tool_reply, text_reply

CLOSED_WITHIN_S = 30
"""How long a test waits for the stub to see a connection closed: a liveness bound, not a timing."""


@pytest.fixture
def strict_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStub]:
    """A strict OpenAI-compatible stub as the configured model, with a 1 s deadline per call."""
    stub = OpenAIStub(strict=True)
    with stub.running():
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("HANDOFF_MODEL", "stub-model")
        monkeypatch.setenv("HANDOFF_MODEL_TIMEOUT", "1")
        yield stub


def real_model_graph() -> Any:
    """Customer service on the environment's model (and fallback model, if one is set)."""
    return build_customer_service_graph()


def closed_connections(stub: OpenAIStub, count: int) -> bool:
    return all(stub.closed.acquire(timeout=CLOSED_WITHIN_S) for _ in range(count))


DEADLINE_REPLY = ("(system) General Support could not answer: the model did not answer within 1 s "
                  f"(ModelDeadlineExceeded, {MAX_ATTEMPTS} attempts). Nothing was lost; please try again.")


def test_a_trickling_server_ends_the_turn_at_the_deadline_on_the_sync_path(strict_stub: OpenAIStub) -> None:
    strict_stub.default = TRICKLE
    session = HandoffSession(compile_memory(real_model_graph()))
    result = session.send("hello, is anyone there?")

    assert result.reply == DEADLINE_REPLY
    assert len(strict_stub.requests) == MAX_ATTEMPTS, "a missed deadline is retried like a timeout"
    assert closed_connections(strict_stub, MAX_ATTEMPTS), "each abandoned call's connection was closed"

    strict_stub.default = text_reply("Hello again, how can I help?")
    after = session.send("hello?")
    assert after.reply == "Hello again, how can I help?"
    assert after.active_agent == GENERAL


def test_a_trickling_server_ends_the_turn_at_the_deadline_on_the_async_path(strict_stub: OpenAIStub) -> None:
    strict_stub.default = TRICKLE

    async def converse() -> tuple[str, str]:
        async with open_service_persistence("memory") as persistence:
            graph = real_model_graph().compile(checkpointer=persistence.checkpointer, store=persistence.store)
            session = HandoffSession(graph)
            first = await session.asend("hello, is anyone there?")
            strict_stub.default = text_reply("Hello again, how can I help?")
            return first.reply, (await session.asend("hello?")).reply

    first, second = asyncio.run(converse())
    assert first == DEADLINE_REPLY
    assert second == "Hello again, how can I help?"
    assert closed_connections(strict_stub, MAX_ATTEMPTS), "each cancelled call's connection was closed"


def test_each_model_has_its_own_deadline_so_the_fallback_still_answers(
    strict_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOFF_FALLBACK_MODEL", "stub-fallback")
    strict_stub.add(TRICKLE, text_reply("The fallback model answers."))
    result = HandoffSession(compile_memory(real_model_graph())).send("hello")
    assert result.reply == "The fallback model answers."
    assert [r["model"] for r in strict_stub.requests] == ["stub-model", "stub-fallback"]
    assert closed_connections(strict_stub, 1)


def test_a_tool_call_with_unparseable_arguments_is_answered_and_the_next_turns_are_accepted(
    strict_stub: OpenAIStub,
) -> None:
    strict_stub.add(
        raw_tool_reply("lookup_account", '{"account_id": "ACC-1001"', call_id="call_broken"),
        text_reply("Sorry, could you repeat your account id?"),
        text_reply("Thanks, I have it."),
        text_reply("Anything else?"),
    )
    session = HandoffSession(compile_memory(real_model_graph()))
    replies = [session.send(text).reply for text in ("account ACC-1001", "ACC-1001", "no, thanks")]

    assert replies == ["Sorry, could you repeat your account id?", "Thanks, I have it.", "Anything else?"]
    assert strict_stub.refused == [], "the strict server accepted every request"
    second = strict_stub.requests[1]["messages"]
    [call] = [m for m in second if m.get("tool_calls")]
    assert call["tool_calls"][0]["id"] == "call_broken"
    [answer] = [m for m in second if m["role"] == "tool"]
    assert answer["tool_call_id"] == "call_broken"
    assert "are not a JSON object" in answer["content"] and "line 1 column" in answer["content"]


def test_malformed_calls_among_valid_ones_are_each_answered() -> None:
    broken = AIMessage(content="", tool_calls=[tool_call("lookup_account", {"account_id": "ACC-1001"}, "good")],
                       invalid_tool_calls=[{"name": "verify_identity", "args": "[1, 2]", "id": "list-args",
                                            "error": None, "type": "invalid_tool_call"},
                                           {"name": None, "args": None, "id": None, "error": "no name",
                                            "type": "invalid_tool_call"}])
    model = ScriptedChatModel(scripts={GENERAL: [broken, "Done."]})
    out = compile_memory(build_customer_service_graph(model=model)).invoke(
        {"messages": [HumanMessage("account ACC-1001")]}, {"configurable": {"thread_id": "mixed"}})
    calls_made = [c["id"] for m in out["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
    answers = {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}
    assert set(calls_made) == set(answers), "every call has its answer"
    assert answers["good"].status == "success"
    assert "an object was expected" in str(answers["list-args"].content)
    assert [m for m in out["messages"] if isinstance(m, AIMessage)][-1].content == "Done."


# ---------------------------------------------------------------- what failures leave in logs and replies

SECRET = "purple-giraffe-7731"
"""Stands for what a user wrote: it must appear in no log record, and no upstream error text in a reply."""


@tool
def file_complaint(text: str) -> str:
    """File the user's complaint. Use when: complaint"""
    raise ValueError(f"complaint backend refused {text!r}")


@pytest.fixture
def debug_logs() -> Iterator[Records]:
    with root_debug_logs() as records:
        yield records


def test_failing_turns_log_ids_agents_and_kinds_and_never_what_the_user_wrote(debug_logs: Records) -> None:
    desk = AgentSpec(name="desk", title="Front Desk", description="First contact.", instructions="Help.",
                     tools=(file_complaint,))
    upstream = f"upstream echoed your prompt: {SECRET}"
    model = ScriptedChatModel(scripts={"desk": [
        ConnectionError(upstream), ConnectionError(upstream), ConnectionError(upstream),  # every attempt
        RuntimeError(upstream),  # not transient: no retry
        calls(tool_call("file_complaint", {"text": SECRET}, "c1")), "I could not file it.",
    ]})
    session = HandoffSession(compile_memory(build_handoff_graph([desk], default_agent="desk", model=model)))
    unreachable = session.send(f"my complaint: {SECRET}")
    unexpected = session.send(f"again: {SECRET}")
    tool_failed = session.send(f"file this complaint: {SECRET}")

    assert unreachable.reply == ("(system) Front Desk could not answer: the model server could not be reached "
                                 f"(ConnectionError, {MAX_ATTEMPTS} attempts). Nothing was lost; please try again.")
    assert unexpected.reply == ("(system) Front Desk could not answer: an unexpected error (RuntimeError). "
                                "Nothing was lost; please try again.")
    assert tool_failed.reply == "I could not file it."
    ours = [r for r in debug_logs.records if r.name.startswith("handoff")]
    assert any("agent=desk" in r.getMessage() and "code=model_unreachable" in r.getMessage() for r in ours)
    assert any("code=unexpected_error" in r.getMessage() for r in ours)
    leaked = [line for line, r in zip(debug_logs.lines, debug_logs.records, strict=True)
              if SECRET in line or SECRET in (r.exc_text or "") or SECRET in r.getMessage()]
    assert leaked == []


def test_two_tool_calls_with_one_id_are_answered_each_and_the_next_turns_are_accepted(
    strict_stub: OpenAIStub,
) -> None:
    twice = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "dup", "type": "function",
         "function": {"name": "lookup_account", "arguments": json.dumps({"account_id": "ACC-1001"})}},
        {"id": "dup", "type": "function",
         "function": {"name": "lookup_account", "arguments": json.dumps({"account_id": "ACC-1002"})}},
    ]}
    strict_stub.add(twice, text_reply("Which of the two accounts is yours?"), text_reply("Thanks."),
                    text_reply("Anything else?"))
    session = HandoffSession(compile_memory(real_model_graph()))
    replies = [session.send(text).reply for text in ("accounts ACC-1001 and ACC-1002", "ACC-1001", "no")]

    assert replies == ["Which of the two accounts is yours?", "Thanks.", "Anything else?"]
    assert strict_stub.refused == [], "the strict server accepted every request"
    second = strict_stub.requests[1]["messages"]
    [call] = [m for m in second if m.get("tool_calls")]
    ids = [c["id"] for c in call["tool_calls"]]
    assert len(set(ids)) == 2 and ids[0] == "dup"
    assert sorted(m["tool_call_id"] for m in second if m["role"] == "tool") == sorted(ids)
