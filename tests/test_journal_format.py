"""The journal stores a message without the fields LangChain restores itself, and reads it back equal."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_to_dict,
)
from langgraph.store.memory import InMemoryStore

from handoff.graphs.journal import Journal

MESSAGES: list[BaseMessage] = [
    HumanMessage("Hi, account ACC-1001", id="h1"),
    HumanMessage([{"type": "text", "text": "blocks"}], id="h2", name="dana", additional_kwargs={"k": 1}),
    AIMessage("", id="a1", tool_calls=[{"name": "lookup", "args": {"account": "ACC-1001"}, "id": "c1"}],
              usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
              response_metadata={"model_name": "offline"}),
    AIMessage("plain answer", id="a2", name="general_support"),
    ToolMessage("found", tool_call_id="c1", id="t1"),
    ToolMessage("failed", tool_call_id="c2", id="t2", status="error", artifact={"raw": [1, 2]}),
    SystemMessage("(system) a note", id="s1"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=[f"{m.type}-{m.id}" for m in MESSAGES])
def test_a_message_reads_back_equal_from_fewer_bytes(message: BaseMessage) -> None:
    store = InMemoryStore()
    journal = Journal(store, "t")
    journal.append_messages(0, [message])
    stored = store.get(journal.namespace("transcript"), "000000000").value
    assert journal.messages(1) == [message]
    assert len(json.dumps(stored)) < len(json.dumps(messages_to_dict([message])[0]))


def test_items_written_in_the_full_format_still_load() -> None:
    store = InMemoryStore()
    journal = Journal(store, "old")
    for seq, item in enumerate(messages_to_dict(MESSAGES)):
        store.put(journal.namespace("transcript"), f"{seq:09d}", item)
    assert journal.messages(len(MESSAGES)) == MESSAGES
