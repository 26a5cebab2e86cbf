"""One factory for memory, SQLite and PostgreSQL; compressed checkpoints; listing stored threads."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from typer.testing import CliRunner

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL
from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.cli.main import app
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import (
    DICTIONARY,
    STATE_TYPES,
    Persistence,
    PersistenceError,
    ZlibCodec,
    list_threads,
    open_persistence,
    serializer,
)
from handoff.graphs.session import HandoffSession
from handoff.state import HandoffRecord, HandoffRequest

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DICTIONARY_SHA256 = "5c66269ca7596462d40c539976b39709d3168b3d0367e840b6181257cf566fcf"
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


def test_large_blobs_are_compressed_and_old_plain_blobs_still_load() -> None:
    serde = serializer()
    record = HandoffRecord(request=HandoffRequest(source="a", target="b", reason="r" * 50, trigger="rule",
                                                  summary="s" * 2000), outcome="accepted", routed_to="b",
                           latency_ms=1.0)
    value = {"messages": [HumanMessage("x" * 5000, id="h"), AIMessage("y" * 5000, id="a")],
             "handoffs": [record]}
    kind, blob = serde.dumps_typed(value)
    plain = JsonPlusSerializer().dumps_typed(value)
    assert kind == "msgpack+zlibd1"
    assert len(blob) * 5 < len(plain[1])
    assert serde.loads_typed((kind, blob)) == value
    assert serde.loads_typed(plain) == value, "checkpoints written before compression still load"
    assert serde.loads_typed(("msgpack+zlib", zlib.compress(plain[1]))) == value, (
        "checkpoints written with plain zlib still load")
    assert serde.dumps_typed(3) == ("msgpack+raw", plain_small := JsonPlusSerializer().dumps_typed(3)[1])
    assert serde.loads_typed(("msgpack+raw", plain_small)) == 3
    with pytest.raises(ValueError, match="unknown checkpoint codec"):
        ZlibCodec().decrypt("rot13", b"")


def test_the_checkpoint_dictionary_is_frozen_and_pays() -> None:
    # Blobs written with codec zlibd1 load only with these very bytes: a new dictionary needs a
    # new file and codec name (scripts/make_checkpoint_dictionary.py), never a replaced one.
    assert hashlib.sha256(DICTIONARY.read_bytes()).hexdigest() == DICTIONARY_SHA256
    with open_persistence("memory") as persistence:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        session = HandoffSession(graph)
        for text in ("Hi, this is Sam Lee, account ACC-1002.", "My router keeps rebooting at night.",
                     "Also please refund the double charge on INV-2002."):
            session.send(text)
        checkpoint = graph.checkpointer.get_tuple(session.state_config).checkpoint
    raw = JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES).dumps_typed(checkpoint)[1]
    kind, primed = serializer().dumps_typed(checkpoint)
    assert kind == "msgpack+zlibd1"
    assert len(primed) < 0.9 * len(zlib.compress(raw, 6)), "the dictionary no longer pays for itself"


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
