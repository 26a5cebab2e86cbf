"""One turn at a time per thread, across every worker that shares the thread's database.

- ``LocalTurnLocks`` (memory and SQLite): an in-process set of busy threads.
  Enough for one worker process; SQLite is for a single worker (several
  processes on one SQLite file would each have their own locks).
- ``PostgresTurnLocks`` (PostgreSQL): a session-level advisory lock,
  ``pg_try_advisory_lock(key)`` with ``key`` a 64-bit hash of the thread id,
  held for the whole turn on the worker's lock session (one connection per
  worker). Every worker on the database sees it. If the worker dies, its
  session ends and PostgreSQL releases the lock; if PostgreSQL restarts, the
  lock is gone with the session, and ``TurnLock.check`` (called between graph
  steps) reports it so the turn stops at its last checkpoint.

Both refuse at once instead of waiting: ``acquire`` returns None when the
thread is busy, and the service answers 409 ``thread_busy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any, Protocol

from handoff.service.errors import LockLost, is_unavailable

CONNECT_TIMEOUT = 5
"""Seconds to wait for PostgreSQL when opening the lock session."""


class TurnLock(Protocol):
    """A held lock on one thread."""

    async def check(self) -> None:
        """Raise LockLost if the lock is no longer held."""

    async def release(self) -> None:
        """Release the lock; calling it again does nothing."""


class TurnLocks(Protocol):
    """Where a service takes its per-thread turn locks."""

    async def acquire(self, thread_id: str) -> TurnLock | None:
        """The thread's lock, or None when another turn holds it."""

    async def close(self) -> None:
        """Release resources (connections)."""


class LocalTurnLocks:
    """In-process turn locks: correct for one worker process (its turns share one event loop)."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    async def acquire(self, thread_id: str) -> TurnLock | None:
        """Mark ``thread_id`` busy; None if it already is."""
        return self.take(thread_id)

    def take(self, thread_id: str) -> _LocalLock | None:
        """``acquire`` without awaiting (no other coroutine can run in between)."""
        if thread_id in self._busy:
            return None
        self._busy.add(thread_id)
        return _LocalLock(self, thread_id)

    def busy(self, thread_id: str) -> bool:
        """Whether a turn holds the thread now."""
        return thread_id in self._busy

    async def close(self) -> None:
        """Nothing to release."""


class _LocalLock:
    def __init__(self, owner: LocalTurnLocks, thread_id: str) -> None:
        self._owner = owner
        self._thread_id = thread_id
        self._held = True

    async def check(self) -> None:
        """An in-process lock cannot be lost."""

    async def release(self) -> None:
        self.drop()

    def drop(self) -> None:
        """``release`` without awaiting."""
        if self._held:
            self._held = False
            self._owner._busy.discard(self._thread_id)


def advisory_key(thread_id: str) -> int:
    """The signed 64-bit advisory-lock key of a thread (a hash: ids of any length and alphabet)."""
    digest = hashlib.blake2b(f"handoff-thread:{thread_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresTurnLocks:
    """Cross-process turn locks: PostgreSQL session-level advisory locks.

    One database session per worker holds the advisory locks of all the turns
    the worker runs (an in-process lock in front keeps two turns of this
    worker off one thread, since a session may take its own lock twice). So a
    worker needs one connection for its locks however many turns it runs,
    which matters when several workers share ``max_connections``. The session
    is reopened when it breaks; the locks it held are then gone, and their
    turns learn it from ``check``.
    """

    def __init__(self, url: str, *, connect_timeout: int = CONNECT_TIMEOUT) -> None:
        """Args:
        url: The ``postgresql://`` URL the service's persistence uses.
        connect_timeout: Seconds to wait for PostgreSQL when (re)opening the lock session.
        """
        self.url = url
        self.connect_timeout = connect_timeout
        self._local = LocalTurnLocks()
        self._conn: Any = None
        self._guard = asyncio.Lock()

    async def acquire(self, thread_id: str) -> TurnLock | None:
        """Try the thread's advisory lock; None when another turn (here or in another worker) holds it.

        Raises:
            psycopg.OperationalError: PostgreSQL is unreachable.
        """
        local = self._local.take(thread_id)
        if local is None:
            return None
        key = advisory_key(thread_id)
        try:
            async with self._guard:
                conn = await self._session()
                row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
        except BaseException:
            local.drop()
            raise
        if not (row and row[0]):
            local.drop()
            return None
        return _AdvisoryLock(self, conn, key, local)

    async def _session(self) -> Any:
        """The lock session, reopened if it broke (call with ``_guard`` held)."""
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            try:
                await self._conn.execute("SELECT 1")
                return self._conn
            except psycopg.Error:
                await self._conn.close()
        self._conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=self.connect_timeout,
            application_name="handoff-turn-locks")
        return self._conn

    async def close(self) -> None:
        """Close the lock session (any lock still held is released with it)."""
        async with self._guard:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


class _AdvisoryLock:
    def __init__(self, owner: PostgresTurnLocks, conn: Any, key: int, local: _LocalLock) -> None:
        self._owner = owner
        self._conn = conn
        self._key = key
        self._local = local
        self._held = True

    async def check(self) -> None:
        async with self._owner._guard:
            if not self._held:
                raise LockLost("the thread's lock was released")
            try:
                await self._conn.execute("SELECT 1")
            except Exception as exc:
                if is_unavailable(exc):
                    raise LockLost("the thread's lock was lost with its database session") from None
                raise

    async def release(self) -> None:
        try:
            async with self._owner._guard:
                if not self._held:
                    return
                self._held = False
                with contextlib.suppress(Exception):  # a broken session took the lock with it
                    await self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        finally:
            self._local.drop()


def turn_locks_for(url: str) -> TurnLocks:
    """Advisory locks on PostgreSQL, in-process locks otherwise (memory, SQLite: one worker)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTurnLocks(url)
    return LocalTurnLocks()
