"""Attacks on ``LeanPostgresStore`` (service/postgres_store.py) and the raw-cursor saves of
``LeanPostgresSaver`` (service/postgres_saver.py): each test asserts what LangGraph's stock
``AsyncPostgresStore`` / ``AsyncPostgresSaver`` does with the same input, run side by side.

What it found and what was fixed: a store or saver on one connection inside its caller's
pipeline now syncs each batch and save as the stock ones do; keys that are not strings are read
the stock way; a save psycopg refuses part-way now stores none of it. A channel of NaN or an
infinity is kept in a blob on purpose (tests/test_pg_json.py), where the stock saver fails."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import ERROR
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.base import GetOp, InvalidNamespaceError, Op, PutOp, TTLConfig
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg_pool import AsyncConnectionPool

from handoff.graphs.persistence import serializer
from handoff.service.postgres_saver import LeanPostgresSaver
from handoff.service.postgres_store import MAX_KEYS, LeanPostgresStore
from tests.support.postgres import POSTGRES_URL
from tests.test_postgres_saver import POOL_KWARGS, at, blank, checkpoint_id, savers, stored, version
from tests.test_postgres_store import seen as answer

# -- the two stores side by side ----------------------------------------------------------------------


def new_root(kind: str) -> str:
    return f"atk-{kind}-{uuid.uuid4().hex}"


@dataclass
class Pair:
    pool: AsyncConnectionPool
    lean: AsyncPostgresStore
    stock: AsyncPostgresStore
    lean_root: str
    stock_root: str

    def sides(self) -> list[tuple[AsyncPostgresStore, str]]:
        return [(self.lean, self.lean_root), (self.stock, self.stock_root)]


async def forget(pool: AsyncConnectionPool, *roots: str) -> None:
    async with pool.connection() as conn:
        for root in roots:
            await conn.execute("DELETE FROM store WHERE prefix = %s OR prefix LIKE %s", (root, f"{root}.%"))


@asynccontextmanager
async def opened(max_size: int = 4) -> AsyncIterator[AsyncConnectionPool]:
    pool: AsyncConnectionPool = AsyncConnectionPool(POSTGRES_URL, min_size=1, max_size=max_size,
                                                    kwargs=POOL_KWARGS, open=False)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def pair(ttl: TTLConfig | None = None, max_size: int = 4) -> AsyncIterator[Pair]:
    async with opened(max_size) as pool:
        stock = AsyncPostgresStore(pool, ttl=ttl)
        await stock.setup()
        both = Pair(pool, LeanPostgresStore(pool, ttl=ttl), stock, new_root("lean"), new_root("stock"))
        try:
            yield both
        finally:
            await forget(pool, both.lean_root, both.stock_root)


def rooted(op: Op, root: str) -> Op:
    if isinstance(op, GetOp):
        return GetOp((root, *op.namespace), op.key, refresh_ttl=op.refresh_ttl)
    assert isinstance(op, PutOp)
    return PutOp((root, *op.namespace), op.key, op.value, index=False, ttl=op.ttl)


async def outcome(store: AsyncPostgresStore, root: str, batch: Sequence[Op]) -> Any:
    """A batch's answers, or the class of what it raised."""
    try:
        return answer(await store.abatch([rooted(op, root) for op in batch]), root)
    except Exception as exc:  # the class is the answer
        return ("raised", type(exc).__name__)


async def rows(pool: AsyncConnectionPool, root: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT prefix, key, value, ttl_minutes, expires_at IS NULL AS forever,"
            " expires_at > NOW() + interval '30 minutes' AS far FROM store"
            " WHERE prefix = %s OR prefix LIKE %s ORDER BY prefix, key", (root, f"{root}.%"))
        return [(r["prefix"].removeprefix(root), r["key"], r["value"], r["ttl_minutes"], r["forever"], r["far"])
                for r in await cur.fetchall()]


