"""The earlier-messages summary read from the journal's stored items, lazily, says what the messages say.

The agent node no longer makes message objects of the journal's earlier messages, and reads only as
many positions as the summary keeps; the summary must be the one ``summarise`` gives the messages.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
)
from langgraph.store.base import GetOp, Op, Result
from langgraph.store.memory import InMemoryStore

from handoff.graphs.briefing import build_prompt, newest_first, summarise, summary_of
from handoff.graphs.journal import Journal, StoredTail


class CountingStore(InMemoryStore):
    """An in-memory store that counts the positions read."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def batch(self, ops: Any) -> list[Result]:
        ops = list(ops)
        self.gets += sum(isinstance(op, GetOp) for op in ops)
        return super().batch(ops)

    async def abatch(self, ops: Any) -> list[Result]:
        ops = list(ops)
        self.gets += sum(isinstance(op, GetOp) for op in ops)
        return await super().abatch(ops)


def _mixed(n: int) -> list[BaseMessage]:
    """``n`` messages of every kind the summary shows or skips."""
    kinds: list[Any] = [
        lambda i: HumanMessage(f"line {i}: my router\nblinks amber " + "x" * (i % 7) * 30),
        lambda i: AIMessage(f"answer {i} " + "y" * (i % 5) * 40, name="technical_specialist"),
        lambda i: AIMessage("", name="billing_expert",
                            tool_calls=[{"name": "load", "args": {}, "id": f"c{i}", "type": "tool_call"}]),
        lambda i: ToolMessage(f"result {i}", tool_call_id=f"c{i}", name="load"),
        lambda i: AIMessage(f"nameless {i}"),
        lambda i: SystemMessage(f"system {i}"),
        lambda i: HumanMessage([{"type": "text", "text": f"block {i}"}]),
        lambda i: AIMessageChunk(content=f"chunk {i}", name="general_support"),
        lambda i: HumanMessageChunk(content=f"human chunk {i}"),
        lambda i: HumanMessage("   "),
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def _journal(messages: list[BaseMessage]) -> tuple[Journal, CountingStore]:
    store = CountingStore()
    journal = Journal(store, "thread-1")
    journal.append_messages(0, messages)
    store.gets = 0
    return journal, store


@pytest.mark.parametrize("n", [0, 1, 5, 8, 9, 16, 23, 40])
@pytest.mark.parametrize("last", [3, 8, 16])
def test_summary_of_stored_items_is_summarise_of_the_messages(n: int, last: int) -> None:
    messages = _mixed(n)
    journal, _ = _journal(messages)
    expected = summarise(journal.messages(n, last=last))
    tail = journal.stored_before(n, last)
    assert summary_of(newest_first(tail)) == expected
    assert bool(tail) == bool(journal.messages(n, last=last))


def test_only_the_newest_positions_are_read_when_they_fill_the_summary() -> None:
    messages = [HumanMessage("a long line about the router " * 8) if i % 2 == 0
                else AIMessage("a long answer about the line " * 8, name="technical_specialist")
                for i in range(40)]
    journal, store = _journal(messages)
    tail = journal.stored_before(40, 16)
    summary = summary_of(newest_first(tail))
    assert summary == summarise(messages[-16:])
    assert store.gets == StoredTail.FIRST_READ < 16
    summary_of(newest_first(tail))  # a second model call of the turn reads nothing again
    assert store.gets == StoredTail.FIRST_READ


def test_short_messages_read_further_back_and_missing_positions_are_skipped() -> None:
    messages = [HumanMessage(f"ok {i}") for i in range(30)]
    journal, store = _journal(messages)
    assert journal.store is not None
    journal.store.delete(journal.namespace("transcript"), f"{27:09d}")  # a position with no item
    tail = journal.stored_before(30, 16)
    assert summary_of(newest_first(tail)) == summarise(journal.messages(30, last=16))
    assert store.gets == 16 + 16  # both reads above: every position, once each


def test_no_store_reads_nothing() -> None:
    tail = Journal(None, "t").stored_before(10, 16)
    assert not tail
    assert summary_of(newest_first(tail)) == ""


def test_an_unknown_stored_type_fails_as_reading_the_messages_does() -> None:
    store = InMemoryStore()
    journal = Journal(store, "t")
    store.batch([_put(journal, 0, {"type": "martian", "data": {"content": "hi"}})])
    with pytest.raises(ValueError, match="unexpected message type"):
        journal.messages(1)
    with pytest.raises(ValueError, match="unexpected message type"):
        summary_of(newest_first(journal.stored_before(1, 16)))


def _put(journal: Journal, seq: int, value: dict[str, Any]) -> Op:
    from langgraph.store.base import PutOp

    return PutOp(journal.namespace("transcript"), f"{seq:09d}", value, index=False)


def test_build_prompt_shows_the_same_summary_from_stored_items() -> None:
    from handoff.agents.customer_service.specialists import customer_service_agents

    spec = customer_service_agents()[0]
    earlier = _mixed(20)
    journal, _ = _journal(earlier)
    window = [HumanMessage("what now?", id="h1"), AIMessage("this", name=spec.name, id="a1")]
    state = {"messages": window, "case_file": {}}
    from_messages = build_prompt(spec, targets={}, state=state, earlier=journal.messages(20, last=16))
    from_items = build_prompt(spec, targets={}, state=state, earlier=journal.stored_before(20, 16))
    assert [m.content for m in from_items] == [m.content for m in from_messages]


@pytest.mark.parametrize("n", [0, 7, 23])
def test_the_async_read_gives_the_same_summary(n: int) -> None:
    import asyncio

    messages = _mixed(n)
    journal, store = _journal(messages)
    tail = asyncio.run(journal.astored_before(n, 16))
    reads = store.gets
    assert summary_of(newest_first(tail)) == summarise(journal.messages(n, last=16))
    assert bool(tail) == (n > 0)
    assert reads == min(n, 16)  # read at once, in one batch


def test_no_journal_read_when_the_hidden_window_fills_the_summary() -> None:
    from handoff.agents.customer_service.specialists import customer_service_agents
    from handoff.agents.spec import ContextPolicy

    spec = customer_service_agents()[0].model_copy(update={"context": ContextPolicy(mode="window", last_messages=2)})
    window: list[BaseMessage] = []
    for n in range(6):
        window += [HumanMessage(f"question {n} " + "q" * 200, id=f"h{n}"),
                   AIMessage(f"answer {n} " + "a" * 200, name=spec.name, id=f"a{n}")]
    journal, store = _journal(_mixed(30))
    state = {"messages": window, "case_file": {}}
    lazy = build_prompt(spec, targets={}, state=state, earlier=journal.stored_before(30, 16))
    assert store.gets == 0, "the older turns of the window fill the summary by themselves"
    eager = build_prompt(spec, targets={}, state=state, earlier=journal.messages(30, last=16))
    assert [m.content for m in lazy] == [m.content for m in eager]
