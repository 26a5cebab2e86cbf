"""The service's persistence: ``graphs.persistence`` for memory and SQLite, pooled connections on PostgreSQL.

``graphs.persistence.open_persistence`` gives the checkpointer and the store one
connection each, which is right for the CLI. A service must outlive a
PostgreSQL restart: here both use a small ``psycopg_pool.ConnectionPool``
whose connections are checked before use, so a connection the restart broke is
replaced instead of failing every later request. Setting up the tables is
serialised across workers with an advisory lock, so two workers starting at
once do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from graphs.persistence import Persistence, PersistenceError, open_persistence, serializer

POOL_SIZE = 4
"""Connections the checkpointer and the store share per worker (the checkpointer serialises its own)."""
CONNECT_WAIT = 10.0
"""Seconds a database operation waits for a connection (e.g. while PostgreSQL restarts)."""
SETUP_LOCK = 0x68616E646F6666  # "handoff": the advisory key that serialises table set-up


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgres://"))


@contextmanager
def open_service_persistence(url: str) -> Iterator[Persistence]:
    """Checkpointer and store for ``url``; on PostgreSQL over a checked connection pool.

    Raises:
        PersistenceError: the URL is unusable or the database cannot be reached.
    """
    if not is_postgres(url):
        with open_persistence(url) as persistence:
            yield persistence
        return
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg import OperationalError
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool: Any = ConnectionPool(
        url, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_WAIT, open=False, name="handoff-persistence",
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_WAIT)
    except (PoolTimeout, OperationalError) as exc:
        pool.close()
        raise PersistenceError(f"cannot connect to PostgreSQL at {url}: {exc}") from None
    try:
        saver = PostgresSaver(pool, serde=serializer())
        store = PostgresStore(pool)
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                saver.setup()
                store.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        yield Persistence(saver, store, url)
    finally:
        pool.close()