async def same(both: Pair, batches: Sequence[Sequence[Op]]) -> list[Any]:
    """Play ``batches`` on both stores: the same answers (or exception classes) and the same rows."""
    answers = []
    for batch in batches:
        lean = await outcome(both.lean, both.lean_root, batch)
        stock = await outcome(both.stock, both.stock_root, batch)
        assert lean == stock, batch
        answers.append(stock)
    assert await rows(both.pool, both.lean_root) == await rows(both.pool, both.stock_root)
    return answers


# -- odd keys, namespaces and batches ---------------------------------------------------------------

ODD_KEYS = ["", " ", "a.b.c", "..", "it's", 'say "hi"', "back\\slash", "100%", "%s", "%(x)s", "$1", "$$",
            "\n\t", "ünï©ødé", "日本語", "🦜🔗", "e\u0301", "\u200b", "NULL", "-- x", "k" * 2000]
ODD_SPACES = [("ünï", "q'\""), ("%_", "$1"), ("a",), ("%s",)]


@pytest.mark.anyio
async def test_odd_keys_and_namespaces_answer_and_store_as_the_stock_store() -> None:
    async with pair() as both:
        puts = [PutOp(space, key, {"k": key, "nested": {"l": [1, {"x": None}], "s": "%s $1"}})
                for space in ODD_SPACES for key in ODD_KEYS]
        one_space = [GetOp(ODD_SPACES[0], key) for key in [*ODD_KEYS, "missing"]]
        all_spaces = [GetOp(space, key) for space in ODD_SPACES for key in ODD_KEYS[::3]]
        deletes = [PutOp(ODD_SPACES[1], key, None) for key in ODD_KEYS[::2]]
        answers = await same(both, [one_space, puts, one_space, all_spaces, deletes,
                                    [GetOp(ODD_SPACES[1], key) for key in ODD_KEYS]])
        assert all(item is not None for item in answers[2][:-1]) and answers[2][-1] is None


@pytest.mark.anyio
async def test_repeated_keys_within_a_batch_answer_and_store_as_the_stock_store() -> None:
    async with pair() as both:
        await same(both, [
            [PutOp(("a",), "k", {"n": 1}), PutOp(("a",), "k", {"n": 2}), PutOp(("b",), "k", {"n": 3})],
            [GetOp(("a",), "k"), GetOp(("a",), "k", refresh_ttl=False), GetOp(("a",), "k"), GetOp(("a",), "x")],
            [PutOp(("a",), "k", {"n": 4}), PutOp(("a",), "k", None)],  # the last wins: a delete alone
            [GetOp(("a",), "k"), GetOp(("b",), "k"), GetOp(("a",), "k")],
            [PutOp(("a",), "k", None), PutOp(("a",), "k", {"n": 5}, ttl=5.0)],  # the last wins: a write alone
            [GetOp(("a",), "k"), GetOp(("a",), "k")],
            [PutOp(("a",), "gone", None), PutOp(("b",), "gone", None)],  # deletes of nothing, two namespaces
        ])


@pytest.mark.anyio
async def test_gets_and_puts_of_the_same_key_in_one_batch_see_what_the_stock_store_sees() -> None:
    async with pair() as both:
        await same(both, [
            [PutOp(("a",), "k", {"v": "old"})],
            [GetOp(("a",), "k"), PutOp(("a",), "k", {"v": "new"}), GetOp(("a",), "k")],
            [PutOp(("a",), "k", None), GetOp(("a",), "k")],
            [GetOp(("a",), "k")],
        ])


@pytest.mark.anyio
async def test_an_empty_batch_answers_nothing_as_the_stock_store() -> None:
    async with pair() as both:
        assert await same(both, [[], [PutOp(("a",), "k", {"n": 1})], []]) == [[], [None], []]


@pytest.mark.anyio
async def test_a_dotted_namespace_label_is_refused_as_by_the_stock_store() -> None:
    async with pair() as both:
        for store, root in both.sides():
            with pytest.raises(InvalidNamespaceError):
                await store.abatch([GetOp((root, "a.b"), "k")])
            with pytest.raises(InvalidNamespaceError):
                await store.abatch([PutOp((root, ""), "k", {"n": 1})])


