"""``LeanPostgresStore`` (service/postgres_store.py) against LangGraph's ``AsyncPostgresStore``: the same
batches give the same answers and leave the same rows, and a batch of one statement goes out without a
pipeline while a batch of several still lands together."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from langgraph.store.base import GetOp, Item, ListNamespacesOp, Op, PutOp, SearchOp
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg_pool import AsyncConnectionPool

from handoff.service.postgres_store import MAX_KEYS, LeanPostgresStore, get_sql, padded
from tests.support.postgres import POSTGRES_URL
from tests.test_postgres_saver import POOL_KWARGS

SPACES = ("a", "b")
KEYS = ("k1", "k2", "k3")


@dataclass
class Stores:
    pool: AsyncConnectionPool
    lean: LeanPostgresStore
    stock: AsyncPostgresStore
    lean_root: str
    stock_root: str


@asynccontextmanager
async def stores() -> AsyncIterator[Stores]:
    pool: AsyncConnectionPool = AsyncConnectionPool(POSTGRES_URL, min_size=1, max_size=3, kwargs=POOL_KWARGS,
                                                    open=False)
    await pool.open()
    try:
        stock = AsyncPostgresStore(pool)
        await stock.setup()
        both = Stores(pool, LeanPostgresStore(pool), stock, f"lean-{uuid.uuid4().hex}", f"stock-{uuid.uuid4().hex}")
        try:
            yield both
        finally:
            await forget(both)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared() -> AsyncIterator[Stores]:
    """One pair of stores for the random programs (each program under roots of its own)."""
    async with stores() as both:
        yield both


async def forget(both: Stores) -> None:
    """Delete what both stores wrote under their current roots."""
    async with both.pool.connection() as conn:
        await conn.execute("DELETE FROM store WHERE prefix LIKE %s OR prefix LIKE %s",
                           (f"{both.lean_root}.%", f"{both.stock_root}.%"))


def rooted(op: Op, root: str) -> Op:
    """``op`` with its namespace under ``root`` (each store writes under a root of its own)."""
    if isinstance(op, GetOp):
        return GetOp((root, *op.namespace), op.key)
    if isinstance(op, PutOp):
        return PutOp((root, *op.namespace), op.key, op.value, index=False)
    if isinstance(op, SearchOp):
        return SearchOp((root, *op.namespace_prefix), limit=op.limit)
    assert isinstance(op, ListNamespacesOp)
    return ListNamespacesOp(max_depth=op.max_depth)


def seen(result: Any, root: str) -> Any:
    """A batch result without what differs between the two stores: the root and the timestamps."""
    if isinstance(result, list):
        return [seen(r, root) for r in result]
    if isinstance(result, Item):
        assert result.namespace[0] == root
        return (result.namespace[1:], result.key, result.value)
    return result


async def rows(pool: AsyncConnectionPool, root: str) -> list[tuple[str, str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT prefix, key, value FROM store WHERE prefix LIKE %s ORDER BY prefix, key",
                                 (f"{root}.%",))
        return [(r["prefix"].removeprefix(root), r["key"], r["value"]) for r in await cur.fetchall()]


async def same_answers(both: Stores, batches: list[list[Op]]) -> None:
    for batch in batches:
        lean = await both.lean.abatch([rooted(op, both.lean_root) for op in batch])
        stock = await both.stock.abatch([rooted(op, both.stock_root) for op in batch])
        assert seen(lean, both.lean_root) == seen(stock, both.stock_root), batch
    assert await rows(both.pool, both.lean_root) == await rows(both.pool, both.stock_root)


def random_batches(rng: random.Random) -> list[list[Op]]:
    """Up to six batches of one to five reads, writes, deletes and searches over two namespaces."""
    def op() -> Op:
        space, key = (rng.choice(SPACES),), rng.choice(KEYS)
        kind = rng.randrange(4)
        if kind == 0:
            return GetOp(space, key)
        if kind == 1:
            return PutOp(space, key, None)
        if kind == 2:
            return SearchOp(space)
        return PutOp(space, key, {"n": rng.randrange(10)})
    return [[op() for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(1, 6))]


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(40))
async def test_any_batches_answer_and_store_as_the_stock_store(shared: Stores, seed: int) -> None:
    shared.lean_root, shared.stock_root = f"lean-{uuid.uuid4().hex}", f"stock-{uuid.uuid4().hex}"
    try:
        await same_answers(shared, random_batches(random.Random(seed)))
    finally:
        await forget(shared)


@pytest.mark.anyio
async def test_one_statement_batches_skip_the_pipeline_and_others_keep_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's usual batches (writes across namespaces: one INSERT; reads of one namespace: one
    SELECT) open no pipeline; deletes beside writes, or reads of two namespaces, still do."""
    opened: list[str] = []
    pipeline = psycopg.AsyncConnection.pipeline

    def counted(conn: psycopg.AsyncConnection[Any]) -> Any:
        opened.append("pipeline")
        return pipeline(conn)

    monkeypatch.setattr(psycopg.AsyncConnection, "pipeline", counted)
    async with stores() as both:
        one = [[PutOp(("a",), "k1", {"n": 1}), PutOp(("b",), "k2", {"n": 2})], [GetOp(("a",), "k1"), GetOp(("a",), "k2")]]
        several = [[PutOp(("a",), "k1", None), PutOp(("b",), "k3", {"n": 3})], [GetOp(("a",), "k1"), GetOp(("b",), "k3")]]
        for batch in one:
            await both.lean.abatch([rooted(op, both.lean_root) for op in batch])
        assert opened == []
        for batch in several:
            await both.lean.abatch([rooted(op, both.lean_root) for op in batch])
        assert opened == ["pipeline", "pipeline"]


