"""The service's async persistence: which pooled connections are checked before use."""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest

from handoff.service.storage import CheckUnlessFresh

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
        await checks.returned(conn)
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
            await checks.returned(conn)
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
