"""One factory for checkpointer + store: memory, SQLite file, or PostgreSQL by URL.

The checkpointer keeps each step's state (bounded, see state/conversation.py);
the store keeps the full transcript and handoff log (graphs/journal.py). So a
checkpoint's size does not depend on the conversation's length and storage
grows linearly. Checkpoint blobs are msgpack, compressed when they are large
enough to gain from it, by zlib primed with a preset dictionary of typical
checkpoints (the SQLite saver stores the whole state in every checkpoint;
PostgreSQL stores each channel version once).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from handoff.state import HandoffRecord, HandoffRejection, HandoffRequest, InitResult

STATE_TYPES = (HandoffRequest, HandoffRecord, HandoffRejection, InitResult)
"""Classes that checkpoints written before the state kept plain data (state/handoff.py) may hold:
allowed so those checkpoints still load; new checkpoints hold none of them."""

COMPRESS_FROM = 256
"""Blobs shorter than this many bytes are stored as they are."""


DICTIONARY = Path(__file__).with_name("checkpoint-d1.zdict")
"""The preset dictionary of codec ``zlibd1`` (made by scripts/make_checkpoint_dictionary.py). Frozen:
blobs written with it need these very bytes to load; a new dictionary gets a new file and codec name."""


@cache
def _dictionary() -> bytes:
    return DICTIONARY.read_bytes()


class ZlibCodec:
    """Compresses checkpoint blobs; plugs into LangGraph's ``EncryptedSerializer``.

    That wrapper is LangGraph's hook for transforming serialized bytes: it
    stores the codec's name next to the type (``msgpack+zlibd1``), so blobs
    written before compression, or with an earlier codec, or below
    ``COMPRESS_FROM``, still load. ``zlibd1`` is zlib primed with a preset
    dictionary of typical checkpoints: a bounded state is a few kilobytes of
    the same keys, class paths and agent names every time, which plain zlib
    has to spell out again in every blob.
    """

    def __init__(self) -> None:
        self._dictionary = _dictionary()

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Compress ``plaintext`` when that pays; returns ``(codec name, bytes)``."""
        if len(plaintext) >= COMPRESS_FROM:
            compressor = zlib.compressobj(6, zdict=self._dictionary)
            packed = compressor.compress(plaintext) + compressor.flush()
            if len(packed) < len(plaintext):
                return "zlibd1", packed
        return "raw", plaintext

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Undo ``encrypt`` (and the plain ``zlib`` of checkpoints written before ``zlibd1``)."""
        if ciphername == "zlibd1":
            decompressor = zlib.decompressobj(zdict=self._dictionary)
            return decompressor.decompress(ciphertext) + decompressor.flush()
        if ciphername == "zlib":
            return zlib.decompress(ciphertext)
        if ciphername == "raw":
            return ciphertext
        raise ValueError(f"unknown checkpoint codec {ciphername!r}")


def serializer() -> SerializerProtocol:
    """The checkpoint serializer: strict msgpack (plain data, LangChain messages and the earlier state
    types), compressed."""
    return EncryptedSerializer(ZlibCodec(), JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))


@dataclass(frozen=True)
class Persistence:
    """A checkpointer and a store opened together for one URL."""

    checkpointer: BaseCheckpointSaver
    store: BaseStore
    url: str


@dataclass(frozen=True)
class ThreadSummary:
    """One stored conversation, as of its latest checkpoint."""

    thread_id: str
    active_agent: str
    turns: int
    handoffs: int
    messages: int
    updated_at: str


class PersistenceError(ValueError):
    """The persistence URL is unusable; the message says why."""


@contextmanager
def open_persistence(url: str = "memory", *, serde: SerializerProtocol | None = None) -> Iterator[Persistence]:
    """Open a checkpointer and a store for ``url``.

    Args:
        url: ``memory`` (tests, notebooks); ``sqlite:///path/to/file.sqlite`` or a
            plain path ending in ``.sqlite``/``.sqlite3``/``.db`` (the embedded
            default); ``postgresql://user@host:port/db`` (several workers sharing threads).
        serde: The checkpoint serializer; ``serializer()`` unless given (benchmarks
            pass LangGraph's default to compare like with like).

    Raises:
        PersistenceError: the URL is not one of those, or the database cannot be opened.
    """
    serde = serde or serializer()
    with ExitStack() as stack:
        if url == "memory":
            yield Persistence(InMemorySaver(serde=serde), InMemoryStore(), url)
        elif url.startswith(("postgresql://", "postgres://")):
            yield _postgres(stack, url, serde)
        else:
            yield _sqlite(stack, url, serde)


def sqlite_path(url: str) -> Path:
    """The SQLite file a ``sqlite:///...`` URL or plain ``.sqlite`` path names (its folder created).

    Raises:
        PersistenceError: ``url`` names no SQLite file, or its folder cannot be created.
    """
    raw = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if not raw.endswith((".sqlite", ".db", ".sqlite3")):
        raise PersistenceError(
            f"unrecognised persistence URL {url!r}: use 'memory', a .sqlite path, or postgresql://..."
        )
    path = Path(raw).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PersistenceError(f"cannot open SQLite file {path}: {exc}") from None
    return path


SQLITE_PRAGMAS = ("PRAGMA busy_timeout=10000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
"""WAL lets a reader (``handoff threads``) run beside a writer; NORMAL syncs the WAL at
checkpoints instead of every commit: a killed process loses nothing it committed, only a
power cut can drop the last few commits."""


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def _sqlite(stack: ExitStack, url: str, serde: SerializerProtocol) -> Persistence:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    path = sqlite_path(url)
    try:
        conn = _sqlite_connect(path)
        stack.callback(conn.close)
        store_conn = _sqlite_connect(path)
        stack.callback(store_conn.close)
        saver = SqliteSaver(conn, serde=serde)
        saver.setup()
        store = SqliteStore(store_conn)
        store.setup()
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open SQLite file {path}: {exc}") from None
    return Persistence(saver, store, f"sqlite:///{path}")


def _postgres(stack: ExitStack, url: str, serde: SerializerProtocol) -> Persistence:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg import Connection, OperationalError
    from psycopg.rows import dict_row

    try:
        conn = stack.enter_context(
            Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        )
        store_conn = stack.enter_context(
            Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        )
    except OperationalError as exc:
        raise PersistenceError(f"cannot connect to PostgreSQL at {url}: {exc}") from None
    saver = PostgresSaver(conn, serde=serde)
    saver.setup()
    store = PostgresStore(store_conn)
    store.setup()
    return Persistence(saver, store, url)


def list_threads(checkpointer: BaseCheckpointSaver, *, limit: int = 50) -> list[ThreadSummary]:
    """The most recently active conversations, newest first.

    SQLite and PostgreSQL find each thread's latest checkpoint with one indexed
    query and then load only those checkpoints; other savers are scanned.

    Args:
        checkpointer: Any LangGraph checkpointer, usually ``Persistence.checkpointer``.
        limit: At most this many threads.
    """
    latest = _latest_checkpoints(checkpointer, limit)
    out: list[ThreadSummary] = []
    for thread_id, checkpoint_id in latest:
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "",
                                   "checkpoint_id": checkpoint_id}}
        found = checkpointer.get_tuple(config)
        if found is not None:
            out.append(_summary(thread_id, found.checkpoint))
    return out


def _latest_checkpoints(checkpointer: BaseCheckpointSaver, limit: int) -> list[tuple[str, str]]:
    query = (
        "SELECT thread_id, MAX(checkpoint_id) AS latest FROM checkpoints WHERE checkpoint_ns = {p} "
        "GROUP BY thread_id ORDER BY latest DESC LIMIT {p}"
    )
    kind = type(checkpointer).__name__
    if kind == "SqliteSaver":
        with checkpointer.cursor(transaction=False) as cur:  # type: ignore[attr-defined]
            cur.execute(query.format(p="?"), ("", limit))
            return [(str(r[0]), str(r[1])) for r in cur.fetchall()]
    if kind == "PostgresSaver":
        with checkpointer._cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(query.format(p="%s"), ("", limit))
            return [(str(r["thread_id"]), str(r["latest"])) for r in cur.fetchall()]
    newest: dict[str, str] = {}
    for item in checkpointer.list(None):
        conf = item.config["configurable"]
        if conf.get("checkpoint_ns", "") == "" and conf["checkpoint_id"] > newest.get(conf["thread_id"], ""):
            newest[conf["thread_id"]] = conf["checkpoint_id"]
    return sorted(newest.items(), key=lambda kv: kv[1], reverse=True)[:limit]


def _summary(thread_id: str, checkpoint: dict[str, Any]) -> ThreadSummary:
    values = checkpoint.get("channel_values") or {}
    return ThreadSummary(
        thread_id=thread_id,
        active_agent=str(values.get("active_agent") or ""),
        turns=int(values.get("turn") or 0),
        handoffs=int(values.get("handoff_count") or 0),
        messages=int(values.get("transcript_len") or 0),
        updated_at=str(checkpoint.get("ts", "")),
    )
