"""The message window is a LangGraph DeltaChannel: checkpoints hold it only now and then, every read
rebuilds the same window, on SQLite and on PostgreSQL, and the reducer is batching-invariant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph.state import CompiledStateGraph

from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence
from handoff.monitoring.replay import fork
from handoff.monitoring.report import conversation_report
from handoff.state.conversation import (
    DELTA_SNAPSHOT_EVERY,
    MESSAGE_WINDOW,
    USAGE_SNAPSHOT_EVERY,
    window_batch,
    window_messages,
)
from tests.support.long_conversation import scripted_model, user_lines
from tests.test_persistence_factory import POSTGRES_URL

TURNS = 30


def _message(kind: int, n: int) -> AnyMessage:
    if kind == 0:
        return HumanMessage(f"user {n}", id=f"h{n}")
    if kind == 1:
        return AIMessage(f"agent {n}", id=f"a{n}")
    return ToolMessage(f"tool {n}", tool_call_id=f"c{n}", id=f"t{n}")


writes_strategy = st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=6), min_size=1, max_size=14)


@settings(max_examples=300, deadline=None)
@given(writes_strategy, st.data())
def test_the_window_is_the_same_cut_once_or_after_every_write(kinds: list[list[int]], data: st.DataObject) -> None:
    counter = iter(range(10_000))
    writes = [[_message(k, next(counter)) for k in write] for write in kinds]
    one_by_one: list[AnyMessage] = []
    for write in writes:
        one_by_one = window_messages(one_by_one, write)
    split = data.draw(st.integers(0, len(writes)))
    in_two = window_batch(window_batch([], writes[:split]), writes[split:])
    assert [m.id for m in window_batch([], writes)] == [m.id for m in one_by_one]
    assert [m.id for m in in_two] == [m.id for m in one_by_one]


def test_the_batch_reducer_still_bounds_the_window() -> None:
    writes = [[HumanMessage(f"u{n}", id=f"h{n}"), AIMessage(f"a{n}", id=f"a{n}")] for n in range(40)]
    window = window_batch([], writes)
    assert len(window) <= MESSAGE_WINDOW and isinstance(window[0], HumanMessage)
    assert window[-1].id == "a39"


@contextmanager
def opened(url: str) -> Iterator[CompiledStateGraph]:
    with open_persistence(url) as persistence:
        yield build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)


def _play(url: str, thread: str) -> list[str]:
    """Play the conversation; the window's message ids as the last turn returned them."""
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    out: dict[str, Any] = {}
    with opened(url) as graph:
        for line in user_lines(TURNS, every=3):
            out = graph.invoke({"messages": [line.text]}, config)
    return [m.id for m in out["messages"]]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_reopened_database_rebuilds_the_window_the_last_turn_ended_with(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'delta.sqlite'}" if backend == "sqlite" else POSTGRES_URL
    thread = f"delta-{uuid.uuid4().hex}"
    returned = _play(url, thread)
    with opened(url) as graph:  # a new saver: nothing of the window is cached
        config = {"configurable": {"thread_id": thread}}
        rebuilt = graph.get_state(config).values["messages"]
        history = list(graph.get_state_history(config))
    assert [m.id for m in rebuilt] == returned
    assert all(m.id for m in rebuilt), "every message keeps the id it was written with"
    assert len({m.id for m in rebuilt}) == len(rebuilt)
    windows = [s.values.get("messages") or [] for s in history]
    assert all(len(w) <= MESSAGE_WINDOW + 6 for w in windows), "every older checkpoint rebuilds a bounded window"


def test_most_checkpoints_store_no_copy_of_the_window(tmp_path: Path) -> None:
    db = tmp_path / "delta.sqlite"
    _play(f"sqlite:///{db}", "counted")
    with open_persistence(f"sqlite:///{db}") as persistence:
        stored = list(persistence.checkpointer.list({"configurable": {"thread_id": "counted"}}))
    holding = sum(1 for item in stored if "messages" in item.checkpoint["channel_values"])
    assert 0 < holding <= len(stored) / (DELTA_SNAPSHOT_EVERY / 4), (holding, len(stored))


def test_a_read_walks_back_no_further_than_the_handoff_records_need(tmp_path: Path) -> None:
    """A read walks back until every delta channel finds a full copy. The usage counters update about
    once a turn: snapshotted as rarely as the window, they alone sent reads back some eight turns,
    where the handoff records (once a turn, a copy every four) need four."""
    db = tmp_path / "delta.sqlite"
    _play(f"sqlite:///{db}", "walked")
    config = {"configurable": {"thread_id": "walked"}}
    with open_persistence(f"sqlite:///{db}") as persistence:
        saver = persistence.checkpointer
        walked = [saver.get_delta_channel_history(config=item.config, channels=["usage", "handoffs"])
                  for item in saver.list(config, limit=60)]
    usage = [len(history["usage"]["writes"]) for history in walked]
    records = [len(history["handoffs"]["writes"]) for history in walked]
    assert all("seed" in history["usage"] for history in walked[:-10])
    assert max(usage) <= USAGE_SNAPSHOT_EVERY < DELTA_SNAPSHOT_EVERY // 2
    assert max(usage) <= max(records), (usage, records)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_fork_and_the_report_see_the_rebuilt_window_records_and_usage(backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.sqlite'}" if backend == "sqlite" else POSTGRES_URL
    thread = f"delta-fork-{uuid.uuid4().hex}"
    _play(url, thread)
    with opened(url) as graph:
        config = {"configurable": {"thread_id": thread}}
        ends_of_turns = [s for s in graph.get_state_history(config) if not s.next]
        middle = next(s for s in ends_of_turns[TURNS // 3:]
                      if "messages" not in graph.checkpointer.get_tuple(s.config).checkpoint["channel_values"])
        forked = fork(graph, thread, middle.config["configurable"]["checkpoint_id"])
        copy = graph.get_state({"configurable": {"thread_id": forked}}).values
        report = conversation_report(graph.checkpointer, graph.store, thread)
        latest = graph.get_state(config).values
    for key in ("handoffs", "usage", "turn", "case_file"):
        assert copy[key] == middle.values[key], key
    assert [m.id for m in copy["messages"]] == [m.id for m in middle.values["messages"]]
    assert {a: u.model_calls for a, u in report.usage.items()} == {
        a: c["model_calls"] for a, c in latest["usage"].items()}
