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
  steps) reports it so the turn stops at its last checkpoint. A check costs no
  round trip while the session is idle and the server has sent nothing on it:
  a session that ends (a restart, ``pg_terminate_backend``, an idle timeout, a
  proxy closing it) is told so by PostgreSQL, and its socket then reads as
  ready. Otherwise the checks of all the worker's turns share their round
  trips: a check waits for the next ``SELECT 1`` on the session that starts
  after it was asked for, and one such query answers every check that came in
  while the one before it ran.

Both refuse at once instead of waiting: ``acquire`` returns None when the
thread is busy, and the service answers 409 ``thread_busy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import select
from typing import Any, Protocol

from handoff.service.errors import LockLost, is_unavailable

CONNECT_TIMEOUT = 5
"""Seconds to wait for PostgreSQL when opening the lock session."""
LOST = "the thread's lock was lost with its database session"


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
        self._next_ping: asyncio.Future[None] | None = None
        """The ping the checks asked for since the last one started; None when none waits."""
        self._pinger: asyncio.Task[None] | None = None

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
                conn, row = await self._try_lock(key)
        except BaseException:
            local.drop()
            raise
        if not (row and row[0]):
            local.drop()
            return None
        return _AdvisoryLock(self, conn, key, local)

    async def _try_lock(self, key: int) -> tuple[Any, Any]:
        """``pg_try_advisory_lock`` on the lock session; on a new session if the old one turns out
        broken (PostgreSQL restarted since it was last used). Call with ``_guard`` held."""
        for attempt in (1, 2):
            conn = await self._session()
            try:
                return conn, await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            except Exception as exc:
                if attempt == 2 or not is_unavailable(exc):
                    raise
                await conn.close()  # its locks are gone with it; their turns learn it from ``check``
        raise AssertionError("unreachable")

    async def _session(self) -> Any:
        """The lock session, reopened if it is known to be broken (call with ``_guard`` held). Not
        probed first: the statement sent on it finds out, and ``_try_lock`` then reopens it."""
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            await self._conn.close()
        self._conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=self.connect_timeout,
            application_name="handoff-turn-locks")
        return self._conn

    async def alive(self, conn: Any) -> None:
        """Return once a round trip on the lock session ``conn``, begun after this call, succeeded.

        Raises:
            LockLost: ``conn`` is no longer the lock session, or the round trip failed with it.
        """
        if conn is not self._conn or conn.closed or conn.broken:
            raise LockLost(LOST)
        if not self._guard.locked() and not _has_news(conn):
            return  # idle, and the server has said nothing since the last round trip: the session stands
        if self._next_ping is None:
            self._next_ping = asyncio.get_running_loop().create_future()
            # an outcome no check is left to read (they were cancelled) is not worth a warning
            self._next_ping.add_done_callback(lambda f: f.cancelled() or f.exception())
        ping = self._next_ping
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping(), name="handoff-lock-ping")
        try:
            await asyncio.shield(ping)
        except LockLost:
            raise LockLost(LOST) from None  # one of its own for each check: they share the ping
        if conn is not self._conn:
            raise LockLost(LOST)

    async def _ping(self) -> None:
        """Answer the waiting checks, one ``SELECT 1`` for all that asked before it began."""
        while (ping := self._next_ping) is not None:
            self._next_ping = None  # checks asked for from now on wait for the next one
            try:
                async with self._guard:
                    if self._conn is None:
                        raise LockLost(LOST)  # closed
                    await self._conn.execute("SELECT 1")
            except Exception as exc:
                ping.set_exception(LockLost(LOST) if is_unavailable(exc) else exc)
            else:
                ping.set_result(None)
            finally:
                if not ping.done():  # this task was cancelled (the loop is closing): no check hangs on it
                    ping.set_exception(LockLost(LOST))

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
        if not self._held:
            raise LockLost("the thread's lock was released")
        await self._owner.alive(self._conn)

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


def _has_news(conn: Any) -> bool:
    """Whether the server sent something on ``conn`` that nobody read: when a session ends (a restart,
    ``pg_terminate_backend``, an idle timeout, a proxy closing it) PostgreSQL sends its reason and closes
    the socket, which then reads as ready. Only meaningful while no statement is in flight."""
    try:
        poller = select.poll()  # not select.select: a worker with many sockets open has descriptors past 1024
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))  # readable, or hung up / in error (reported whatever was asked)
    except (OSError, ValueError):  # no socket any more
        return True


def turn_locks_for(url: str) -> TurnLocks:
    """Advisory locks on PostgreSQL, in-process locks otherwise (memory, SQLite: one worker)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTurnLocks(url)
    return LocalTurnLocks()
