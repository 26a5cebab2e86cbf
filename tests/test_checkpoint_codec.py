"""Checkpoint blobs: zstd with a frozen dictionary, and every earlier codec still loads."""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zstandard
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from benchmarks.old_codec import zlib_serializer
from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL
from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import (
    DICTIONARY,
    STATE_TYPES,
    ZLIB_DICTIONARY,
    CheckpointCodec,
    Lender,
    open_persistence,
    serializer,
)
from handoff.graphs.session import HandoffSession
from handoff.graphs.sqlite_saver import unpack
from handoff.state import HandoffRecord, HandoffRequest

FROZEN = {
    ZLIB_DICTIONARY.name: "5c66269ca7596462d40c539976b39709d3168b3d0367e840b6181257cf566fcf",
    DICTIONARY.name: "7c58f023d68ba76dafcfd036cb17d37d1ce5b8d4b19315019c3b7960f073070e",
}
PLAIN = JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def sample_value() -> dict[str, object]:
    record = HandoffRecord(request=HandoffRequest(source="a", target="b", reason="r" * 50, trigger="rule",
                                                  summary="s" * 2000), outcome="accepted", routed_to="b",
                           latency_ms=1.0)
    return {"messages": [HumanMessage("x" * 5000, id="h"), AIMessage("y" * 5000, id="a")],
            "handoffs": [record]}


def test_large_blobs_are_compressed_with_zstd_and_small_ones_kept_plain() -> None:
    serde, value = serializer(), sample_value()
    kind, blob = serde.dumps_typed(value)
    assert kind == "msgpack+zstdd2"
    assert len(blob) * 5 < len(PLAIN.dumps_typed(value)[1])
    assert serde.loads_typed((kind, blob)) == value
    small = serde.dumps_typed(3)
    assert small == ("msgpack+raw", JsonPlusSerializer().dumps_typed(3)[1])
    assert serde.loads_typed(small) == 3


def test_blobs_of_every_earlier_codec_still_load() -> None:
    serde, value = serializer(), sample_value()
    _, raw = PLAIN.dumps_typed(value)
    deflate = zlib.compressobj(6, zdict=ZLIB_DICTIONARY.read_bytes())
    zlib_d1 = deflate.compress(raw) + deflate.flush()
    assert serde.loads_typed(("msgpack", raw)) == value, "written before compression"
    assert serde.loads_typed(("msgpack+zlib", zlib.compress(raw))) == value, "written with plain zlib"
    assert serde.loads_typed(("msgpack+zlibd1", zlib_d1)) == value, "written with zlib and dictionary d1"
    with pytest.raises(ValueError, match="unknown checkpoint codec"):
        CheckpointCodec().decrypt("rot13", b"")


def blob_types(db: Path) -> set[str]:
    """The codecs of a file's checkpoints; blobs too small to compress (``+raw``, which every codec
    writes the same way) left out."""
    with sqlite3.connect(db) as conn:
        types = {unpack(row[0])[0] for row in conn.execute("SELECT checkpoint FROM handoff_checkpoints")}
    return types - {"msgpack+raw"}


@pytest.mark.parametrize(("earlier", "kind"), [(zlib_serializer(), "msgpack+zlibd1"), (PLAIN, "msgpack")])
def test_a_conversation_stored_by_an_earlier_codec_continues(
    tmp_path: Path, earlier: SerializerProtocol, kind: str
) -> None:
    db = tmp_path / "earlier.sqlite"
    transfer = calls(tool_call("transfer_to_technical_specialist", {
        "reason": "line fault", "account_id": "ACC-1001", "symptoms": "drops"}, "t1"))
    model = ScriptedChatModel(scripts={GENERAL: [transfer], TECHNICAL: ["Technical here.", "Still technical."]})
    with open_persistence(f"sqlite:///{db}", serde=earlier) as before:
        graph = build_customer_service_graph(model=model, office=BackOffice())
        HandoffSession(graph.compile(checkpointer=before.checkpointer, store=before.store), "t").send(
            "my internet drops")
    assert blob_types(db) == {kind}

    with open_persistence(f"sqlite:///{db}") as after:
        compiled = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=after.checkpointer, store=after.store)
        session = HandoffSession(compiled, "t")
        history = list(compiled.get_state_history(session.state_config))
        result = session.send("anything else?")
    assert history and all(snapshot.values["messages"] for snapshot in history[:-1])
    assert (result.active_agent, result.reply) == (TECHNICAL, "Still technical.")
    assert [(r.source, r.target) for r in result.handoffs] == [(GENERAL, TECHNICAL)]
    assert blob_types(db) == {kind, "msgpack+zstdd2"}


def test_the_dictionaries_are_frozen_and_the_zstd_one_pays() -> None:
    # Blobs written with a dictionary load only with its very bytes: a new dictionary needs a new
    # file and codec name (scripts/make_checkpoint_dictionary.py), never a replaced one.
    for path in (ZLIB_DICTIONARY, DICTIONARY):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == FROZEN[path.name], path.name
    with open_persistence("memory") as persistence:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        session = HandoffSession(graph)
        for text in ("Hi, this is Sam Lee, account ACC-1002.", "My router keeps rebooting at night.",
                     "Also please refund the double charge on INV-2002."):
            session.send(text)
        checkpoint = graph.checkpointer.get_tuple(session.state_config).checkpoint
    raw = PLAIN.dumps_typed(checkpoint)[1]
    kind, primed = serializer().dumps_typed(checkpoint)
    assert kind == "msgpack+zstdd2"
    assert len(primed) < 0.9 * len(zstandard.ZstdCompressor(level=3).compress(raw)), (
        "the dictionary no longer pays for itself")


def test_the_lender_never_hands_one_object_to_two_callers_at_once() -> None:
    lender = Lender(object)
    first, second = lender.take(), lender.take()
    assert first is not second
    lender.give_back(first)
    assert lender.take() is first, "a returned object is lent again instead of a new one made"


def test_threads_compressing_at_once_each_get_their_own_blob_back() -> None:
    serde = serializer()
    values = [{"n": n, "text": f"message {n} " * (200 + n)} for n in range(64)]

    def round_trip(value: dict[str, object]) -> object:
        return serde.loads_typed(serde.dumps_typed(value))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(round_trip, values)) == values
