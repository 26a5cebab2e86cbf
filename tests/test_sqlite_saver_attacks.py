"""Hostile review of ``CompactSqliteSaver``: what LangGraph's stock ``SqliteSaver`` does on the same
operations, what a graph with interrupts, subgraphs, forks and delta channels reads back, files the
stock saver wrote (several threads, namespaces, special writes, an old schema), two processes on one
file, and the service and the CLI sharing a file. The defects it found are fixed and tested here; the one
``xfail(strict=True)`` left documents a limitation by design (ids of two kinds on one thread)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import ERROR, INTERRUPT, RESUME, CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typer.testing import CliRunner
from typing_extensions import TypedDict

from handoff.agents.offline import OfflineChatModel
from handoff.cli.main import app as cli_app
from handoff.graphs.persistence import open_persistence, serializer, sqlite_connect
from handoff.graphs.sqlite_saver import CompactSqliteSaver
from handoff.service.app import create_app

# -- helpers ---------------------------------------------------------------------------------------


def memory_conn() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)


def stock_saver(path: Path | None = None) -> SqliteSaver:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None) if path else memory_conn()
    saver = SqliteSaver(conn, serde=serializer())
    saver.setup()
    return saver


def compact_saver(path: Path | None = None) -> CompactSqliteSaver:
    saver = CompactSqliteSaver(sqlite_connect(path) if path else memory_conn(), serde=serializer())
    saver.setup()
    return saver


def at(thread: str, checkpoint_id: str, ns: str = "") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def put(saver: Any, thread: str, parent: str | None = None, *, ns: str = "", checkpoint_id: str | None = None,
        metadata: dict[str, Any] | None = None, **values: Any) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["ts"] = "2025-01-01T00:00:00+00:00"  # the same on both savers of a comparison
    if checkpoint_id is not None:
        checkpoint["id"] = checkpoint_id
    checkpoint["channel_values"] = dict(values)
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if parent:
        conf["checkpoint_id"] = parent
    saved = saver.put({"configurable": conf}, checkpoint, metadata or {"source": "loop", "step": 1}, {})
    return str(saved["configurable"]["checkpoint_id"])


def shape(found: CheckpointTuple | None) -> tuple[Any, ...] | None:
    """Everything a tuple says, with the checkpoint as a plain dict (key order is no part of it)."""
    if found is None:
        return None
    return found.config, dict(found.checkpoint), found.metadata, found.parent_config, found.pending_writes


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- differential: the same operations on both savers ----------------------------------------------

THREADS = ["", "t", "ü🙂\u200b", "'; DROP TABLE handoff_threads; --", "x" * 2000, "a\x00b", "a"]
"""Odd thread ids: empty, unicode, SQL-looking, very long, a NUL inside, and a prefix of that one."""
NAMESPACES = ["", "child:1f0c", "child:1f0c|grand:2"]
TASKS = [*(str(uuid.uuid4()) for _ in range(3)), "00000000-0000-0000-0000-000000000000", "not-a-uuid"]
PATHS = ["", "~__pregel_pull, a", "~__pregel_pull, b", "~~0000000003"]
CHANNELS = ["a", "b", "c", ERROR, INTERRUPT, RESUME]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_operation_sequences_read_back_as_the_stock_saver_reads_them(data: st.DataObject) -> None:
    """put (fresh ids, and re-puts of an id under another parent, which can make loops),
    put_writes, delete_thread; then get_tuple, get_delta_channel_history and list with filter, limit
    and before must give what SqliteSaver gives. Three divergences have their own xfail tests and are
    not generated here: one call writing a special channel twice, one task with two task paths, and
    checkpoint ids of both kinds on one thread (which keeps an xfail: see its reason)."""
    savers = (stock_saver(), compact_saver())
    made: list[tuple[str, str, str]] = []
    for _ in range(data.draw(st.integers(1, 16), label="ops")):
        op = data.draw(st.sampled_from(["put", "put", "writes", "writes", "reput", "delete"]))
        if op in ("put", "reput") or not made:
            if op == "reput" and made:
                thread, ns, checkpoint_id = data.draw(st.sampled_from(made))
            else:
                thread, ns = data.draw(st.sampled_from(THREADS)), data.draw(st.sampled_from(NAMESPACES))
                checkpoint_id = empty_checkpoint()["id"]
            parent = data.draw(st.sampled_from([None, *(m[2] for m in made if m[:2] == (thread, ns))]))
            values = data.draw(st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES, max_size=2))
            metadata = data.draw(st.fixed_dictionaries(
                {"source": st.sampled_from(["input", "loop"]), "step": st.integers(-1, 3)},
                optional={"who": st.sampled_from(["x", "y"])}))
            base = empty_checkpoint()
            base["id"], base["channel_values"] = checkpoint_id, values
            conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
            if parent:
                conf["checkpoint_id"] = parent
            for saver in savers:
                saver.put({"configurable": dict(conf)}, dict(base), dict(metadata), {})  # type: ignore[arg-type]
            if (thread, ns, checkpoint_id) not in made:
                made.append((thread, ns, checkpoint_id))
        elif op == "writes":
            thread, ns, checkpoint_id = data.draw(st.sampled_from(made))
            task = data.draw(st.sampled_from(TASKS))
            path = PATHS[TASKS.index(task) % len(PATHS)]
            channels = data.draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4))
            special = [ch for ch in channels if ch in (ERROR, INTERRUPT, RESUME)]
            if len(special) != len(set(special)):
                continue
            writes = [(ch, data.draw(VALUES)) for ch in channels]
            for saver in savers:
                saver.put_writes(at(thread, checkpoint_id, ns), writes, task, path)
        else:
            thread = data.draw(st.sampled_from(THREADS))
            for saver in savers:
                saver.delete_thread(thread)
            made = [m for m in made if m[0] != thread]
    stock, ours = savers
    for thread in THREADS:
        for ns in NAMESPACES:
            latest = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
            assert shape(ours.get_tuple(latest)) == shape(stock.get_tuple(latest))
    for thread, ns, checkpoint_id in made:
        config = at(thread, checkpoint_id, ns)
        assert shape(ours.get_tuple(config)) == shape(stock.get_tuple(config))
        channels = ["a", "b", "c"]
        assert (ours.get_delta_channel_history(config=config, channels=channels)
                == stock.get_delta_channel_history(config=config, channels=channels))
    configs: list[dict[str, Any] | None] = [None, *({"configurable": {"thread_id": t}} for t in THREADS),
                                            *({"configurable": {"thread_id": t, "checkpoint_ns": n}}
                                              for t in THREADS[:3] for n in NAMESPACES)]
    for _ in range(8):
        config = data.draw(st.sampled_from(configs))
        found = data.draw(st.sampled_from([None, {}, {"who": "x"}, {"source": "loop", "step": 1}, {"who": None}]))
        limit = data.draw(st.sampled_from([None, 0, 1, 3]))
        before = data.draw(st.sampled_from([None, *({"configurable": {"checkpoint_id": m[2]}} for m in made)]))
        assert ([shape(t) for t in ours.list(config, filter=found, before=before, limit=limit)]
                == [shape(t) for t in stock.list(config, filter=found, before=before, limit=limit)]), (
            config, found, limit, before)


def test_one_call_writing_a_special_channel_twice_keeps_one_write_as_stock_does() -> None:
    results = []
    for saver in (stock_saver(), compact_saver()):
        head = put(saver, "w")
        saver.put_writes(at("w", head), [(ERROR, "first"), (ERROR, "second")], "task-1")
        saver.put_writes(at("w", head), [("a", 1), (INTERRUPT, "i1"), (INTERRUPT, "i2")], "task-2")
        results.append(saver.get_tuple(at("w", head)).pending_writes)
    stock, ours = results
    assert stock == [("task-1", ERROR, "second"), ("task-2", INTERRUPT, "i1"), ("task-2", "a", 1)]
    assert ours == stock


def test_writes_of_one_task_under_two_paths_keep_their_own_order() -> None:
    results = []
    for saver in (stock_saver(), compact_saver()):
        head = put(saver, "w")
        saver.put_writes(at("w", head), [("a", "no path")], "task-1", "")
        saver.put_writes(at("w", head), [(ERROR, "with a path")], "task-1", "~__pregel_pull, a")
        results.append(saver.get_tuple(at("w", head)).pending_writes)
    stock, ours = results
    assert stock == [("task-1", "a", "no path"), ("task-1", ERROR, "with a path")]
    assert ours == stock


@pytest.mark.xfail(strict=True, reason="by design (graphs/sqlite_saver.py): ids that are not UUIDs are stored as "
                                       "TEXT, which SQLite sorts below every UUID's bytes, so one thread mixing both "
                                       "kinds loses the string order; LangGraph makes only UUIDs")
def test_a_thread_with_a_uuid_and_a_text_checkpoint_id_orders_them_as_stock_does() -> None:
    results = []
    for saver in (stock_saver(), compact_saver()):
        first = put(saver, "m")
        put(saver, "m", first, checkpoint_id="zz-not-a-uuid")
        latest = saver.get_tuple({"configurable": {"thread_id": "m"}}).config["configurable"]["checkpoint_id"]
        older = [t.config["configurable"]["checkpoint_id"]
                 for t in saver.list({"configurable": {"thread_id": "m"}}, before=at("m", "zz-not-a-uuid"))]
        results.append((latest, older))
    stock, ours = results
    assert stock[0] == "zz-not-a-uuid" and len(stock[1]) == 1
    assert ours == stock


def test_a_dotted_filter_key_reaches_into_nested_metadata_as_stock_does() -> None:
    counts = []
    for saver in (stock_saver(), compact_saver()):
        put(saver, "n", metadata={"source": "loop", "step": 1, "parents": {"": "abc"}, "run": {"id": 7}})
        counts.append(len(list(saver.list(None, filter={"run.id": 7}))))
    assert counts == [1, 1]


def test_non_uuid_ids_and_uppercase_uuids_round_trip_and_chain() -> None:
    """Ids of one kind only (LangGraph's own are lowercase UUIDs): order, parent links and history
    as stock keeps them."""
    for ids in (["c-1", "c-2", "c-3"], [str(uuid.uuid4()).upper() for _ in range(3)]):
        ids.sort()
        results = []
        for saver in (stock_saver(), compact_saver()):
            parent = None
            for checkpoint_id in ids:
                parent = put(saver, "ids", parent, checkpoint_id=checkpoint_id, a=[checkpoint_id])
                saver.put_writes(at("ids", parent), [("a", [f"w{checkpoint_id}"])], checkpoint_id)
            history = saver.get_delta_channel_history(config=at("ids", ids[-1]), channels=["a"])
            listed = [shape(t) for t in saver.list({"configurable": {"thread_id": "ids"}}, before=at("ids", ids[-1]))]
            results.append((shape(saver.get_tuple({"configurable": {"thread_id": "ids"}})), history, listed))
        assert results[1] == results[0]
        assert results[0][1]["a"]["seed"] == [ids[1]]


# -- a graph with interrupts, a subgraph, forks and a delta channel --------------------------------


def append_batch(state: list[str] | None, writes: list[list[str]]) -> list[str]:
    out = list(state or [])
    for write in writes:
        out.extend(write)
    return out


Log = Annotated[list[str], DeltaChannel(append_batch, snapshot_frequency=2)]


class InnerState(TypedDict, total=False):
    log: Log


class OuterState(TypedDict, total=False):
    log: Log
    turn: int


def inner_ask(state: InnerState) -> dict[str, Any]:
    answer = interrupt({"inner": len(state.get("log", []))})
    return {"log": [f"inner:{answer}"]}


def start_node(state: OuterState) -> dict[str, Any]:
    return {"log": ["start"], "turn": state.get("turn", 0) + 1}


def left_node(state: OuterState) -> dict[str, Any]:
    return {"log": ["left"]}


def right_node(state: OuterState) -> dict[str, Any]:
    return {"log": ["right", "right2"]}


def ask_node(state: OuterState) -> dict[str, Any]:
    answer = interrupt({"question": len(state["log"])})
    return {"log": [f"answer:{answer}"]}


def hitl_graph(checkpointer: Any) -> Any:
    """start fans out to left and right (two tasks writing the delta channel in one step: their
    order is writes_sort_key's), both lead to ask (an interrupt), then to a subgraph with its own
    checkpoints (namespace ``sub``) and an interrupt of its own."""
    inner = StateGraph(InnerState)
    inner.add_node("inner_ask", inner_ask)
    inner.add_edge(START, "inner_ask")
    graph = StateGraph(OuterState)
    for name, node in (("start", start_node), ("left", left_node), ("right", right_node), ("ask", ask_node)):
        graph.add_node(name, node)
    graph.add_node("sub", inner.compile(checkpointer=True))
    graph.add_edge(START, "start")
    for a, b in (("start", "left"), ("start", "right"), ("left", "ask"), ("right", "ask"), ("ask", "sub"),
                 ("sub", END)):
        graph.add_edge(a, b)
    return graph.compile(checkpointer=checkpointer)


HITL = {"configurable": {"thread_id": "hitl"}}


def snap(state: Any) -> tuple[Any, ...]:
    return (state.values, state.next, [tuple(i.value for i in t.interrupts) for t in state.tasks],
            state.metadata.get("source"), state.metadata.get("step"))


def hitl_first_half(graph: Any) -> list[Any]:
    seen = []
    graph.invoke({"log": ["hi"]}, HITL)
    seen.append(snap(graph.get_state(HITL)))
    graph.invoke(Command(resume="yes"), HITL)
    seen.append(snap(graph.get_state(HITL)))
    seen.append([snap(t.state) for t in graph.get_state(HITL, subgraphs=True).tasks if t.state is not None])
    return seen


def hitl_second_half(graph: Any) -> list[Any]:
    seen = []
    graph.invoke(Command(resume="deep"), HITL)
    seen.append(snap(graph.get_state(HITL)))
    graph.update_state(HITL, {"log": ["edited"]}, as_node="sub")
    seen.append(snap(graph.get_state(HITL)))
    graph.invoke({"log": ["again"]}, HITL)
    history = list(graph.get_state_history(HITL))
    seen.append([snap(s) for s in history])
    past = [s for s in history if s.next == ("ask",)][-1]  # the first turn, waiting for its answer
    forked = graph.update_state(past.config, {"log": ["forked"]}, as_node="left")
    graph.invoke(None, forked)
    seen.append(snap(graph.get_state(HITL)))
    graph.invoke(Command(resume="fork-answer"), HITL)
    seen.append(snap(graph.get_state(HITL)))
    replayed = [s for s in graph.get_state_history(HITL) if s.next == ("left", "right")][-1]
    graph.invoke(None, replayed.config)  # replay from before the fan-out
    seen.append(snap(graph.get_state(HITL)))
    seen.append([snap(s) for s in graph.get_state_history(HITL)])
    return seen


def test_interrupts_resumes_update_state_forks_and_replays_read_as_on_the_stock_saver(tmp_path: Path) -> None:
    expected = hitl_first_half(hitl_graph(stock_saver(tmp_path / "stock.sqlite")))
    expected += hitl_second_half(hitl_graph(stock_saver(tmp_path / "stock.sqlite")))
    db = tmp_path / "compact.sqlite"
    got = hitl_first_half(hitl_graph(compact_saver(db)))
    got += hitl_second_half(hitl_graph(compact_saver(db)))  # a second saver: nothing kept in memory helps
    assert got == expected
    memory = InMemorySaver(serde=serializer())
    assert got == hitl_first_half(hitl_graph(memory)) + hitl_second_half(hitl_graph(memory))
    with sqlite3.connect(db) as conn:
        namespaces = {r[0] for r in conn.execute("SELECT DISTINCT ns FROM handoff_checkpoints")}
    assert namespaces == {"", "sub"}, "the subgraph keeps its checkpoints in its own namespace"


def test_a_stock_file_left_mid_interrupt_moves_in_and_the_thread_resumes_as_on_stock(tmp_path: Path) -> None:
    """The thread is waiting inside the subgraph (its pending INTERRUPT stored in namespace
    ``sub``) when the file changes hands: the rest of the run reads as if stock had kept it."""
    reference = tmp_path / "reference.sqlite"
    hitl_first_half(hitl_graph(stock_saver(reference)))
    expected = hitl_second_half(hitl_graph(stock_saver(reference)))
    db = tmp_path / "moved.sqlite"
    hitl_first_half(hitl_graph(stock_saver(db)))
    ours = compact_saver(db)
    assert {"checkpoints", "writes"}.isdisjoint(tables(db))
    assert hitl_second_half(hitl_graph(ours)) == expected


# -- files the stock saver wrote -------------------------------------------------------------------


def fill_stock_file(saver: SqliteSaver) -> None:
    """Three threads, a subgraph namespace, a fork, and pending writes of every kind LangGraph
    stores: regular ones from two tasks with paths, ERROR, INTERRUPT, RESUME and the null task's."""
    for thread in ("alpha", "βeta 🙂", "'; DELETE FROM writes; --"):
        root = put(saver, thread, a=["seed"], metadata={"source": "input", "step": -1, "thread": thread})
        one = put(saver, thread, root, metadata={"source": "loop", "step": 0})
        saver.put_writes(at(thread, root), [("a", ["from root"])], "00000000-0000-0000-0000-000000000000")
        saver.put_writes(at(thread, one), [("a", ["left"]), ("b", 1)], str(uuid.uuid4()), "~__pregel_pull, left")
        saver.put_writes(at(thread, one), [("a", ["right"])], str(uuid.uuid4()), "~__pregel_pull, right")
        two = put(saver, thread, one, metadata={"source": "loop", "step": 1, "nested": {"k": [1, 2]}})
        failing = str(uuid.uuid4())
        saver.put_writes(at(thread, two), [("a", ["ok"])], str(uuid.uuid4()), "~__pregel_pull, ok")
        saver.put_writes(at(thread, two), [(ERROR, "ValueError('boom')")], failing, "~__pregel_pull, flaky")
        saver.put_writes(at(thread, two), [(INTERRUPT, [{"value": "ask?", "id": "i-1"}])], str(uuid.uuid4()),
                         "~__pregel_pull, ask")
        saver.put_writes(at(thread, two), [(RESUME, "yes")], "00000000-0000-0000-0000-000000000000")
        put(saver, thread, one, metadata={"source": "fork", "step": 1})  # a fork beside ``two``
        sub_root = put(saver, thread, ns="sub:1", b=2)
        saver.put_writes(at(thread, sub_root, "sub:1"), [("b", 3), (INTERRUPT, "inner")], str(uuid.uuid4()),
                         "~__pregel_pull, inner")


def everything(saver: Any) -> dict[str, Any]:
    """What a saver reads back: each thread's latest per namespace, every checkpoint with its
    writes and delta history, and lists with filters."""
    listed = list(saver.list(None))  # stock's list holds its lock between items: no get_tuple inside it
    seen: dict[str, Any] = {"all": [shape(t) for t in listed]}
    for found in listed:
        config = found.config
        key = json.dumps(config["configurable"], sort_keys=True)
        seen[key] = (shape(saver.get_tuple(config)),
                     saver.get_delta_channel_history(config=config, channels=["a", "b"]))
    for thread in ("alpha", "βeta 🙂", "'; DELETE FROM writes; --"):
        for ns in ("", "sub:1"):
            seen[f"latest {thread} {ns}"] = shape(saver.get_tuple({"configurable": {"thread_id": thread,
                                                                                 "checkpoint_ns": ns}}))
        seen[f"list {thread}"] = [shape(t) for t in saver.list({"configurable": {"thread_id": thread}},
                                                               filter={"source": "loop"}, limit=1)]
    return seen


def drop_task_path_column(db: Path) -> None:
    """The ``writes`` table as stock SqliteSaver made it before ``task_path`` existed."""
    conn = sqlite3.connect(db)
    try:
        conn.executescript(
            "CREATE TABLE old_writes (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', "
            "checkpoint_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL, channel TEXT NOT NULL, "
            "type TEXT, value BLOB, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx));"
            "INSERT INTO old_writes SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, "
            "type, value FROM writes; DROP TABLE writes; ALTER TABLE old_writes RENAME TO writes;")
    finally:
        conn.close()


def copy_db(source: Path, target: Path) -> None:
    """A copy of ``source`` with what its WAL holds (copying the file alone can miss that)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.mark.parametrize("schema", ["current", "before task_path"])
def test_a_stock_file_with_threads_namespaces_forks_and_special_writes_moves_in_whole(
        tmp_path: Path, schema: str) -> None:
    db = tmp_path / "stock.sqlite"
    writer = stock_saver(db)
    fill_stock_file(writer)
    writer.conn.close()
    if schema == "before task_path":
        drop_task_path_column(db)
        with sqlite3.connect(db) as conn:
            assert "task_path" not in {r[1] for r in conn.execute("PRAGMA table_info(writes)")}
    reference = tmp_path / "reference.sqlite"
    copy_db(db, reference)
    expected = everything(stock_saver(reference))
    assert len(expected["all"]) == 15
    ours = compact_saver(db)
    assert everything(ours) == expected
    assert {"checkpoints", "writes"}.isdisjoint(tables(db))
    assert everything(compact_saver(db)) == expected, "a second opening finds the same, moving nothing again"


class FailingOnce:
    """A serializer that raises once, on its ``fail_at``-th ``loads_typed`` (a disk or memory error
    in the middle of a move, say), and otherwise does what ``serializer()`` does."""

    def __init__(self, fail_at: int) -> None:
        self.inner: SerializerProtocol = serializer()
        self.calls = 0
        self.fail_at = fail_at

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.inner.dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("disk I/O error, once")
        return self.inner.loads_typed(data)


def stock_file_with_two_threads(db: Path) -> None:
    writer = stock_saver(db)
    for thread in ("a", "b"):
        saved = put(writer, thread, a=[thread])
        writer.put_writes(at(thread, saved), [("a", [f"hello {thread}"])], str(uuid.uuid4()))
    writer.conn.close()


def test_a_move_that_failed_once_and_is_retried_leaves_every_thread_readable(tmp_path: Path) -> None:
    db = tmp_path / "stock.sqlite"
    stock_file_with_two_threads(db)
    saver = CompactSqliteSaver(sqlite_connect(db), serde=FailingOnce(fail_at=2))
    with pytest.raises(OSError):
        saver.setup()
    assert {"checkpoints", "writes"} <= tables(db), "the failed move changed nothing"
    saver.setup()  # the next call on the saver tries again (every method calls setup())
    assert {"checkpoints", "writes"}.isdisjoint(tables(db))
    fresh = compact_saver(db)  # another process, say the CLI
    assert fresh.get_tuple({"configurable": {"thread_id": "a"}}) is not None
    assert fresh.get_tuple({"configurable": {"thread_id": "b"}}) is not None
    put(fresh, "c", a=["new"])
    assert fresh.get_tuple({"configurable": {"thread_id": "c"}}).checkpoint["channel_values"] == {"a": ["new"]}
    assert [t.config["configurable"]["thread_id"] for t in fresh.list({"configurable": {"thread_id": "c"}})] == [
        "c"], "a new thread must not take over an orphaned thread's rows"


def slow_move(db: Path, marker: Path) -> None:
    """Child process: starts moving ``db`` and stalls inside the transaction until killed."""
    class Stalling(FailingOnce):
        def loads_typed(self, data: tuple[str, bytes]) -> Any:
            marker.touch()
            time.sleep(60)
            return super().loads_typed(data)

    CompactSqliteSaver(sqlite_connect(db), serde=Stalling(fail_at=0)).setup()


def test_a_move_killed_half_way_leaves_the_file_as_it_was_and_the_next_opening_moves_it(tmp_path: Path) -> None:
    db, marker = tmp_path / "stock.sqlite", tmp_path / "moving"
    stock_file_with_two_threads(db)
    expected = everything(stock_saver(db))
    child = multiprocessing.get_context("fork").Process(target=slow_move, args=(db, marker))
    child.start()
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the child never began the move"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM writes").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM handoff_checkpoints").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM handoff_threads").fetchone()[0] == 0
    assert everything(compact_saver(db)) == expected


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)


def test_a_read_only_compact_file_can_be_read(tmp_path: Path) -> None:
    db = tmp_path / "compact.sqlite"
    writer = compact_saver(db)
    head = put(writer, "r", a=["x"])
    writer.put_writes(at("r", head), [("a", ["y"])], "task")
    expected = everything(writer)
    writer.conn.close()
    reader = CompactSqliteSaver(read_only(db), serde=serializer())
    assert everything(reader) == expected
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        put(reader, "r", head)


def test_a_read_only_stock_file_says_it_must_be_opened_writable_once(tmp_path: Path) -> None:
    # Its checkpoints must move into the compact tables before this saver reads them, and a read-only
    # connection cannot move them: a clear error, and the file stays as it was.
    db = tmp_path / "stock.sqlite"
    writer = stock_saver(db)
    fill_stock_file(writer)
    writer.conn.close()
    expected = everything(SqliteSaver(read_only(db), serde=serializer()))
    with pytest.raises(sqlite3.OperationalError, match="open it once with write access"):
        CompactSqliteSaver(read_only(db), serde=serializer()).setup()
    assert everything(SqliteSaver(read_only(db), serde=serializer())) == expected
    assert everything(CompactSqliteSaver(sqlite3.connect(db, check_same_thread=False), serde=serializer())) == expected


# -- two processes on one file ---------------------------------------------------------------------

ROUNDS = 150


def write_beside_another(db: Path, common: str, me: int, barrier: Any) -> None:
    """Child process: its own chain on a shared thread, a thread of its own each round, and writes
    to the same tasks of one shared checkpoint as the other process (the merge path)."""
    saver = compact_saver(db)
    barrier.wait()
    parent = None
    for n in range(ROUNDS):
        parent = put(saver, "shared", parent, a=[f"p{me}-{n}"], metadata={"source": "loop", "step": n, "me": me})
        saver.put_writes(at("shared", parent), [("a", [f"w{me}-{n}"])], f"task-{me}")
        put(saver, f"own-{me}-{n}")
        writes = [("a", [f"p{me} first"])] if me == 0 else [("a", [f"p{me} first"]), ("b", f"p{me} second")]
        saver.put_writes(at("common", common), writes, f"task-{n}")
    saver.conn.close()


def move_beside_another(db: Path, barrier: Any) -> None:
    saver = CompactSqliteSaver(sqlite_connect(db), serde=serializer())
    barrier.wait()
    saver.setup()
    saver.conn.close()


def run_two(target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]) -> None:
    """``target(*args_for(me), barrier)`` in two forked processes that start together."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    children = [context.Process(target=target, args=(*args_for(me), barrier)) for me in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]


def test_two_processes_writing_one_file_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    creator = compact_saver(db)
    common = put(creator, "common")
    creator.conn.close()  # no connection open across the fork
    run_two(write_beside_another, lambda me: (db, common, me))
    saver = compact_saver(db)
    for me in range(2):
        chain = list(saver.list({"configurable": {"thread_id": "shared"}}, filter={"me": me}))
        assert [t.metadata["step"] for t in chain] == list(range(ROUNDS))[::-1]
        assert all(t.pending_writes == [(f"task-{me}", "a", [f"w{me}-{t.metadata['step']}"])] for t in chain)
        newest = chain[0].config
        history = saver.get_delta_channel_history(config=newest, channels=["a"])["a"]
        assert history["seed"] == [f"p{me}-{ROUNDS - 2}"] and history["writes"] == [
            (f"task-{me}", "a", [f"w{me}-{ROUNDS - 2}"])]
        assert all(saver.get_tuple({"configurable": {"thread_id": f"own-{me}-{n}"}}) for n in range(ROUNDS))
    common_writes = saver.get_tuple(at("common", common)).pending_writes
    assert len(common_writes) == 2 * ROUNDS, "each task: idx 0 from whichever came first, idx 1 from process 1"
    assert [w[2] for w in common_writes if w[1] == "b"] == ["p1 second"] * ROUNDS
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT thread_id FROM handoff_threads")]
    assert len(names) == len(set(names)) == 2 + 2 * ROUNDS


def test_two_processes_opening_one_stock_file_at_once_move_it_once(tmp_path: Path) -> None:
    db = tmp_path / "stock.sqlite"
    writer = stock_saver(db)
    fill_stock_file(writer)
    writer.conn.close()
    reference = tmp_path / "reference.sqlite"
    copy_db(db, reference)
    expected = everything(stock_saver(reference))
    run_two(move_beside_another, lambda me: (db,))
    assert {"checkpoints", "writes"}.isdisjoint(tables(db))
    assert everything(compact_saver(db)) == expected


# -- the service and the CLI on one file -----------------------------------------------------------

HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210."
TECHNICAL = "My internet keeps dropping every evening."
WANTS_A_PERSON = "This is useless, I want to speak to a manager."


def test_the_service_writes_a_file_the_cli_then_reads_and_continues(tmp_path: Path) -> None:
    """Two turns, an escalation (an interrupt) and a person's answer (a resume) through the HTTP
    API; then ``handoff threads`` and ``handoff history`` read the same file, and ``handoff run``
    takes the thread on."""
    db = tmp_path / "service.sqlite"
    with TestClient(create_app(f"sqlite:///{db}", model=OfflineChatModel())) as client:
        thread_id = client.post("/threads", json={"graph": "customer-service"}).json()["thread_id"]
        for text in (HELLO, TECHNICAL, WANTS_A_PERSON):
            reply = client.post(f"/threads/{thread_id}/messages", json={"text": text, "stream": False})
            assert reply.status_code == 200, reply.text
        escalation = reply.json()["escalation"]
        assert escalation and escalation["node"] == "human"
        answered = client.post(f"/threads/{thread_id}/escalation", json={
            "reply": "Jo here; credited.", "hand_back_to": "billing_expert", "escalation_id": escalation["id"],
            "stream": False})
        assert answered.status_code == 200, answered.text
        state = client.get(f"/threads/{thread_id}").json()
    assert state["active_agent"] == "billing_expert" and state["escalation"] is None
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["threads", "--db", str(db), "--json"])
    assert listed.exit_code == 0, listed.output
    [summary] = [t for t in json.loads(listed.stdout) if t["thread_id"] == thread_id]
    assert (summary["active_agent"], summary["turns"]) == ("billing_expert", 3), "the answer resumes turn 3"
    history = runner.invoke(cli_app, ["history", thread_id, "--db", str(db), "--json"])
    assert history.exit_code == 0, history.output
    steps = json.loads(history.stdout)
    assert steps[-1]["active_agent"] == "billing_expert" and {s["turn"] for s in steps} >= {1, 2, 3}
    more = runner.invoke(cli_app, ["run", "customer-service", "-m", "I was charged twice, refund please",
                                   "--thread", thread_id, "--db", str(db), "--json"])
    assert more.exit_code == 0, more.output
    assert [h["request"]["target"] for h in json.loads(more.stdout)["handoffs"]][:2] == [
        "technical_specialist", "human"]
    with open_persistence(f"sqlite:///{db}") as persistence:
        latest = persistence.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}})
    assert latest.checkpoint["channel_values"]["turn"] == 4
    assert {"checkpoints", "writes"}.isdisjoint(tables(db))


