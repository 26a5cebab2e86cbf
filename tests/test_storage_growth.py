"""Checkpoint storage grows linearly; older checkpoints still read their own window, counters and journal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph.state import CompiledStateGraph

import handoff.state.conversation
from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession
from handoff.state import MESSAGE_WINDOW
from tests.support.long_conversation import scripted_model, user_lines

EVERY = 3  # a handoff every third turn, so the record window fills early


def checkpoint_bytes(db: Path) -> int:
    """Bytes the SQLite saver holds: checkpoint blobs (with their metadata) and pending writes."""
    with sqlite3.connect(str(db)) as conn:
        checkpoints = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(checkpoint)), 0) FROM handoff_checkpoints").fetchone()[0]
        writes = conn.execute("SELECT COALESCE(SUM(LENGTH(writes)), 0) FROM handoff_writes").fetchone()[0]
    return int(checkpoints + writes)


def sqlite_graph(db: Path) -> Iterator[CompiledStateGraph]:
    with open_persistence(f"sqlite:///{db}") as persistence:
        yield build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)


def play(db: Path, turns: int, marks: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Play ``turns`` turns; after each turn in ``marks`` note the stored bytes and the uncompressed
    size of the latest state as a run rebuilds it (the window is a delta channel: the checkpoint row
    itself holds a copy only now and then)."""
    sizes: dict[int, tuple[int, int]] = {}
    for graph in sqlite_graph(db):
        session = HandoffSession(graph, "growth")
        for line in user_lines(turns, every=EVERY):
            session.send(line.text)
            if line.number in marks:
                values = graph.get_state(session.config).values
                raw = len(JsonPlusSerializer().dumps_typed(values)[1])
                sizes[line.number] = (checkpoint_bytes(db), raw)
    return sizes


def grows_linearly(sizes: dict[int, tuple[int, int]]) -> bool:
    """Turns 31-60 add about as many bytes as turns 1-30, and the state stays the same size."""
    (stored_30, raw_30), (stored_60, raw_60) = sizes[30], sizes[60]
    return stored_60 - stored_30 <= 1.3 * stored_30 and raw_60 <= 1.1 * raw_30


def test_checkpoint_storage_grows_linearly(tmp_path: Path) -> None:
    sizes = play(tmp_path / "bounded.sqlite", 60, (30, 60))
    assert grows_linearly(sizes), sizes
    assert sizes[60][0] / 60 < 20_000, "a turn costs a few kilobytes of checkpoints"


def test_the_growth_check_detects_an_unbounded_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff.state.conversation, "MESSAGE_WINDOW", 10_000)
    sizes = play(tmp_path / "unbounded.sqlite", 60, (30, 60))
    assert not grows_linearly(sizes), sizes


@pytest.fixture
def played(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Twenty turns on SQLite, with what the state and journal held after turn 10."""
    for graph in sqlite_graph(tmp_path / "history.sqlite"):
        session = HandoffSession(graph, "history")
        at_ten: dict[str, Any] = {}
        for line in user_lines(20, every=EVERY):
            session.send(line.text)
            if line.number == 10:
                values = graph.get_state(session.config).values
                at_ten = {"window": [m.id for m in values["messages"]], "values": values,
                          "records": [r.request.id for r in session.records()],
                          "transcript": [m.id for m in Journal(graph.store, "history").messages_at(values)]}
        yield {"graph": graph, "session": session, "at_ten": at_ten}


def _end_of_turn(graph: CompiledStateGraph, config: dict[str, Any], turn: int) -> Any:
    return next(s for s in graph.get_state_history(config) if s.values.get("turn") == turn and not s.next)


def test_an_older_checkpoint_shows_its_own_window_counters_and_journal(played: dict[str, Any]) -> None:
    graph, session, ten = played["graph"], played["session"], played["at_ten"]
    latest = graph.get_state(session.config).values
    old = _end_of_turn(graph, session.config, 10)
    assert latest["turn"] == 20 and latest["transcript_len"] > ten["values"]["transcript_len"]

    assert [m.id for m in old.values["messages"]] == ten["window"]
    assert len(old.values["messages"]) <= MESSAGE_WINDOW + 6
    for counter in ("transcript_len", "handoff_count", "active_agent", "turn"):
        assert old.values[counter] == ten["values"][counter], counter
    assert old.values["case_file"] == ten["values"]["case_file"]

    journal = Journal(graph.store, session.thread_id)
    transcript = journal.messages_at(old.values)
    assert [m.id for m in transcript] == ten["transcript"]
    assert len(transcript) == old.values["transcript_len"]
    assert [m.id for m in transcript[-len(ten["window"]):]] == ten["window"]
    assert [r.request.id for r in journal.records_at(old.values)] == ten["records"]

    again = graph.get_state(old.config)
    assert [m.id for m in again.values["messages"]] == ten["window"]
    assert again.values["transcript_len"] == ten["values"]["transcript_len"]


def test_time_travel_continues_from_an_older_checkpoint(played: dict[str, Any]) -> None:
    graph, session, ten = played["graph"], played["session"], played["at_ten"]
    old = _end_of_turn(graph, session.config, 10)

    graph.invoke({"messages": [HumanMessage("Going back: another detail, number 99.", id="fork")]}, old.config)

    forked = graph.get_state(session.config)
    assert forked.values["turn"] == 11
    assert forked.values["active_agent"] == ten["values"]["active_agent"]
    transcript = Journal(graph.store, session.thread_id).messages_at(forked.values)
    assert len(transcript) == forked.values["transcript_len"]
    assert [m.id for m in transcript[: len(ten["transcript"])]] == ten["transcript"]
    assert transcript[len(ten["transcript"])].id == "fork"
    assert [m.id for m in forked.values["messages"]][-1] == transcript[-1].id
    lineage, step = [], forked
    while step.parent_config is not None and len(lineage) < 10:
        lineage.append(step.parent_config["configurable"]["checkpoint_id"])
        step = graph.get_state(step.parent_config)
    assert old.config["configurable"]["checkpoint_id"] in lineage, "the fork leads back to where it started"
