"""The service's async persistence: which pooled connections are checked before use, and SQLite's
store batches that never meet ``database is locked`` when another connection writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.store.base import GetOp, PutOp

from handoff.service.storage import CheckUnlessFresh, open_service_persistence

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

pytestmark = pytest.mark.anyio


async def broken_behind_its_back() -> psycopg.AsyncConnection:
    """A connection whose server process was ended, which it has not noticed yet."""
    conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    await asyncio.sleep(0.1)
    return conn


async def test_a_connection_returned_moments_ago_is_not_probed() -> None:
    checks = CheckUnlessFresh(fresh=60.0)
    conn = await broken_behind_its_back()
    try:
        checks.returned(conn)
        await checks.check(conn)  # no round trip, so the break goes unseen
        assert not conn.broken
    finally:
        await conn.close()


@pytest.mark.parametrize("history", ["never returned", "idle too long"])
async def test_an_idle_connection_is_probed_and_a_broken_one_refused(history: str) -> None:
    checks = CheckUnlessFresh(fresh=0.05)
    conn = await broken_behind_its_back()
    try:
        if history == "idle too long":
            checks.returned(conn)
            await asyncio.sleep(0.1)
        with pytest.raises(psycopg.OperationalError):
            await checks.check(conn)
    finally:
        await conn.close()


async def test_a_working_idle_connection_passes_its_check() -> None:
    checks = CheckUnlessFresh(fresh=0.0)
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await checks.check(conn)
        assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)


async def test_a_sqlite_store_batch_that_reads_then_writes_is_not_refused_when_another_connection_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread registry and the journal read, then write, in one store batch, while the
    checkpointer writes on its own connection. Here another connection writes exactly between
    the batch's reads and its writes: the batch must still go through (the other writer waits
    for it, or gives up on its own side), never fail with ``database is locked``."""
    path = tmp_path / "service.sqlite"
    async with open_service_persistence(f"sqlite:///{path}") as persistence:
        store: Any = persistence.store
        await store.aput(("handoff", "threads"), "seed", {"graph": "customer-service"})
        other = sqlite3.connect(str(path), timeout=0.2, isolation_level=None)  # the checkpointer's role
        read = store._batch_get_ops
        interleaved: list[str] = []

        async def read_then_someone_writes(*args: Any) -> None:
            await read(*args)
            if interleaved:  # once: later batches read undisturbed
                return
            try:
                other.execute("INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id) "
                              "VALUES ('t', '', 'c1')")
                interleaved.append("written")
            except sqlite3.OperationalError:  # the batch holds the write lock: the other writer waits
                interleaved.append("waited")

        monkeypatch.setattr(store, "_batch_get_ops", read_then_someone_writes)
        try:
            results = await store.abatch([GetOp(("handoff", "threads"), "seed"),
                                          PutOp(("handoff", "threads"), "new", {"graph": "sales"})])
        finally:
            with contextlib.suppress(sqlite3.Error):
                other.close()
        assert interleaved, "the other connection never tried to write in between"
        assert results[0] is not None and results[0].value == {"graph": "customer-service"}
        stored = await store.aget(("handoff", "threads"), "new")
        assert stored is not None and stored.value == {"graph": "sales"}


async def test_a_sqlite_store_batch_that_fails_half_way_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails after its writes ran keeps none of them, and the connection is usable."""
    async with open_service_persistence(f"sqlite:///{tmp_path / 'service.sqlite'}") as persistence:
        store: Any = persistence.store
        write = store._batch_put_ops

        async def write_then_fail(*args: Any) -> None:
            await write(*args)
            raise RuntimeError("cut short after writing")

        monkeypatch.setattr(store, "_batch_put_ops", write_then_fail)
        with pytest.raises(RuntimeError, match="cut short"):
            await store.abatch([PutOp(("ns",), "a", {"ok": 1})])
        monkeypatch.undo()
        assert not store.conn.in_transaction
        assert await store.aget(("ns",), "a") is None
        await store.aput(("ns",), "b", {"ok": 2})
        stored = await store.aget(("ns",), "b")
        assert stored is not None and stored.value == {"ok": 2}
