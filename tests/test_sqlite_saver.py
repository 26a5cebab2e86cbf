"""The SQLite saver numbers new threads' channel versions 1, 2, 3..., and threads begun with LangGraph's
long random versions go on with them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence, serializer
from handoff.graphs.sqlite_saver import CompactSqliteSaver
from tests.support.long_conversation import scripted_model, user_lines

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t"}}


def _graph(checkpointer: Any, store: Any = None) -> Any:
    return build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=checkpointer, store=store)


def test_a_new_thread_counts_its_versions_in_small_ints(tmp_path: Path) -> None:
    with open_persistence(f"sqlite:///{tmp_path / 'new.sqlite'}") as persistence:
        assert isinstance(persistence.checkpointer, CompactSqliteSaver)
        graph = _graph(persistence.checkpointer, persistence.store)
        for line in user_lines(4, every=2):
            graph.invoke({"messages": [HumanMessage(line.text)]}, CONFIG)
        versions = persistence.checkpointer.get_tuple(CONFIG).checkpoint["channel_versions"]
    assert versions and all(isinstance(v, int) for v in versions.values()), versions


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
    assert out["turn"] == before["turn"] + 3
    assert out["transcript_len"] > before["transcript_len"]
    said = [m.content for m in out["messages"] if isinstance(m, HumanMessage)]
    assert said[-1] == lines[-1].text