@pytest.mark.anyio
async def test_thousands_of_keys_up_to_the_limit_of_one_statement_answer_as_the_stock_store() -> None:
    """Exactly ``MAX_KEYS`` keys of a namespace (the largest read sent as ``VALUES``), in one namespace
    (no pipeline) and in two (two statements of 10,002 parameters in one pipeline)."""
    async with pair() as both:
        keys = [f"k{n}" for n in range(MAX_KEYS)]
        await same(both, [
            [PutOp(("a",), k, {"n": n}) for n, k in enumerate(keys[::2])] + [PutOp(("b",), "k1", {"n": -1})],
            [GetOp(("a",), k, refresh_ttl=n % 2 == 0) for n, k in enumerate(keys)],
            [GetOp(("a",), k) for k in keys] + [GetOp(("b",), k) for k in keys],
        ])


# -- values and keys PostgreSQL (or psycopg) refuses --------------------------------------------------

REFUSED: dict[str, list[Op]] = {
    "NUL in a value": [PutOp(("a",), "k1", {"n": 1}), PutOp(("b",), "k2", {"t": "x\x00y"})],
    "NUL in a key (write)": [PutOp(("a",), "k1", {"n": 1}), PutOp(("a",), "k\x00", {"n": 2})],
    "NUL in a key (read)": [GetOp(("a",), "k1"), GetOp(("a",), "k\x00")],
    "NaN in a value": [PutOp(("a",), "k1", {"n": 1}), PutOp(("a",), "k2", {"x": float("nan")})],
    "lone surrogate in a key": [GetOp(("a",), "\ud800")],
    "lone surrogate in a value": [PutOp(("a",), "k1", {"n": 1}), PutOp(("a",), "k2", {"x": "\ud800"})],
    "unserialisable value": [PutOp(("a",), "k1", {"n": 1}), PutOp(("a",), "k2", {"x": {1, 2}})],
    "key too long for the index": [PutOp(("a",), "k1", {"n": 1}), PutOp(("a",), secrets.token_urlsafe(6000), {})],
    "a megabyte key (read)": [GetOp(("a",), "x" * 1_000_000)],
}
REFUSED_AS: dict[str, Any] = {
    "NUL in a value": ("raised", "UntranslatableCharacter"),
    "NUL in a key (write)": ("raised", "DataError"),
    "NUL in a key (read)": ("raised", "DataError"),
    "NaN in a value": ("raised", "InvalidTextRepresentation"),
    "lone surrogate in a key": ("raised", "UnicodeEncodeError"),
    "lone surrogate in a value": ("raised", "InvalidTextRepresentation"),
    "unserialisable value": ("raised", "TypeError"),
    "key too long for the index": ("raised", "ProgramLimitExceeded"),
    "a megabyte key (read)": [None],
}
"""What the stock store does with each (the lean one must do the same)."""


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_refused_batch_raises_as_the_stock_store_and_writes_the_same(case: str) -> None:
    """The same exception class, and nothing of the batch written; the pool's connections stay usable."""
    async with pair(max_size=1) as both:
        answers = await same(both, [[PutOp(("a",), "seed", {"n": 0})], REFUSED[case], [GetOp(("a",), "seed")]])
        assert answers[1] == REFUSED_AS[case] and answers[2][0] is not None


@pytest.mark.anyio
@pytest.mark.parametrize("keys", [
    pytest.param([5], id="int"),
    pytest.param([b"5"], id="bytes"),
    pytest.param([uuid.UUID(int=5)], id="uuid"),
    pytest.param(["5", 5], id="str-and-int"),
])
async def test_a_read_of_keys_that_are_not_strings_answers_as_the_stock_store(keys: list[Any]) -> None:
    async with pair() as both:
        await same(both, [[PutOp(("a",), "5", {"n": 5})], [GetOp(("a",), key) for key in keys]])


