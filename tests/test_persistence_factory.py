"""One factory for memory, SQLite and PostgreSQL; SQLite file settings; listing stored threads."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.cli.main import app
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import Persistence, PersistenceError, list_threads, open_persistence
from handoff.graphs.session import HandoffSession

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TRANSFER = calls(tool_call("transfer_to_technical_specialist", {
    "reason": "line fault", "account_id": "ACC-1001", "symptoms": "drops"}, "t1"))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def persistence(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Persistence]:
    url = {"memory": "memory", "sqlite": f"sqlite:///{tmp_path / 'p.sqlite'}", "postgres": POSTGRES_URL}
    with open_persistence(url[request.param]) as opened:
        yield opened


def converse(persistence: Persistence, thread: str, *, hand_off: bool) -> HandoffSession:
    """Two turns; with ``hand_off`` General Support hands to the Technical Specialist in the first."""
    scripts = {GENERAL: [TRANSFER, "hello again"] if hand_off else ["hi", "hello again"],
               TECHNICAL: ["Technical here.", "Still technical."]}
    graph = build_customer_service_graph(model=ScriptedChatModel(scripts=scripts), office=BackOffice())
    session = HandoffSession(graph.compile(checkpointer=persistence.checkpointer, store=persistence.store),
                             thread)
    session.send("my internet drops")
    session.send("anything else?")
    return session


def test_each_backend_keeps_state_and_journal_per_thread(persistence: Persistence) -> None:
    thread = f"factory-{uuid.uuid4().hex}"
    session = converse(persistence, thread, hand_off=True)
    result = session.result()
    assert result.active_agent == TECHNICAL
    assert [(r.source, r.target) for r in result.handoffs] == [(GENERAL, TECHNICAL)]
    assert result.reply == "Still technical."


def test_list_threads_shows_the_newest_threads_first(persistence: Persistence) -> None:
    first, second = f"older-{uuid.uuid4().hex}", f"newer-{uuid.uuid4().hex}"
    converse(persistence, first, hand_off=True)
    converse(persistence, second, hand_off=False)

    found = list_threads(persistence.checkpointer, limit=2)

    assert [t.thread_id for t in found] == [second, first]
    newer, older = found
    assert (newer.active_agent, newer.turns, newer.handoffs) == (GENERAL, 2, 0)
    assert (older.active_agent, older.turns, older.handoffs) == (TECHNICAL, 2, 1)
    assert older.messages > newer.messages >= 4
    assert newer.updated_at > older.updated_at


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notes.txt", "unrecognised persistence URL"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to PostgreSQL"),
    ],
)
def test_unusable_urls_raise_a_readable_error(url: str, message: str) -> None:
    with pytest.raises(PersistenceError, match=message), open_persistence(url):
        pass


def test_sqlite_accepts_plain_paths_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "conversations.db"
    with open_persistence(str(path)) as opened:
        assert opened.url == f"sqlite:///{path}"
    assert path.exists()


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_sqlite_file_gets_8_kib_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    new, old = tmp_path / "new.sqlite", tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # a database written before 8 KiB pages, with a table in it
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE earlier (x)")
    for path in (new, old):
        with open_persistence(f"sqlite:///{path}") as opened:
            session = converse(opened, "pages", hand_off=True)
            assert session.result().reply == "Still technical."
    assert (page_size(new), page_size(old)) == (8192, 4096)
    with open_persistence(f"sqlite:///{old}") as reopened:  # and the old file keeps working
        assert [t.thread_id for t in list_threads(reopened.checkpointer)] == ["pages"]


def test_the_service_opens_new_sqlite_files_with_8_kib_pages(tmp_path: Path) -> None:
    from handoff.service.storage import open_service_persistence

    async def open_and_close(path: Path) -> None:
        async with open_service_persistence(f"sqlite:///{path}"):
            pass

    asyncio.run(open_and_close(tmp_path / "service.sqlite"))
    assert page_size(tmp_path / "service.sqlite") == 8192


def test_cli_threads_lists_what_the_cli_stored(tmp_path: Path) -> None:
    runner = CliRunner()
    ran = runner.invoke(app, ["run", "customer-service", "-m", "My internet keeps dropping, ACC-1001", "--json"])
    assert ran.exit_code == 0, ran.output
    thread = json.loads(ran.stdout)["thread_id"]

    listed = runner.invoke(app, ["threads", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["thread_id"], r["active_agent"], r["turns"], r["handoffs"]) for r in rows] == [
        (thread, TECHNICAL, 1, 1)]

    table = runner.invoke(app, ["threads"], terminal_width=200)
    assert thread in table.stdout and TECHNICAL in table.stdout