@pytest.mark.anyio
async def test_a_failing_one_statement_batch_raises_and_writes_nothing() -> None:
    """A value PostgreSQL refuses (a NUL character in JSON text) fails the whole INSERT: no row of the
    batch is written, as in the stock store's pipeline."""
    async with stores() as both:
        batch = [PutOp((both.lean_root, "a"), "k1", {"n": 1}), PutOp((both.lean_root, "b"), "k2", {"text": "x\x00y"})]
        with pytest.raises(psycopg.Error):
            await both.lean.abatch(batch)
        assert await rows(both.pool, both.lean_root) == []


@pytest.mark.anyio
@pytest.mark.parametrize("refresh", [True, False])
async def test_a_read_refreshes_a_ttl_as_the_stock_store_does(refresh: bool) -> None:
    """An item written with a TTL: a read asking to refresh it moves its expiry on, as the stock read does;
    a read that does not leaves it."""
    async with stores() as both:
        expiries = []
        for store, root in ((both.lean, both.lean_root), (both.stock, both.stock_root)):
            await store.abatch([PutOp((root, "a"), "k1", {"n": 1}, index=False, ttl=60.0)])
            async with both.pool.connection() as conn:
                await conn.execute("UPDATE store SET expires_at = NOW() + interval '1 minute' WHERE prefix = %s",
                                   (f"{root}.a",))
            [item] = await store.abatch([GetOp((root, "a"), "k1", refresh_ttl=refresh)])
            assert item is not None and item.value == {"n": 1}
            async with both.pool.connection() as conn:
                cur = await conn.execute("SELECT expires_at - NOW() AS left FROM store WHERE prefix = %s",
                                         (f"{root}.a",))
                row = await cur.fetchone()
            assert row is not None
            expiries.append(row["left"].total_seconds() > 30 * 60)
        assert expiries == [refresh, refresh]


@pytest.mark.anyio
async def test_a_read_of_more_keys_than_one_statement_carries_answers_as_the_stock_store() -> None:
    async with stores() as both:
        keys = [f"k{n}" for n in range(MAX_KEYS + 10)]
        await same_answers(both, [[PutOp(("a",), k, {"n": n}) for n, k in enumerate(keys[:50])],
                                  [GetOp(("a",), k) for k in keys]])


def test_reads_of_every_size_share_a_few_statements() -> None:
    """Reads are padded to a power of two keys, so psycopg prepares a dozen read statements a connection
    (it keeps 100), not one per size; the padding rows match nothing."""
    assert [padded(n) for n in (1, 2, 3, 4, 5, 16, 17, MAX_KEYS)] == [1, 2, 4, 4, 8, 16, 32, 8192]
    assert len({get_sql(padded(n), False) for n in range(1, MAX_KEYS + 1)}) == 14