# -- TTLs ---------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_mixed_ttl_puts_and_refresh_flags_move_the_same_expiries_as_the_stock_store() -> None:
    """Keys read twice in a batch with refresh True and False (either order), keys without a TTL, and
    missing keys: the same answers, and the same expiries moved on."""
    async with pair() as both:
        await same(both, [[PutOp(("t",), f"k{n}", {"n": n}, ttl=60.0) for n in range(5)]
                          + [PutOp(("t",), "forever", {"n": -1}), PutOp(("u",), "k0", {"n": 0}, ttl=0.5)]])
        async with both.pool.connection() as conn:
            for root in (both.lean_root, both.stock_root):
                await conn.execute("UPDATE store SET expires_at = NOW() + interval '1 minute' "
                                   "WHERE prefix = %s AND ttl_minutes IS NOT NULL", (f"{root}.t",))
        await same(both, [
            [GetOp(("t",), "k0"), GetOp(("t",), "k0", refresh_ttl=False),
             GetOp(("t",), "k1", refresh_ttl=False), GetOp(("t",), "k1"),
             GetOp(("t",), "k2", refresh_ttl=False), GetOp(("t",), "k2", refresh_ttl=False),
             GetOp(("t",), "k3"), GetOp(("t",), "forever"), GetOp(("t",), "missing")],
        ])
        far = {key: far for space, key, _, _, _, far in await rows(both.pool, both.lean_root) if space == ".t"}
        assert far == {"k0": True, "k1": True, "k2": False, "k3": True, "k4": False, "forever": None}


@pytest.mark.anyio
async def test_expired_items_are_omitted_and_not_revived_as_by_the_stock_store() -> None:
    """A store whose TTL config omits expired items: an expired item reads as missing, and a read asking
    to refresh it does not bring it back, in a one-namespace read and in a two-namespace one."""
    async with pair(ttl={"omit_expired": True, "refresh_on_read": True}) as both:
        await same(both, [[PutOp(("t",), f"k{n}", {"n": n}, ttl=60.0) for n in range(3)]
                          + [PutOp(("u",), "k0", {"n": 0}, ttl=60.0)]])
        async with both.pool.connection() as conn:
            for root in (both.lean_root, both.stock_root):
                await conn.execute("UPDATE store SET expires_at = NOW() - interval '1 minute' "
                                   "WHERE (prefix = %s AND key <> 'k2') OR prefix = %s",
                                   (f"{root}.t", f"{root}.u"))
        answers = await same(both, [
            [GetOp(("t",), "k0"), GetOp(("t",), "k1", refresh_ttl=False), GetOp(("t",), "k2")],
            [GetOp(("t",), "k0"), GetOp(("u",), "k0")],
            [GetOp(("t",), "k0")],
        ])
        assert answers[0][:2] == [None, None] and answers[0][2] is not None and answers[1] == [None, None]


# -- many coroutines, one pool or one connection -------------------------------------------------------

async def workload(store: AsyncPostgresStore, root: str, n: int) -> list[Any]:
    """Coroutine ``n``'s calls: its own key written, read alone and beside a shared one (two namespaces:
    a pipeline), the shared ones read in one namespace, and for odd ``n`` its key deleted again."""
    space, key = (root, f"n{n % 3}"), f"k{n}"
    seen: list[Any] = []
    await store.aput(space, key, {"n": n, "nested": {"l": [n, {"x": None}]}}, index=False)
    seen.append(answer(await store.aget(space, key), root))
    seen.append(answer(await store.abatch([GetOp(space, key), GetOp((root, "seed"), "s")]), root))
    seen.append(answer(await store.abatch([GetOp((root, "seed"), "s"), GetOp((root, "seed"), f"none{n}")]), root))
    if n % 2:
        await store.abatch([PutOp(space, key, None)])
        seen.append(await store.aget(space, key))
    return seen


async def run_all(store: AsyncPostgresStore, root: str, count: int) -> list[Any]:
    await store.abatch([PutOp((root, "seed"), "s", {"seed": True})])
    return await asyncio.wait_for(asyncio.gather(*(workload(store, root, n) for n in range(count))), 20)