def test_the_async_methods_run_a_graph_as_the_sync_ones_do(tmp_path: Path) -> None:
    """The service's path: ainvoke, aget_state, aget_state_history, aupdate_state (each a worker
    thread over the saver's one connection) against the same script run synchronously."""
    expected = hitl_first_half(hitl_graph(compact_saver(tmp_path / "sync.sqlite")))
    graph = hitl_graph(compact_saver(tmp_path / "async.sqlite"))

    async def first_half() -> list[Any]:
        seen = []
        await graph.ainvoke({"log": ["hi"]}, HITL)
        seen.append(snap(await graph.aget_state(HITL)))
        await graph.ainvoke(Command(resume="yes"), HITL)
        seen.append(snap(await graph.aget_state(HITL)))
        seen.append([snap(t.state) for t in (await graph.aget_state(HITL, subgraphs=True)).tasks
                     if t.state is not None])
        await asyncio.gather(*(graph.aget_state(HITL) for _ in range(8)))  # readers at once
        return seen

    assert asyncio.run(first_half()) == expected
    history = [snap(s) for s in hitl_graph(compact_saver(tmp_path / "sync.sqlite")).get_state_history(HITL)]

    async def async_history() -> list[Any]:
        return [snap(s) async for s in graph.aget_state_history(HITL)]

    assert asyncio.run(async_history()) == history
