"""The SQLite saver's channel versions carry no random digits, stay in LangGraph's format and order, and
threads move between it and LangGraph's stock savers both ways."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence, serializer
from handoff.graphs.sqlite_saver import CompactSqliteSaver, next_version
from tests.support.long_conversation import scripted_model, user_lines

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t"}}


def _graph(checkpointer: Any, store: Any = None) -> Any:
    return build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=checkpointer, store=store)


def test_a_new_thread_numbers_its_versions_without_random_digits(tmp_path: Path) -> None:
    with open_persistence(f"sqlite:///{tmp_path / 'new.sqlite'}") as persistence:
        assert isinstance(persistence.checkpointer, CompactSqliteSaver)
        graph = _graph(persistence.checkpointer, persistence.store)
        for line in user_lines(4, every=2):
            graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
        versions = persistence.checkpointer.get_tuple(CONFIG).checkpoint["channel_versions"]
    assert versions and all(isinstance(v, str) and v.isdigit() and len(v) == 32 for v in versions.values()), versions


def test_versions_keep_langgraphs_order_against_the_stock_format() -> None:
    stock = SqliteSaver.__new__(SqliteSaver)  # get_next_version reads no connection
    ours = next_version(None)
    theirs = stock.get_next_version(ours, None)
    assert ours < theirs < next_version(theirs) < stock.get_next_version(next_version(theirs), None)
    assert int(next_version(theirs)) == 3


def test_a_thread_begun_with_long_versions_goes_on_with_them(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    lines = user_lines(6, every=2)
    with open_persistence(f"sqlite:///{db}") as persistence:  # the store; the thread begins on the stock saver
        conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        try:
            graph = _graph(SqliteSaver(conn, serde=serializer()), persistence.store)
            for line in lines[:3]:
                graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
            before = graph.get_state(CONFIG).values
        finally:
            conn.close()
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = _graph(persistence.checkpointer, persistence.store)
        for line in lines[3:]:
            out = graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
        versions = persistence.checkpointer.get_tuple(CONFIG).checkpoint["channel_versions"]
    assert all(isinstance(v, str) for v in versions.values()), versions
    assert any("." not in v for v in versions.values()), "versions written since carry no random digits"
    assert out["turn"] == before["turn"] + 3
    assert out["transcript_len"] > before["transcript_len"]
    said = [m.content for m in out["messages"] if isinstance(m, HumanMessage)]
    assert said[-1] == lines[-1].text