@pytest.mark.anyio
async def test_many_coroutines_on_one_small_pool_answer_and_store_as_on_the_stock_store() -> None:
    async with pair(max_size=3) as both:
        lean = await run_all(both.lean, both.lean_root, 60)
        stock = await run_all(both.stock, both.stock_root, 60)
        assert lean == stock
        assert await rows(both.pool, both.lean_root) == await rows(both.pool, both.stock_root)


@pytest.mark.anyio
async def test_many_coroutines_on_one_shared_connection_answer_and_store_as_on_the_stock_store() -> None:
    async with pair(max_size=1) as both:
        answers = []
        for cls, root in ((LeanPostgresStore, both.lean_root), (AsyncPostgresStore, both.stock_root)):
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn:
                answers.append(await run_all(cls(conn), root, 40))
        assert answers[0] == answers[1]
        assert await rows(both.pool, both.lean_root) == await rows(both.pool, both.stock_root)


@pytest.mark.anyio
async def test_a_batch_cancelled_while_it_waits_for_a_row_lock_leaves_what_the_stock_one_leaves() -> None:
    """A read refreshing a TTL and a write, each blocked on a row another connection holds, cancelled by a
    timeout: nothing changes, and the pool's only connection serves the next batch, as on the stock store."""
    async with pair(max_size=1) as both:
        found = []
        for store, root in both.sides():
            await store.abatch([PutOp((root, "a"), "k", {"n": 1}, index=False, ttl=60.0)])
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as locker:
                await locker.execute("SELECT 1 FROM store WHERE prefix = %s FOR UPDATE", (f"{root}.a",))
                for batch in ([GetOp((root, "a"), "k")], [PutOp((root, "a"), "k", {"n": 2}, index=False)]):
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(store.abatch(batch), 0.3)
                await locker.rollback()
            [item] = await asyncio.wait_for(store.abatch([GetOp((root, "a"), "k", refresh_ttl=False)]), 5)
            assert item is not None
            found.append(item.value)
        assert found == [{"n": 1}, {"n": 1}]
        assert await rows(both.pool, both.lean_root) == await rows(both.pool, both.stock_root)


# -- one connection: a store's own pipeline, a caller's pipeline, a caller's transaction ------------

