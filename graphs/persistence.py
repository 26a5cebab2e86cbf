"""One factory for checkpointer + store: memory, SQLite file, or PostgreSQL by URL.

The checkpointer keeps each step's state (bounded, see state/conversation.py);
the store keeps the full transcript and handoff log (graphs/journal.py). So a
checkpoint's size does not depend on the conversation's length and storage
grows linearly. Checkpoint blobs are msgpack, compressed when they are large
enough to gain from it, by zstd primed with a dictionary of typical
checkpoints (the SQLite saver stores the whole state in every checkpoint;
PostgreSQL stores each channel version once). On SQLite the checkpointer is
the project's ``CompactSqliteSaver`` (graphs/sqlite_saver.py): LangGraph's
contract in a smaller schema, which takes over files LangGraph's
``SqliteSaver`` wrote.
"""

from __future__ import annotations

import queue
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import zstandard
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

ZSTD_LEVEL = 3
"""zstd's level for checkpoint blobs. On the benchmark's conversation (``python -m benchmarks.codec``),
with the dictionary, level 3 stores as many bytes as zlib at level 6 with ``d1`` did, for half its
CPU time; level 1 takes a third less time again for 4% more bytes, level 5 5% fewer bytes for a
third more time."""

ZLIB_DICTIONARY = Path(__file__).with_name("checkpoint-d1.zdict")
"""The preset dictionary of codec ``zlibd1``, which wrote checkpoints until issue 18; kept so they load."""
DICTIONARY = Path(__file__).with_name("checkpoint-d2.zdict")
"""The raw-content dictionary of codec ``zstdd2`` (made by scripts/make_checkpoint_dictionary.py).
Frozen, like every dictionary: blobs written with it need these very bytes to load, so a new
dictionary gets a new file and codec name."""


T = TypeVar("T")


@cache
def _zlib_dictionary() -> bytes:
    return ZLIB_DICTIONARY.read_bytes()


@cache
def _zstd_dictionary() -> zstandard.ZstdCompressionDict:
    """The dictionary, digested once for compression and once for decompression. Digested
    dictionaries are read-only, so every compressor of every thread shares them."""
    data = zstandard.ZstdCompressionDict(DICTIONARY.read_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    data.precompute_compress(level=ZSTD_LEVEL)
    zstandard.ZstdDecompressor(dict_data=data).decompress(
        zstandard.ZstdCompressor(dict_data=data).compress(b"digest the dictionary for decompression too"))
    return data


class Lender(Generic[T]):
    """Hands each caller an object no other thread is using.

    A zstandard compressor or decompressor must not be used by two threads at once (LangGraph
    writes a step's checkpoint and its pending writes on two threads at the same time; sharing
    one compressor crashed the interpreter), and LangGraph makes its thread pool anew for every
    run, so objects kept per thread would be rebuilt on every turn. A free list keeps as many as
    were ever busy at the same time.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._free: queue.SimpleQueue[T] = queue.SimpleQueue()

    def take(self) -> T:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self._make()

    def give_back(self, item: T) -> None:
        self._free.put(item)


class CheckpointCodec:
    """Compresses checkpoint blobs; plugs into LangGraph's ``EncryptedSerializer``.

    That wrapper is LangGraph's hook for transforming serialized bytes: it
    stores the codec's name next to the type (``msgpack+zstdd2``), so blobs
    written before compression, or with an earlier codec, or below
    ``COMPRESS_FROM``, still load. ``zstdd2`` is zstd primed with a raw-content
    dictionary of typical checkpoints: a bounded state is a few kilobytes of
    the same keys, class paths and agent names every time, which a compressor
    without one has to spell out again in every blob. It stores as few bytes
    as zlib primed the same way (``zlibd1``, which wrote checkpoints before)
    for half its CPU time.
    """

    def __init__(self) -> None:
        self._compressors = Lender(lambda: zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, dict_data=_zstd_dictionary(), write_checksum=False, write_dict_id=False))
        self._decompressors = Lender(lambda: zstandard.ZstdDecompressor(dict_data=_zstd_dictionary()))

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Compress ``plaintext`` when that pays; returns ``(codec name, bytes)``."""
        if len(plaintext) >= COMPRESS_FROM:
            compressor = self._compressors.take()
            try:
                packed = compressor.compress(plaintext)
            finally:
                self._compressors.give_back(compressor)
            if len(packed) < len(plaintext):
                return "zstdd2", packed
        return "raw", plaintext

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Undo ``encrypt``, and the codecs of checkpoints written before it (``zlibd1``, plain ``zlib``)."""
        if ciphername == "zstdd2":
            decompressor = self._decompressors.take()
            try:
                return decompressor.decompress(ciphertext)
            finally:
                self._decompressors.give_back(decompressor)
        if ciphername == "zlibd1":
            inflate = zlib.decompressobj(zdict=_zlib_dictionary())
            return inflate.decompress(ciphertext) + inflate.flush()
        if ciphername == "zlib":
            return zlib.decompress(ciphertext)
        if ciphername == "raw":
            return ciphertext
        raise ValueError(f"unknown checkpoint codec {ciphername!r}")


def serializer() -> SerializerProtocol:
    """The checkpoint serializer: strict msgpack (plain data, LangChain messages and the earlier state
    types), compressed."""
    return EncryptedSerializer(CheckpointCodec(), JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))


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


SQLITE_PRAGMAS = ("PRAGMA busy_timeout=10000", "PRAGMA page_size=8192", "PRAGMA journal_mode=WAL",
                  "PRAGMA synchronous=NORMAL", "PRAGMA wal_autocheckpoint=500")
"""WAL lets a reader (``handoff threads``) run beside a writer; NORMAL syncs the WAL at
checkpoints instead of every commit: a killed process loses nothing it committed, only a
power cut can drop the last few commits.

When this was measured a checkpoint row was about 2.7 KB, so a 4 KiB page held one and a third of the checkpoint
table's pages stayed empty; 8 KiB pages held two or three, left a fifth empty, and the file of
the benchmark's 300 turns is 12% smaller, at the same time per turn. The page size applies
only to a new, empty file (switching to WAL writes its header, so it comes first); an existing
database keeps its own. SQLite folds the WAL into the file every so many pages: 500 pages of
8 KiB keep the WAL at the 4 MiB that SQLite's default of 1000 pages of 4 KiB came to."""


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file at ``path`` with the project's settings, in autocommit mode,
    usable from any thread (the saver and the store each serialise their use)."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def _sqlite(stack: ExitStack, url: str, serde: SerializerProtocol) -> Persistence:
    from langgraph.store.sqlite import SqliteStore

    from handoff.graphs.sqlite_saver import CompactSqliteSaver

    path = sqlite_path(url)
    try:
        conn = sqlite_connect(path)
        stack.callback(conn.close)
        store_conn = sqlite_connect(path)
        stack.callback(store_conn.close)
        saver = CompactSqliteSaver(conn, serde=serde)
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
    from handoff.graphs.sqlite_saver import CompactSqliteSaver

    if isinstance(checkpointer, CompactSqliteSaver):
        return checkpointer.latest(limit)
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
