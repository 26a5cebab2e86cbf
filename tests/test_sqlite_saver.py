"""The compact SQLite saver keeps LangGraph's checkpointer contract in fewer bytes: a task's writes
in one row, ids as bytes, a thread named once; files a stock ``SqliteSaver`` wrote move into it
whole, and their threads go on."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import ERROR, INTERRUPT, empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.memory import InMemoryStore

from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import list_threads, open_persistence, serializer, sqlite_connect
from handoff.graphs.sqlite_saver import CompactSqliteSaver, id_key, id_text, next_version
from tests.support.long_conversation import scripted_model, user_lines

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t"}}


def _graph(checkpointer: Any, store: Any = None) -> Any:
    return build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=checkpointer, store=store)


def _saver(tmp_path: Path) -> CompactSqliteSaver:
    saver = CompactSqliteSaver(sqlite_connect(tmp_path / "s.sqlite"), serde=serializer())
    saver.setup()
    return saver


def _put(saver: CompactSqliteSaver, thread: str, parent: str | None = None, **values: Any) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = dict(values)
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if parent:
        conf["checkpoint_id"] = parent
    return saver.put({"configurable": conf}, checkpoint, {"source": "loop", "step": 1, "who": thread}, {})[
        "configurable"]["checkpoint_id"]


def _at(thread: str, checkpoint_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


def test_a_conversation_stores_one_row_per_task_and_no_text_ids(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    with open_persistence(f"sqlite:///{db}") as persistence:
        assert isinstance(persistence.checkpointer, CompactSqliteSaver)
        graph = _graph(persistence.checkpointer, persistence.store)
        for line in user_lines(6, every=2):
            out = graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
        versions = persistence.checkpointer.get_tuple(CONFIG).checkpoint["channel_versions"]
        history = list(graph.get_state_history(CONFIG))
    assert versions and all(isinstance(v, int) for v in versions.values()), versions
    assert out["turn"] == 6 and history[0].values["turn"] == 6
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"checkpoints", "writes"}.isdisjoint(tables), "no stock tables beside the compact ones"
        kinds = conn.execute("SELECT DISTINCT typeof(id), length(id) FROM handoff_checkpoints").fetchall()
        rows, tasks = conn.execute("SELECT COUNT(*), COUNT(DISTINCT checkpoint || task) FROM handoff_writes").fetchone()
    assert kinds == [("blob", 16)]
    assert rows == tasks, "a task's writes are one row"


def test_pending_writes_come_back_in_langgraphs_order_and_keep_stocks_replace_rules(tmp_path: Path) -> None:
    saver = _saver(tmp_path)
    head = _put(saver, "w")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    saver.put_writes(_at("w", head), [("b", 1), ("a", bytearray(b"x"))], second, "~path/2")
    saver.put_writes(_at("w", head), [("c", 3)], first, "~path/1")
    saver.put_writes(_at("w", head), [("c", "again")], first, "~path/1")  # an index already stored is kept
    saver.put_writes(_at("w", head), [(ERROR, "boom")], first, "~path/1")
    saver.put_writes(_at("w", head), [(ERROR, "boom, again")], first, "~path/1")  # special channels replace
    saver.put_writes(_at("w", head), [(INTERRUPT, None)], first, "~path/1")
    pending = saver.get_tuple(_at("w", head)).pending_writes
    assert pending == [(first, INTERRUPT, None), (first, ERROR, "boom, again"), (first, "c", 3),
                       (second, "b", 1), (second, "a", bytearray(b"x"))]
    assert type(pending[-1][2]) is bytearray


def test_get_list_and_delete_follow_the_contract(tmp_path: Path) -> None:
    saver = _saver(tmp_path)
    a1 = _put(saver, "a", messages=["one"])
    a2 = _put(saver, "a", a1, messages=["two"])
    b1 = _put(saver, "b")
    latest = saver.get_tuple({"configurable": {"thread_id": "a"}})
    assert latest.config["configurable"]["checkpoint_id"] == a2 and latest.checkpoint["id"] == a2
    assert latest.parent_config == _at("a", a1)
    assert latest.metadata == {"source": "loop", "step": 1, "who": "a"}
    assert [t.checkpoint["id"] for t in saver.list({"configurable": {"thread_id": "a"}})] == [a2, a1]
    assert [t.checkpoint["id"] for t in saver.list(None, filter={"who": "b"})] == [b1]
    assert [t.checkpoint["id"] for t in saver.list(None, limit=2)] == [b1, a2]
    assert [t.checkpoint["id"] for t in saver.list({"configurable": {"thread_id": "a"}}, before=_at("a", a2))] == [a1]
    assert saver.get_tuple({"configurable": {"thread_id": "nobody"}}) is None
    assert list(saver.list({"configurable": {"thread_id": "nobody"}})) == []
    assert saver.latest(5) == [("b", b1), ("a", a2)]
    saver.delete_thread("a")
    assert saver.get_tuple({"configurable": {"thread_id": "a"}}) is None
    assert saver.get_tuple({"configurable": {"thread_id": "b"}}).checkpoint["id"] == b1


def test_ids_that_are_not_uuids_are_kept_as_text() -> None:
    made = str(uuid.uuid4())
    assert id_key(made) == uuid.UUID(made).bytes and id_text(id_key(made)) == made
    for odd in ("not-a-uuid", made.upper(), "0123456789abcdef"):
        assert id_key(odd) == odd and id_text(id_key(odd)) == odd


def test_versions_count_in_integers_and_a_string_thread_stays_in_strings() -> None:
    assert next_version(None) == 1 and next_version(41) == 42
    stock = SqliteSaver.__new__(SqliteSaver)  # get_next_version reads no connection
    theirs = stock.get_next_version(None, None)
    ours = next_version(theirs)
    assert isinstance(ours, str) and theirs < ours < stock.get_next_version(ours, None)
    assert int(ours) == 2


def test_the_async_methods_do_the_same(tmp_path: Path) -> None:
    saver = _saver(tmp_path)

    async def play() -> tuple[Any, list[Any]]:
        saved = await saver.aput({"configurable": {"thread_id": "x", "checkpoint_ns": ""}}, empty_checkpoint(),
                                 {"source": "input", "step": -1}, {})
        await saver.aput_writes(saved, [("messages", [AIMessage("hi")])], str(uuid.uuid4()))
        return await saver.aget_tuple({"configurable": {"thread_id": "x"}}), [t async for t in saver.alist(None)]

    found, listed = asyncio.run(play())
    assert found.pending_writes[0][1:] == ("messages", [AIMessage("hi")])
    assert [t.checkpoint["id"] for t in listed] == [found.checkpoint["id"]]


def test_a_file_the_stock_saver_wrote_moves_in_whole_and_its_thread_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    lines = user_lines(6, every=2)
    with open_persistence(f"sqlite:///{db}") as persistence:  # the store; the thread begins on the stock saver
        conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        try:
            graph = _graph(SqliteSaver(conn, serde=serializer()), persistence.store)
            for line in lines[:3]:
                graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
            before = graph.get_state(CONFIG)
            history_before = [(s.config["configurable"]["checkpoint_id"], s.values.get("turn"), s.next)
                              for s in graph.get_state_history(CONFIG)]
        finally:
            conn.close()
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = _graph(persistence.checkpointer, persistence.store)
        moved = graph.get_state(CONFIG)
        assert moved.values == before.values, "every value, the rebuilt window included, as it was"
        assert [(s.config["configurable"]["checkpoint_id"], s.values.get("turn"), s.next)
                for s in graph.get_state_history(CONFIG)] == history_before
        for line in lines[3:]:
            out = graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
        versions = persistence.checkpointer.get_tuple(CONFIG).checkpoint["channel_versions"]
        assert [t.thread_id for t in list_threads(persistence.checkpointer)] == ["t"]
    assert all(isinstance(v, str) for v in versions.values()), versions
    assert any("." not in v for v in versions.values()), "versions written since carry no random digits"
    assert out["turn"] == before.values["turn"] + 3
    said = [m.content for m in out["messages"] if isinstance(m, HumanMessage)]
    assert said[-1] == lines[-1].text
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"checkpoints", "writes"}.isdisjoint(tables)


def test_a_failed_move_leaves_the_stock_tables_as_they_were(tmp_path: Path) -> None:
    db = tmp_path / "broken.sqlite"
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    stock = SqliteSaver(conn, serde=serializer())
    saved = stock.put({"configurable": {"thread_id": "z", "checkpoint_ns": ""}}, empty_checkpoint(),
                      {"source": "input", "step": -1}, {})
    stock.put_writes(saved, [("messages", "hello")], str(uuid.uuid4()))
    conn.execute("UPDATE writes SET type = 'no-such-type'")
    conn.close()
    saver = CompactSqliteSaver(sqlite_connect(db), serde=serializer())
    with pytest.raises(NotImplementedError):
        saver.setup()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 1
        assert check.execute("SELECT COUNT(*) FROM writes").fetchone()[0] == 1
        assert check.execute("SELECT COUNT(*) FROM handoff_checkpoints").fetchone()[0] == 0


class CountingSerde:
    """The project's serializer, noting every value it loads."""

    def __init__(self) -> None:
        self.inner = serializer()
        self.loaded: list[Any] = []

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.inner.dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        value = self.inner.loads_typed(data)
        self.loaded.append(value)
        return value


