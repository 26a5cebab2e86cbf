"""This project's persistence as it was before issue 18, for a before/after within one benchmark run.

Before: checkpoint blobs compressed by zlib at level 6 primed with ``checkpoint-d1.zdict`` (codec
``zlibd1``, which the project now only reads), on a SQLite file of 4 KiB pages whose WAL SQLite
folded back every 1000 pages (its default).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from handoff.graphs import persistence
from handoff.graphs.persistence import COMPRESS_FROM, STATE_TYPES, ZLIB_DICTIONARY, CheckpointCodec


class ZlibD1Codec(CheckpointCodec):
    """Writes ``zlibd1`` blobs as the project did before; reads whatever the project reads."""

    def __init__(self) -> None:
        super().__init__()
        self._zdict = ZLIB_DICTIONARY.read_bytes()

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        if len(plaintext) >= COMPRESS_FROM:
            deflate = zlib.compressobj(6, zdict=self._zdict)
            packed = deflate.compress(plaintext) + deflate.flush()
            if len(packed) < len(plaintext):
                return "zlibd1", packed
        return "raw", plaintext


def zlib_serializer() -> EncryptedSerializer:
    """The checkpoint serializer as it was before issue 18."""
    return EncryptedSerializer(ZlibD1Codec(), JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))


def create_with_page_size(db: Path, size: int) -> None:
    """Create an empty SQLite file with ``size``-byte pages (an existing database keeps its own)."""
    conn = sqlite3.connect(str(db))
    try:
        conn.execute(f"PRAGMA page_size={int(size)}")
        conn.execute("VACUUM")  # writes the header, fixing the page size before any table exists
    finally:
        conn.close()


OLD_PRAGMAS = ("PRAGMA busy_timeout=10000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
"""The SQLite settings before issue 18."""


@contextmanager
def before(db: Path, *, codec: bool = True, pages: bool = True) -> Iterator[object]:
    """This project's graph through ``graph.invoke`` with the persistence it had before issue 18:
    its old codec (``codec``), its old page size and WAL checkpointing (``pages``), or both."""
    from benchmarks.peers import project

    with ExitStack() as stack:
        if not pages:
            side = stack.enter_context(project(db, serde=zlib_serializer() if codec else None))
        else:
            create_with_page_size(db, 4096)
            current, persistence.SQLITE_PRAGMAS = persistence.SQLITE_PRAGMAS, OLD_PRAGMAS
            try:  # read once, when the connections open
                side = stack.enter_context(project(db, serde=zlib_serializer() if codec else None))
            finally:
                persistence.SQLITE_PRAGMAS = current
        yield side
