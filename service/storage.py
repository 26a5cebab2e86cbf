"""The service's persistence: async checkpointers and stores, pooled connections on PostgreSQL.

The service runs its graphs with ``astream`` on the event loop, so it needs
the async savers and stores: ``InMemorySaver``/``InMemoryStore`` (memory),
``CompactSqliteSaver``/``AsyncSqliteStore`` (SQLite, one worker) and
``LeanPostgresSaver`` (LangGraph's ``AsyncPostgresSaver`` saving in one statement, service/postgres_saver.py)
and ``LeanPostgresStore`` (LangGraph's ``AsyncPostgresStore`` sending a one-statement batch without a
pipeline, service/postgres_store.py) (PostgreSQL, many workers).

``handoff.graphs.persistence.open_persistence`` gives the CLI one connection each. A
service must outlive a PostgreSQL restart: here both use a small
``psycopg_pool.AsyncConnectionPool`` whose idle connections are checked before
use (``CheckUnlessFresh``), so a connection the restart broke is replaced
instead of failing every later request. Setting up the tables is serialised across workers with an advisory
lock, so two workers starting at once do not race on ``CREATE TABLE``.

On SQLite the checkpointer and the store each have a connection, in WAL mode with a busy
timeout. The store's batches (the thread registry, the journal) run as ``BEGIN IMMEDIATE``
transactions (service/sqlite_store.py): LangGraph's store opens a deferred ``BEGIN``, reads,
then writes, and a deferred transaction that has read cannot wait for the write lock, so
SQLite answered ``database is locked`` at once whenever the checkpointer was writing (about
1 request in 100 at 16 concurrent clients on one worker). Taking the write lock first makes
SQLite wait for it, for up to the busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from weakref import WeakKeyDictionary

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from handoff.graphs.persistence import SQLITE_PRAGMAS, Persistence, PersistenceError, serializer, sqlite_path

POOL_SIZE = 8
"""Connections the checkpointer and the store share per worker: turns of different threads run
at the same time on one event loop, and each step holds a connection only while it reads or writes."""
FRESH = 1.0
"""Seconds after its return to the pool during which a connection is handed out unchecked."""
CONNECT_WAIT = 10.0
"""Seconds a database operation waits for a connection (e.g. while PostgreSQL restarts)."""
SETUP_LOCK = 0x68616E646F6666  # "handoff": the advisory key that serialises table set-up


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgres://"))


@asynccontextmanager
async def open_service_persistence(url: str) -> AsyncIterator[Persistence]:
    """Async checkpointer and store for ``url``; on PostgreSQL over a checked connection pool.

    Raises:
        PersistenceError: the URL is unusable or the database cannot be reached.
    """
    if url == "memory":
        yield Persistence(InMemorySaver(serde=serializer()), InMemoryStore(), url)
    elif is_postgres(url):
        async with _postgres(url) as persistence:
            yield persistence
    else:
        async with _sqlite(url) as persistence:
            yield persistence


@asynccontextmanager
async def _sqlite(url: str) -> AsyncIterator[Persistence]:
    import aiosqlite

    from handoff.graphs.persistence import sqlite_connect
    from handoff.graphs.sqlite_saver import CompactSqliteSaver
    from handoff.service.sqlite_store import ImmediateSqliteStore

    path = sqlite_path(url)
    async with AsyncExitStack() as stack:
        try:
            # the CLI's saver and schema; its async methods run in a worker thread
            conn = await asyncio.to_thread(sqlite_connect, path)
            stack.callback(conn.close)
            saver = CompactSqliteSaver(conn, serde=serializer())
            await asyncio.to_thread(saver.setup)
            store_conn = await stack.enter_async_context(aiosqlite.connect(str(path), isolation_level=None))
            for pragma in SQLITE_PRAGMAS:
                # closed at once: an unread result would keep its statement, and a lock, open
                await (await store_conn.execute(pragma)).close()
            store = ImmediateSqliteStore(store_conn)
            await store.setup()
        except (OSError, sqlite3.Error) as exc:
            raise PersistenceError(f"cannot open SQLite file {path}: {exc}") from None
        yield Persistence(saver, store, f"sqlite:///{path}")


class CheckUnlessFresh:
    """The pool's connection check, skipped for a connection returned moments ago (``returned``
    notes when: ``CheckedPool`` calls it as each connection comes back).

    Checking every checkout costs a round trip each time, and a turn checks out
    about fifty times, so under load most of the checks would probe a
    connection that worked a few milliseconds before. A connection idle for
    ``FRESH`` seconds or more is checked as before. What this gives up: a
    connection broken in the last ``FRESH`` seconds (PostgreSQL restarting) fails
    its next operation instead of being replaced first; the turn then ends with
    503 ``persistence_unavailable`` and a retry with the same ``message_id``
    completes it, and the pool discards the broken connection.
    """

    def __init__(self, fresh: float = FRESH) -> None:
        self.fresh = fresh
        self._returned: WeakKeyDictionary[Any, float] = WeakKeyDictionary()

    def returned(self, conn: Any) -> None:
        """Note that ``conn`` came back now."""
        self._returned[conn] = time.monotonic()

    async def check(self, conn: Any) -> None:
        """The pool's ``check`` callback."""
        from psycopg_pool import AsyncConnectionPool

        if time.monotonic() - self._returned.get(conn, -self.fresh) >= self.fresh:
            await AsyncConnectionPool.check_connection(conn)


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[Persistence]:
    from psycopg import OperationalError
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    from handoff.service import pg_json
    from handoff.service.postgres_saver import LeanPostgresSaver
    from handoff.service.postgres_store import LeanPostgresStore

    checks = CheckUnlessFresh()

    class CheckedPool(AsyncConnectionPool):  # type: ignore[type-arg]
        """Notes each connection's return for ``checks``. Not the pool's ``reset`` callback: with
        one, the pool hands every returned connection to its background worker, a task switch or
        two on each of a turn's ~20 checkouts."""

        async def putconn(self, conn: Any) -> None:
            checks.returned(conn)
            await super().putconn(conn)

    pool: Any = CheckedPool(
        url, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_WAIT, open=False, name="handoff-persistence",
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=checks.check, configure=pg_json.configure,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_WAIT)
    except (PoolTimeout, OperationalError) as exc:
        await pool.close()
        raise PersistenceError(f"cannot connect to PostgreSQL at {url}: {exc}") from None
    try:
        saver = LeanPostgresSaver(pool, serde=serializer())
        store = LeanPostgresStore(pool)
        async with pool.connection() as conn:
            await _setup_lock(conn)
            try:
                await saver.setup()
                await store.setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        yield Persistence(saver, store, url)
    finally:
        await pool.close()


SETUP_POLL_S = 0.05
"""How often a worker asks again for the set-up lock another worker holds."""


async def _setup_lock(conn: Any) -> None:
    """Take the set-up lock by polling, never by waiting inside a statement.

    A blocking ``pg_advisory_lock`` is a statement still running in the waiting worker, and the
    holder's ``CREATE INDEX CONCURRENTLY`` waits for every running statement to finish: two workers
    starting together on an empty database would wait for each other for ever.
    """
    while True:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS taken", (SETUP_LOCK,))
        row = await cursor.fetchone()
        if row and row["taken"]:
            return
        await asyncio.sleep(SETUP_POLL_S)