def test_the_delta_walk_decodes_only_what_holds_a_seed_or_a_wanted_write(tmp_path: Path) -> None:
    serde = CountingSerde()
    saver = CompactSqliteSaver(sqlite_connect(tmp_path / "walk.sqlite"), serde=serde)
    graph = _graph(saver, InMemoryStore())
    for line in user_lines(8, every=3):
        graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
    wanted = ["messages", "handoffs", "usage"]
    head = saver.get_tuple(CONFIG).config
    serde.loaded.clear()
    fresh = CompactSqliteSaver(sqlite_connect(tmp_path / "walk.sqlite"), serde=serializer())  # remembers nothing
    assert saver.get_delta_channel_history(config=head, channels=wanted) == \
        fresh.get_delta_channel_history(config=head, channels=wanted)
    checkpoints = [v[0] for v in serde.loaded if isinstance(v, list) and isinstance(v[0], dict) and "channel_values" in v[0]]
    task_rows = [v[1] for v in serde.loaded if isinstance(v, list) and isinstance(v[0], str)]
    assert checkpoints and all(set(c["channel_values"]) & set(wanted) for c in checkpoints), \
        "a checkpoint is decoded only for a seed it holds"
    assert task_rows and all({entry[1] for entry in row} & set(wanted) for row in task_rows), \
        "a task row is decoded only for a write the walk wants"
