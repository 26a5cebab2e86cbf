"""One factory for checkpointer + store: memory, SQLite file, or PostgreSQL by URL.

The checkpointer keeps each step's state (bounded, see state/conversation.py);
the store keeps the full transcript and handoff log (graphs/journal.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from state import HandoffRecord, HandoffRejection, HandoffRequest, InitResult

STATE_TYPES = (HandoffRequest, HandoffRecord, HandoffRejection, InitResult)


def serializer() -> JsonPlusSerializer:
    """The checkpoint serializer, allowing exactly the project's state types."""
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


@dataclass(frozen=True)
class Persistence:
    checkpointer: BaseCheckpointSaver
    store: BaseStore
    url: str


class PersistenceError(ValueError):
    """The persistence URL is unusable; the message says why."""


@contextmanager
def open_persistence(url: str = "memory") -> Iterator[Persistence]:
    """Open a checkpointer and a store for ``url``.

    ``memory`` (tests, notebooks); ``sqlite:///path/to/file.sqlite`` or a plain
    path ending in ``.sqlite``/``.db`` (the embedded default); ``postgresql://...``
    (several workers sharing threads).
    """
    with ExitStack() as stack:
        if url == "memory":
            yield Persistence(InMemorySaver(serde=serializer()), InMemoryStore(), url)
        elif url.startswith(("postgresql://", "postgres://")):
            yield _postgres(stack, url)
        else:
            yield _sqlite(stack, url)


def _sqlite(stack: ExitStack, url: str) -> Persistence:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    raw = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if not raw.endswith((".sqlite", ".db", ".sqlite3")):
        raise PersistenceError(
            f"unrecognised persistence URL {url!r}: use 'memory', a .sqlite path, or postgresql://..."
        )
    path = Path(raw).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open SQLite file {path}: {exc}") from None
    stack.callback(conn.close)
    conn.execute("PRAGMA journal_mode=WAL")
    saver = SqliteSaver(conn, serde=serializer())
    saver.setup()
    store_conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    stack.callback(store_conn.close)
    store = SqliteStore(store_conn)
    store.setup()
    return Persistence(saver, store, f"sqlite:///{path}")


def _postgres(stack: ExitStack, url: str) -> Persistence:
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
    saver = PostgresSaver(conn, serde=serializer())
    saver.setup()
    store = PostgresStore(store_conn)
    store.setup()
    return Persistence(saver, store, url)
