"""One turn at a time per thread for the command line, across processes.

The service keeps a thread to one turn at a time (service/locks.py); a `handoff run` or `chat` must
too, or two processes on one thread both archive the same message and leave messages unanswered.

- PostgreSQL: the service's own session-level advisory lock, same key (``advisory_key``), on a
  connection of this process; so CLI runs and service workers on one database exclude each other.
  PostgreSQL releases it when the connection ends, however the process ends.
- SQLite: an exclusive POSIX record lock (``fcntl.lockf``) on one byte of a lock file next to the
  database (``<db>-turnlock``), at an offset hashed from the thread id. The kernel releases it when
  the process ends, even when killed, so no stale lock is ever left behind. The database file
  itself is never locked this way: closing any descriptor of a file drops every POSIX lock the
  process holds on it, which would break SQLite's own locking.
- memory: nothing to share; a `memory` database lives and dies with this one process.

A busy thread is waited for, polling, for at most ``wait`` seconds; then ``ThreadBusy``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from handoff.graphs.persistence import sqlite_path
from handoff.service.locks import CONNECT_TIMEOUT, advisory_key

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite threads are then locked per process only
    fcntl = None  # type: ignore[assignment]

POLL = 0.2
"""Seconds between two tries at a busy thread's lock."""
LOCK_FILE_SUFFIX = "-turnlock"
"""The SQLite lock file is the database's path with this appended (like SQLite's own ``-wal``)."""


class ThreadBusy(Exception):
    """Another turn (another process, or a service worker) held the thread for longer than we waited."""


class LockUnavailable(Exception):
    """The thread's lock could not be taken at all (lock file or lock database unusable)."""


@contextmanager
def turn_lock(
    url: str, thread_id: str, *, wait: float, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold ``thread_id``'s turn lock on the database at ``url`` for the block.

    Args:
        url: The persistence URL the turn runs on (``Persistence.url``).
        thread_id: The thread.
        wait: Seconds to wait for a busy thread (0: refuse at once).
        on_wait: Called once if the thread is busy when first tried.

    Raises:
        ThreadBusy: the thread was still busy after ``wait`` seconds.
        LockUnavailable: the lock file or the PostgreSQL lock session cannot be opened.
    """
    if url.startswith(("postgresql://", "postgres://")):
        lock: _Lock = _PostgresLock(url, thread_id)
    elif url == "memory":
        lock = _NoLock()
    else:
        lock = FileTurnLock(lock_file_of(url), thread_id)
    try:
        _take(lock, thread_id, wait, on_wait)
        yield
    finally:
        lock.close()


def lock_file_of(url: str) -> Path:
    """The turn-lock file of the SQLite database at ``url``."""
    return Path(str(sqlite_path(url)) + LOCK_FILE_SUFFIX)


class _Lock:
    def try_take(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Release the lock if held and free its resources; calling it again does nothing."""


def _take(lock: _Lock, thread_id: str, wait: float, on_wait: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    if lock.try_take():
        return
    if on_wait is not None and wait > 0:
        on_wait()
    while time.monotonic() < deadline:
        time.sleep(min(POLL, max(deadline - time.monotonic(), 0.0)))
        if lock.try_take():
            return
    raise ThreadBusy(f"thread {thread_id} is busy: another turn is running on it")


class _NoLock(_Lock):
    def try_take(self) -> bool:
        return True


class FileTurnLock(_Lock):
    """A one-byte record lock in a shared lock file (see the module docstring).

    POSIX record locks belong to the process, not to a descriptor: a second lock of this process
    on the same byte would succeed, and closing any descriptor of the file would drop them all.
    So every lock of this process on one file shares one descriptor, and an in-process set keeps
    two turns of this process off one thread.
    """

    _guard: ClassVar[threading.Lock] = threading.Lock()
    _files: ClassVar[dict[Path, tuple[int, int]]] = {}  # lock file -> (descriptor, locks held on it)
    _held: ClassVar[set[tuple[Path, int]]] = set()

    def __init__(self, path: Path, thread_id: str) -> None:
        self.path = path.resolve()
        # Record locks take a non-negative offset; 62 bits keep offset + length inside off_t.
        self.offset = advisory_key(thread_id) & ((1 << 62) - 1)
        self._held_here = False

    def try_take(self) -> bool:
        with self._guard:
            if (self.path, self.offset) in self._held:
                return False
            fd = self._open()
            if fcntl is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset, os.SEEK_SET)
                except (BlockingIOError, PermissionError):
                    self._release_file()
                    return False
            self._held.add((self.path, self.offset))
            self._held_here = True
            return True

    def _open(self) -> int:
        """The shared descriptor of the lock file, counted as used once more (call with ``_guard``)."""
        fd, users = self._files.get(self.path, (-1, 0))
        if fd < 0:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise LockUnavailable(f"cannot open the turn-lock file {self.path}: {exc.strerror}") from None
        self._files[self.path] = (fd, users + 1)
        return fd

    def _release_file(self) -> None:
        """One use of the shared descriptor less; closed when unused (call with ``_guard``)."""
        fd, users = self._files[self.path]
        if users <= 1:
            del self._files[self.path]
            os.close(fd)
        else:
            self._files[self.path] = (fd, users - 1)

    def close(self) -> None:
        with self._guard:
            if not self._held_here:
                return
            self._held_here = False
            self._held.discard((self.path, self.offset))
            fd, _ = self._files[self.path]
            if fcntl is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, self.offset, os.SEEK_SET)
            self._release_file()


class _PostgresLock(_Lock):
    """The service's advisory lock (``pg_try_advisory_lock(advisory_key(thread))``) on a session of
    this process."""

    def __init__(self, url: str, thread_id: str) -> None:
        import psycopg

        self.key = advisory_key(thread_id)
        try:
            self._conn: Any = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                              application_name="handoff-cli-turn-lock")
        except psycopg.Error as exc:
            raise LockUnavailable(f"cannot open the turn-lock session on PostgreSQL: {exc}") from None
        self._held = False

    def try_take(self) -> bool:
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        self._held = bool(row and row[0])
        return self._held

    def close(self) -> None:
        # Closing the session releases its advisory locks; unlocking first returns the lock at once
        # even if closing were slow.
        try:
            if self._held and not self._conn.closed:
                with contextlib.suppress(Exception):  # the session's end releases the lock anyway
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        finally:
            self._held = False
            self._conn.close()
