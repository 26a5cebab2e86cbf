"""LangGraph's async SQLite store with batches that take the write lock first.

``AsyncSqliteStore`` runs each batch (gets, then puts) in a deferred ``BEGIN``. In WAL mode a
deferred transaction that has read and then wants to write, while another connection (the
checkpointer's) holds the write lock, gets ``database is locked`` at once: SQLite does not call
the busy handler there, since waiting could deadlock. ``BEGIN IMMEDIATE`` takes the write lock
before the first read, so SQLite waits for it (up to the connection's ``busy_timeout``) instead.

Imported only on SQLite: it needs ``aiosqlite`` (the ``service`` extra).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
from langgraph.store.sqlite.aio import AsyncSqliteStore


class ImmediateSqliteStore(AsyncSqliteStore):
    """``AsyncSqliteStore`` whose batches are ``BEGIN IMMEDIATE`` transactions, rolled back on failure.

    The parent commits in ``finally``, so a batch that failed half-way would keep its first
    half, and a ``COMMIT`` that failed would leave the connection inside a transaction that
    every later ``BEGIN`` refuses.
    """

    @asynccontextmanager
    async def _cursor(self, *, transaction: bool = True) -> AsyncIterator[aiosqlite.Cursor]:
        if not self.is_setup:
            await self.setup()
        async with self.lock:
            if transaction:
                await self.conn.execute("BEGIN IMMEDIATE")
            try:
                async with self.conn.cursor() as cur:
                    yield cur
            except BaseException:
                if transaction and self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the batch's own error is the one to report
                        await self.conn.execute("ROLLBACK")
                raise
            if transaction:
                await self.conn.execute("COMMIT")