async def visible(root: str) -> list[str]:
    """The keys under ``root`` another connection sees."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT key FROM store WHERE prefix LIKE %s ORDER BY key", (f"{root}.%",))
        return [row[0] for row in await cur.fetchall()]


async def script(store: AsyncPostgresStore, root: str) -> list[Any]:
    """Good, refused and good batches on one connection; after each, its answer and what another
    connection sees."""
    seen = []
    for batch in ([PutOp(("a",), "k1", {"n": 1})], [GetOp(("a",), "k1")],
                  [PutOp(("a",), "k2", {"t": "x\x00"})], [PutOp(("a",), "k3", {"n": 3})],
                  [GetOp(("a",), "k3"), GetOp(("a",), "k1")], [PutOp(("a",), "k1", None), PutOp(("b",), "k4", {})]):
        seen.append((await outcome(store, root, batch), await visible(root)))
    return seen


@pytest.mark.anyio
async def test_with_a_pipeline_of_its_own_it_answers_and_commits_as_the_stock_store() -> None:
    """``AsyncPostgresStore(conn, pipe=pipe)`` (``from_conn_string(pipeline=True)``)."""
    async with pair(max_size=1) as both:
        seen = []
        for cls, root in ((LeanPostgresStore, both.lean_root), (AsyncPostgresStore, both.stock_root)):
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn, conn.pipeline() as pipe:
                seen.append(await script(cls(conn, pipe=pipe), root))
        assert seen[0] == seen[1]


@pytest.mark.anyio
async def test_in_a_callers_transaction_it_answers_and_commits_as_the_stock_store() -> None:
    async with pair(max_size=1) as both:
        seen = []
        for cls, root in ((LeanPostgresStore, both.lean_root), (AsyncPostgresStore, both.stock_root)):
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn, conn.transaction(force_rollback=True):
                seen.append(await script(cls(conn), root))
        assert seen[0] == seen[1]


@pytest.mark.anyio
async def test_in_a_callers_pipeline_each_batch_is_committed_and_a_refused_one_raises_as_on_the_stock_store(
) -> None:
    async with pair(max_size=1) as both:
        seen = []
        for cls, root in ((LeanPostgresStore, both.lean_root), (AsyncPostgresStore, both.stock_root)):
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn:
                try:
                    async with conn.pipeline():
                        seen.append(await script(cls(conn), root))
                except psycopg.Error as exc:
                    seen.append(("the caller's pipeline raised", type(exc).__name__))
                seen.append(await visible(root))
        assert seen[0] == seen[2] and seen[1] == seen[3] == ["k3", "k4"]


# -- the saver's raw-cursor saves ---------------------------------------------------------------------

async def save_outcome(both: Any, saver: Any, kind: str, call: Any) -> tuple[Any, dict[str, list[Any]]]:
    """What ``call(saver, thread)`` raised (or "ok"), and the rows it left."""
    thread = both.thread(kind)
    try:
        await call(saver, thread)
        result: Any = "ok"
    except Exception as exc:  # the class is the answer
        result = type(exc).__name__
    return result, await stored(both.pool, thread)


async def same_saves(call: Any) -> tuple[Any, dict[str, list[Any]]]:
    async with savers(max_size=2) as both:
        lean = await save_outcome(both, both.lean, "atk-lean", call)
        stock = await save_outcome(both, both.stock, "atk-stock", call)
        assert lean == stock
        return stock


def with_channels(cid: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    versions = {channel: version(1) for channel in values}
    return {**blank(cid), "channel_values": values, "channel_versions": versions}, versions


@pytest.mark.anyio
async def test_saves_with_odd_ids_and_channels_store_as_the_stock_saver() -> None:
    """Placeholders and quotes in every id and name: ``$1`` and ``%s`` are data, not parameters."""
    odd = "$1 %s %(x)s 'q' \"d\" \\ ünï 🦜"

    async def call(saver: Any, thread: str) -> None:
        checkpoint, versions = with_channels(checkpoint_id(1), {odd: [odd], "$2": odd, "%s": {"$3": 1}})
        saved = await saver.aput(at(thread, odd), checkpoint, {odd: odd, "$1": "%s"}, versions)
        await saver.aput_writes(saved, [(odd, odd), ("$1", [1]), (ERROR, "$2")], odd, odd)
        await saver.aput_writes(saved, [(ERROR, "%s")], "$9", "")

    result, rows_left = await same_saves(call)
    assert result == "ok" and len(rows_left["checkpoint_writes"]) == 4


@pytest.mark.anyio
@pytest.mark.parametrize("count", [1000, 1001])
async def test_writes_at_the_edge_of_one_statement_store_as_the_stock_saver(count: int) -> None:
    async def call(saver: Any, thread: str) -> None:
        saved = await saver.aput(at(thread), blank(checkpoint_id(1)), {}, {})
        await saver.aput_writes(saved, [(f"c{n % 7}", n) for n in range(count)], "t")
        await saver.aput_writes(saved, [(f"c{n % 7}", -n) for n in range(count)], "t")  # DO NOTHING: kept

    result, rows_left = await same_saves(call)
    assert result == "ok" and len(rows_left["checkpoint_writes"]) == count


@pytest.mark.anyio
async def test_saves_from_many_coroutines_on_one_shared_connection_store_as_the_stock_saver() -> None:
    async with savers(max_size=2) as both:
        left = []
        for cls, kind in ((LeanPostgresSaver, "atk-conn-lean"), (AsyncPostgresSaver, "atk-conn-stock")):
            threads = [both.thread(f"{kind}{n}") for n in range(12)]
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn:
                saver = cls(conn, serde=serializer())

                async def one(n: int, thread: str, saver: Any = saver) -> None:
                    checkpoint, versions = with_channels(checkpoint_id(1), {"a": [n], "p": n})
                    saved = await saver.aput(at(thread), checkpoint, {"n": n}, versions)
                    await asyncio.gather(*(saver.aput_writes(saved, [("a", [n, k]), (ERROR, k)], f"t{k}")
                                           for k in range(3)))

                await asyncio.wait_for(asyncio.gather(*(one(n, t) for n, t in enumerate(threads))), 20)
            left.append([await stored(both.pool, thread) for thread in threads])
        assert left[0] == left[1]


def refused_part_way(case: str) -> Any:
    """A save whose parameters psycopg refuses to send (client side, no server error), part-way."""
    async def call(saver: Any, thread: str) -> None:
        if case == "checkpoint JSON":
            checkpoint, versions = with_channels(checkpoint_id(1), {"a": [1]})
            await saver.aput(at(thread), {**checkpoint, "extra": {1, 2}}, {}, versions)
        elif case.startswith("writes"):
            saved = await saver.aput(at(thread), blank(checkpoint_id(1)), {}, {})
            before = int(case.split()[-1])
            await saver.aput_writes(saved, [*((f"c{n}", n) for n in range(before)), ("bad\x00", 1), ("z", 2)], "t")
        else:
            before = int(case.split()[-1])
            values: dict[str, Any] = {f"c{n}": [n] for n in range(before)}
            checkpoint, versions = with_channels(checkpoint_id(1), {**values, "zz\x00": [1]})
            await saver.aput(at(thread), checkpoint, {}, versions)
    return call


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["checkpoint JSON", "writes, NUL channel after 10", "writes, NUL channel after 1500",
                                  "blobs, NUL channel after 1500"])
async def test_a_save_refused_part_way_on_the_client_raises_and_stores_none_of_it(case: str) -> None:
    """psycopg refuses a parameter (a set in the checkpoint's JSON, a NUL in a channel name) part-way
    through a save: the lean save raises and stores none of it, even when it is several statements
    (1,500 rows: one transaction). The stock saver raises too, but its pipeline's exit commits what it
    had already queued: blobs without their checkpoint, or the task's writes before the bad one."""
    async with savers(max_size=2) as both:
        result = await save_outcome(both, both.lean, "atk-lean", refused_part_way(case))
    outcome, rows_left = result
    assert outcome in {"TypeError", "DataError"}
    wanted_checkpoints = 1 if case.startswith("writes") else 0  # the writes' own checkpoint was saved first
    assert (len(rows_left["checkpoints"]), len(rows_left["checkpoint_blobs"]),
            len(rows_left["checkpoint_writes"])) == (wanted_checkpoints, 0, 0)


@pytest.mark.anyio
async def test_in_a_callers_pipeline_without_pipe_each_save_commits_and_a_refused_one_raises() -> None:
    async with savers(max_size=2) as both:
        seen = []
        for cls, kind in ((LeanPostgresSaver, "atk-callpipe-lean"), (AsyncPostgresSaver, "atk-callpipe-stock")):
            thread = both.thread(kind)
            steps: list[Any] = []
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn:
                saver = cls(conn, serde=serializer())
                try:
                    async with conn.pipeline():
                        checkpoint, versions = with_channels(checkpoint_id(1), {"a": [1]})
                        saved = await saver.aput(at(thread), checkpoint, {}, versions)
                        steps.append(len((await stored(both.pool, thread))["checkpoints"]))
                        await saver.aput_writes(saved, [("a", 1)], "t1")
                        steps.append(len((await stored(both.pool, thread))["checkpoint_writes"]))
                        try:
                            await saver.aput(at(thread), with_channels(checkpoint_id(2), {"x": "nul\x00"})[0], {}, {})
                            steps.append("refused save returned")
                        except psycopg.Error as exc:
                            steps.append(type(exc).__name__)
                        await saver.aput(at(thread), blank(checkpoint_id(3)), {}, {})
                        steps.append(len((await stored(both.pool, thread))["checkpoints"]))
                except psycopg.Error as exc:
                    steps.append(("the caller's pipeline raised", type(exc).__name__))
            steps.append({table: len(r) for table, r in (await stored(both.pool, thread)).items()})
            seen.append(steps)
        assert seen[0] == seen[1]
        assert seen[1][-1] == {"checkpoints": 2, "checkpoint_blobs": 1, "checkpoint_writes": 1}
