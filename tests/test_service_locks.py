"""PostgreSQL turn locks: the checks of many turns share their round trips, and a lost session is
still reported to every turn that held a lock on it."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import psycopg
import pytest

from handoff.service.errors import LockLost
from handoff.service.locks import PostgresTurnLocks

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

pytestmark = pytest.mark.anyio


def thread_ids(n: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"locks-{run}-{i}" for i in range(n)]


def count_statements(conn: Any) -> list[str]:
    """The statements sent on ``conn`` from now on."""
    sent: list[str] = []
    execute = conn.execute

    async def counted(query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return await execute(query, *args, **kwargs)

    conn.execute = counted
    return sent


async def terminate(conn: Any) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    await asyncio.sleep(0.1)


async def test_checks_on_an_idle_session_the_server_said_nothing_on_cost_no_round_trip() -> None:
    locks = PostgresTurnLocks(POSTGRES_URL)
    try:
        held = [await locks.acquire(t) for t in thread_ids(20)]
        assert all(lock is not None for lock in held)
        sent = count_statements(locks._conn)
        for _ in range(3):
            await asyncio.gather(*(lock.check() for lock in held if lock is not None))
        assert sent == []
        for lock in held:
            assert lock is not None
            await lock.release()
    finally:
        await locks.close()


async def news(conn: Any) -> None:
    """Make the server send something on the lock session that nobody reads yet (a notification)."""
    await conn.execute("LISTEN handoff_locks_test")
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute("NOTIFY handoff_locks_test")
    await asyncio.sleep(0.1)


async def test_checks_after_the_server_said_something_share_one_round_trip() -> None:
    locks = PostgresTurnLocks(POSTGRES_URL)
    try:
        held = [await locks.acquire(t) for t in thread_ids(20)]
        assert all(lock is not None for lock in held)
        await news(locks._conn)
        sent = count_statements(locks._conn)
        await asyncio.gather(*(lock.check() for lock in held if lock is not None))
        assert sent == ["SELECT 1"]
        for lock in held:
            assert lock is not None
            await lock.release()
    finally:
        await locks.close()


async def test_a_check_asked_for_while_a_statement_runs_waits_for_a_round_trip_begun_after_it() -> None:
    locks = PostgresTurnLocks(POSTGRES_URL)
    try:
        first, second, third = thread_ids(3)
        a, b = await locks.acquire(first), await locks.acquire(second)
        assert a is not None and b is not None
        sent = count_statements(locks._conn)
        taking = asyncio.create_task(locks.acquire(third))  # a statement in flight on the session
        await asyncio.sleep(0)
        early = asyncio.create_task(a.check())
        await asyncio.sleep(0)  # its ping has begun
        await asyncio.gather(early, b.check())
        c = await taking
        assert c is not None
        assert sent[0].startswith("SELECT pg_try_advisory_lock") and sent[1:] == ["SELECT 1", "SELECT 1"]
        for lock in (a, b, c):
            await lock.release()
    finally:
        await locks.close()


async def test_every_lock_on_a_terminated_session_is_reported_lost_and_new_ones_are_taken() -> None:
    locks = PostgresTurnLocks(POSTGRES_URL)
    other = PostgresTurnLocks(POSTGRES_URL)
    try:
        ids = thread_ids(6)
        held = [await locks.acquire(t) for t in ids[:5]]
        await terminate(locks._conn)
        results = await asyncio.gather(*(lock.check() for lock in held if lock is not None),
                                       return_exceptions=True)
        assert len(results) == 5 and all(isinstance(r, LockLost) for r in results)
        # the session is reopened for the next turn, and its locks are real ones again
        fresh = await locks.acquire(ids[5])
        assert fresh is not None
        await fresh.check()
        assert await other.acquire(ids[5]) is None
        for lock in held:  # a lost lock stays lost on the new session
            assert lock is not None
            with pytest.raises(LockLost):
                await lock.check()
            await lock.release()
        taken = await other.acquire(ids[0])  # nobody holds the lost ones any more
        assert taken is not None
        await taken.release()
        await fresh.release()
        taken = await other.acquire(ids[5])
        assert taken is not None
        await taken.release()
    finally:
        await locks.close()
        await other.close()


async def test_a_session_that_broke_unnoticed_is_replaced_when_the_next_lock_is_taken() -> None:
    locks = PostgresTurnLocks(POSTGRES_URL)
    try:
        first, second = thread_ids(2)
        lock = await locks.acquire(first)
        assert lock is not None
        await lock.release()
        await terminate(locks._conn)  # nothing has been sent on it since: it does not know yet
        again = await locks.acquire(second)
        assert again is not None
        await again.check()
        await again.release()
    finally:
        await locks.close()
