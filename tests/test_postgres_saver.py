"""``LeanPostgresSaver`` keeps ``AsyncPostgresSaver``'s rows and reads and changes only how it talks to
PostgreSQL: the same calls store the same rows and read back the same tuples, lists and delta
histories; the stock saver and the CLI's sync ``PostgresSaver`` read what it wrote and it reads what
they wrote; real graphs run on it to the states they reach on the stock saver; its sync methods work
from a worker thread; and over a pool its operations run side by side, taking no lock."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import reduce
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import ERROR, INTERRUPT, RESUME, SCHEDULED, WRITES_IDX_MAP, empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.types import Command
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from handoff.agents.ledger import store_label
from handoff.graphs.persistence import serializer
from handoff.graphs.registry import GRAPHS
from handoff.graphs.session import HandoffSession
from handoff.service.postgres_saver import LeanPostgresSaver
from tests.support.postgres import POSTGRES_URL, postgres_schema

POOL_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
"""The service's pool kwargs (service/storage.py)."""
NAMESPACES = ("", "inner:1")
CHANNELS = ("a", "b", "d")
"""``d`` is the delta-like channel: a ``_DeltaSnapshot``, a plain value or nothing, and writes."""
SPECIAL = tuple(WRITES_IDX_MAP)
TABLES = {"checkpoints": "checkpoint_ns, checkpoint_id",
          "checkpoint_blobs": "checkpoint_ns, channel, version",
          "checkpoint_writes": "checkpoint_ns, checkpoint_id, task_id, idx"}


def version(n: int) -> str:
    """A channel version as the PostgreSQL savers spell it (their random part fixed)."""
    return f"{n:032}.{0.5:016}"


def new_thread(kind: str) -> str:
    return f"lean-saver-{kind}-{uuid.uuid4().hex}"


def at(thread: str, ns: str | None = "", checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread}
    if ns is not None:
        configurable["checkpoint_ns"] = ns
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


@asynccontextmanager
async def opened_pool(url: str = POSTGRES_URL, max_size: int = 4) -> AsyncIterator[AsyncConnectionPool]:
    pool: AsyncConnectionPool = AsyncConnectionPool(url, min_size=1, max_size=max_size, kwargs=POOL_KWARGS,
                                                    open=False)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class Savers:
    """A lean and a stock saver on one pool, and the threads to delete afterwards."""

    pool: AsyncConnectionPool
    lean: LeanPostgresSaver
    stock: AsyncPostgresSaver
    threads: list[str]

    def thread(self, kind: str) -> str:
        thread = new_thread(kind)
        self.threads.append(thread)
        return thread


@asynccontextmanager
async def savers(url: str = POSTGRES_URL, max_size: int = 4) -> AsyncIterator[Savers]:
    async with opened_pool(url, max_size) as pool:
        stock = AsyncPostgresSaver(pool, serde=serializer())
        await stock.setup()
        both = Savers(pool, LeanPostgresSaver(pool, serde=serializer()), stock, [])
        try:
            yield both
        finally:
            for thread in both.threads:
                await stock.adelete_thread(thread)


@contextmanager
def sync_saver(url: str = POSTGRES_URL) -> Iterator[PostgresSaver]:
    """The CLI's saver (graphs/persistence.open_persistence), on a connection of its own."""
    with psycopg.connect(url, **POOL_KWARGS) as conn:
        yield PostgresSaver(conn, serde=serializer())


class AsSync:
    """A sync ``PostgresSaver`` behind the async names the programs below call."""

    def __init__(self, saver: PostgresSaver) -> None:
        self.saver = saver

    async def aput(self, *args: Any) -> Any:
        return self.saver.put(*args)

    async def aput_writes(self, *args: Any) -> None:
        self.saver.put_writes(*args)

    async def aget_tuple(self, config: Any) -> Any:
        return self.saver.get_tuple(config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in self.saver.list(config, **kwargs):
            yield item

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Any:
        return self.saver.get_delta_channel_history(config=config, channels=channels)


# -- programs of saver calls -------------------------------------------------------------------------

@dataclass(frozen=True)
class Put:
    ns: str
    checkpoint_id: str
    parent: str | None
    values: dict[str, Any]
    versions: dict[str, str]
    new_versions: dict[str, str]
    metadata: dict[str, Any]
    v: int = 4
    """The checkpoint format: before 4 a read moves the parent's pending sends (TASKS writes) into it."""


@dataclass(frozen=True)
class Writes:
    ns: str
    checkpoint_id: str
    task_id: str
    task_path: str
    writes: list[tuple[str, Any]]


Op = Put | Writes


def checkpoint_id(n: int) -> str:
    return f"1f000000-0000-6000-8000-{n:012d}"


def blank(cid: str) -> dict[str, Any]:
    """An empty checkpoint with id ``cid`` and a time of its own, the same for every saver."""
    return {**empty_checkpoint(), "v": 4, "id": cid, "ts": f"2025-01-01T00:00:{cid[-2:]}+00:00"}


def put_args(thread: str, op: Put) -> tuple[Any, ...]:
    """``put``'s arguments for ``op``: its config, checkpoint, metadata and new versions."""
    config = at(thread, op.ns, op.parent)
    config["configurable"]["run_label"] = "r1"  # a configurable key the metadata takes in
    checkpoint = {**blank(op.checkpoint_id), "v": op.v,
                  "channel_values": dict(op.values), "channel_versions": dict(op.versions),
                  "versions_seen": {"node": dict(op.new_versions)}, "updated_channels": sorted(op.new_versions)}
    return config, checkpoint, dict(op.metadata), dict(op.new_versions)


def writes_args(thread: str, op: Writes) -> tuple[Any, ...]:
    return at(thread, op.ns, op.checkpoint_id), list(op.writes), op.task_id, op.task_path


async def play(saver: Any, thread: str, program: Sequence[Op]) -> None:
    for op in program:
        if isinstance(op, Writes):
            await saver.aput_writes(*writes_args(thread, op))
        else:
            await saver.aput(*put_args(thread, op))


async def reads(saver: Any, thread: str, program: Sequence[Op]) -> list[Any]:
    """Everything a reader asks: latest and given tuples, delta histories, and lists with every option."""
    ids = sorted({(op.ns, op.checkpoint_id) for op in program if isinstance(op, Put)})
    seen: list[Any] = [await saver.aget_tuple(at(thread, ns)) for ns in NAMESPACES]
    for ns, cid in ids:
        seen.append(await saver.aget_tuple(at(thread, ns, cid)))
        seen.append(dict(await saver.aget_delta_channel_history(config=at(thread, ns, cid), channels=["d", "a"])))
    seen.append(dict(await saver.aget_delta_channel_history(config=at(thread, ""), channels=["d"])))
    before = at(thread, "", ids[len(ids) // 2][1]) if ids else None
    for config, options in (
        (at(thread, None), {}), (at(thread, None), {"filter": {"tag": "x"}}), (at(thread, None), {"limit": 2}),
        (at(thread, None), {"before": before, "limit": 3}), (at(thread, ""), {"filter": {"source": "loop", "tag": "y"}}),
        (at(thread, "inner:1"), {}), (at(thread, None), {"filter": {"run_label": "r1"}, "before": before}),
    ):
        seen.append([item async for item in saver.alist(config, **options)])
    return seen


def renamed(obj: Any, thread: str) -> Any:
    """``obj`` with the thread id as ``<thread>``, to compare two threads' reads; and, in a checkpoint of
    an older format, the version LangGraph gives the tasks channel it migrates the pending sends into
    without its random part (``get_next_version``'s), which differs between any two reads."""
    if isinstance(obj, str):
        return "<thread>" if obj == thread else obj
    if isinstance(obj, dict):
        if obj.get("v", 4) < 4 and TASKS in obj.get("channel_versions", {}):
            versions = obj["channel_versions"]
            obj = {**obj, "channel_versions": {**versions, TASKS: versions[TASKS].split(".")[0] + ".<migrated>"}}
        return {key: renamed(value, thread) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(renamed(value, thread) for value in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(renamed(value, thread) for value in obj)
    return obj


async def stored(pool: AsyncConnectionPool, thread: str) -> dict[str, list[dict[str, Any]]]:
    """A thread's rows in the three tables, without the thread id."""
    rows: dict[str, list[dict[str, Any]]] = {}
    async with pool.connection() as conn:
        for table, order in TABLES.items():
            cur = await conn.execute(f"SELECT * FROM {table} WHERE thread_id = %s ORDER BY {order}", (thread,))
            rows[table] = [{k: v for k, v in row.items() if k != "thread_id"} for row in await cur.fetchall()]
    return rows


inline_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, -0.0, 1e16]),
                          st.text("ab é", max_size=3))
blob_values = st.one_of(
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from("xyz"), st.integers(0, 9), max_size=2),
    st.builds(lambda text, mid: HumanMessage(text, id=mid), st.text("ab", max_size=3), st.sampled_from(["m1", "m2"])),
)
any_values = st.one_of(inline_values, blob_values)
writes_lists = st.one_of(
    st.lists(st.tuples(st.sampled_from((*CHANNELS, *SPECIAL, TASKS)), any_values), max_size=5),
    st.lists(st.tuples(st.sampled_from(SPECIAL), any_values), min_size=1, max_size=4),  # all special: an upsert
)


@st.composite
def programs(draw: st.DrawFn) -> list[Op]:
    """Puts (new, and again under a saved id), and writes to saved checkpoints, in two namespaces."""
    program: list[Op] = []
    saved: dict[str, list[str]] = {ns: [] for ns in NAMESPACES}
    counters: dict[str, dict[str, int]] = {ns: {} for ns in NAMESPACES}
    for n in range(draw(st.integers(1, 9))):
        ns = draw(st.sampled_from(NAMESPACES))
        kind = draw(st.sampled_from(("put", "put", "again", "writes", "writes")))
        if kind == "writes" and saved[ns]:
            program.append(Writes(ns, draw(st.sampled_from(saved[ns])), draw(st.sampled_from(("t1", "t2"))),
                                  draw(st.sampled_from(("", "~__pregel_pull, n"))), draw(writes_lists)))
            continue
        if kind == "again" and saved[ns]:
            cid = draw(st.sampled_from(saved[ns]))
        else:
            cid = checkpoint_id(n)
            saved[ns].append(cid)
        parent = draw(st.sampled_from([None, *(c for c in saved[ns] if c < cid)]))
        changed = draw(st.sets(st.sampled_from((*CHANNELS, "gone"))))  # "gone": versioned, with no value
        for channel in changed:
            counters[ns][channel] = counters[ns].get(channel, 0) + 1
        versions = {channel: version(count) for channel, count in counters[ns].items()}
        values = {channel: draw(any_values) for channel in ("a", "b") if draw(st.booleans())}
        delta = draw(st.sampled_from(("absent", "snapshot", "plain")))
        if delta == "snapshot":
            values["d"] = _DeltaSnapshot(draw(st.lists(st.integers(0, 9), max_size=3)))
        elif delta == "plain":
            values["d"] = draw(any_values)
        metadata = {"source": draw(st.sampled_from(("input", "loop"))), "step": n,
                    "tag": draw(st.sampled_from(("x", "y")))}
        program.append(Put(ns, cid, parent, values, versions, {c: versions[c] for c in changed}, metadata,
                           draw(st.sampled_from((4, 4, 2)))))
    return program


def rich_program() -> list[Op]:
    """One of everything: blobs, inline primitives and None, delta snapshots and writes, special writes
    twice in a call and mixed with ordinary ones, an empty call, two namespaces, a put again, and a
    checkpoint of format 2 whose parent has pending sends."""
    one, two, three, four = (checkpoint_id(n) for n in (1, 2, 3, 4))
    return [
        Put("", one, None, {"a": [1], "b": "inline", "d": _DeltaSnapshot([1])},
            {"a": version(1), "b": version(1), "d": version(1)}, {"a": version(1), "b": version(1), "d": version(1)},
            {"source": "input", "step": -1, "tag": "x"}),
        Writes("", one, "t1", "~__pregel_pull, n", [("d", [2]), ("a", {"k": 1}), (ERROR, "boom"), (ERROR, "again")]),
        Writes("", one, "t2", "", [(INTERRUPT, {"q": 1}), (RESUME, "yes"), (INTERRUPT, {"q": 2})]),
        Put("", two, one, {"a": [1, 2], "b": None, "c": HumanMessage("hi", id="m1")},
            {"a": version(2), "b": version(2), "c": version(1), "d": version(1)},
            {"a": version(2), "b": version(2), "c": version(1)}, {"source": "loop", "step": 0, "tag": "y"}),
        Writes("", two, "t1", "", [("d", [3]), ("d", [4]), (SCHEDULED, None), (TASKS, {"send": 1})]),
        Put("", three, two, {"a": [1, 2, 3], "c": HumanMessage("hi", id="m1"), "d": _DeltaSnapshot([1, 2, 3, 4])},
            {"a": version(3), "b": version(2), "c": version(1), "d": version(2)},
            {"a": version(3), "d": version(2)}, {"source": "loop", "step": 1, "tag": "x"}, v=2),
        Put("inner:1", four, None, {"a": 5, "b": {"deep": [1]}}, {"a": version(1), "b": version(1)},
            {"a": version(1), "b": version(1)}, {"source": "loop", "step": 0, "tag": "y"}),
        Writes("inner:1", four, "t3", "", []),
        Writes("inner:1", four, "t3", "", [(RESUME, "r1"), ("a", 6)]),
        Put("", two, three, {"a": [9], "c": HumanMessage("hey", id="m2")},
            {"a": version(4), "b": version(2), "c": version(2), "d": version(1)},
            {"a": version(4), "c": version(2)}, {"source": "update", "step": 0, "tag": "x"}),
    ]


async def side_by_side(program: Sequence[Op]) -> None:
    async with savers(max_size=2) as both:
        lean_thread, stock_thread = both.thread("lean"), both.thread("stock")
        await play(both.lean, lean_thread, program)
        await play(both.stock, stock_thread, program)
        assert renamed(await reads(both.lean, lean_thread, program), lean_thread) == renamed(
            await reads(both.stock, stock_thread, program), stock_thread)
        assert await stored(both.pool, lean_thread) == await stored(both.pool, stock_thread)


# -- the same calls, the same rows and reads ---------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(programs())
def test_any_program_of_puts_and_writes_stores_and_reads_as_the_stock_saver(program: list[Op]) -> None:
    asyncio.run(side_by_side(program))


@pytest.mark.anyio
async def test_the_rich_program_stores_and_reads_as_the_stock_saver() -> None:
    await side_by_side(rich_program())


# -- either reads what the other (or the CLI's sync saver) wrote -------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize(("writer", "reader"), [("lean", "stock"), ("lean", "sync"), ("stock", "lean"),
                                                ("sync", "lean")])
async def test_a_thread_one_saver_wrote_reads_the_same_through_the_other(writer: str, reader: str) -> None:
    """Every read of the reader equals the writer's own, and what the reader saves on top is what the
    writer would have saved."""
    program = rich_program()
    async with savers() as both:
        with sync_saver() as sync:
            by_name: dict[str, Any] = {"lean": both.lean, "stock": both.stock, "sync": AsSync(sync)}
            thread = both.thread(f"{writer}-{reader}")
            await play(by_name[writer], thread, program)
            assert await reads(by_name[reader], thread, program) == await reads(by_name[writer], thread, program)
            # ... and a program played on top by the reader continues the thread as the writer would
            more = [Put("", checkpoint_id(9), checkpoint_id(3), {"a": [7]}, {"a": version(5)}, {"a": version(5)},
                        {"source": "loop", "step": 2, "tag": "y"}),
                    Writes("", checkpoint_id(9), "t9", "", [("d", [5]), (ERROR, "late")])]
            twin = both.thread(f"{writer}-{reader}-twin")
            await play(by_name[writer], twin, [*program, *more])
            await play(by_name[reader], thread, more)
            assert await stored(both.pool, thread) == await stored(both.pool, twin)


@pytest.mark.anyio
@pytest.mark.parametrize("connection", ["one connection", "a caller's pipeline"])
async def test_on_one_connection_or_in_a_pipeline_it_stores_what_it_does_over_a_pool(connection: str) -> None:
    """Away from a pool it uses the stock cursor; in a caller's pipeline each save is synced, so it is
    committed (and seen by another connection) before the call returns, as the stock saver's are."""
    program = rich_program()
    async with savers() as both:
        expected, thread = both.thread("pool"), both.thread("single")
        async with LeanPostgresSaver.from_conn_string(POSTGRES_URL, pipeline=connection != "one connection",
                                                      serde=serializer()) as lean:
            for op in program:  # after each call, another connection sees what the pool's saver stored
                await play(both.lean, expected, [op])
                await play(lean, thread, [op])
                assert await stored(both.pool, thread) == await stored(both.pool, expected)
            assert renamed(await reads(lean, thread, program), thread) == renamed(
                await reads(both.lean, expected, program), expected)


# -- edge cases --------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_special_writes_keep_the_stock_winner_within_a_call_and_across_calls() -> None:
    """All special: the last of a channel wins, and a later call replaces it (the stock upsert). Mixed
    with ordinary channels: the first wins, and a later call changes nothing (the stock DO NOTHING)."""
    calls: list[tuple[str, list[tuple[str, Any]]]] = [
        ("t", [(ERROR, "e1"), (ERROR, "e2")]),
        ("t", [(INTERRUPT, "i1"), (RESUME, "r1"), (INTERRUPT, "i2")]),
        ("t", [(ERROR, "e3")]),
        ("u", [("a", 1), (ERROR, "x1"), ("b", 2), (ERROR, "x2"), (RESUME, "r")]),
        ("u", [("a", 9), (ERROR, "y"), ("c", 3)]),  # "c" is index 2, as "b" was
        ("v", []),
    ]
    async with savers() as both:
        threads = {}
        for name, saver in (("lean", both.lean), ("stock", both.stock)):
            thread = threads[name] = both.thread(f"special-{name}")
            saved = await saver.aput(at(thread), blank(checkpoint_id(1)), {}, {})
            for task, writes in calls:
                await saver.aput_writes(saved, writes, task)
        got = await both.lean.aget_tuple(at(threads["lean"]))
        assert got is not None
        assert sorted((task, channel, value) for task, channel, value in got.pending_writes) == sorted([
            ("t", ERROR, "e3"), ("t", INTERRUPT, "i2"), ("t", RESUME, "r1"),
            ("u", "a", 1), ("u", ERROR, "x1"), ("u", "b", 2), ("u", RESUME, "r")])
        stock = await both.stock.aget_tuple(at(threads["stock"]))
        assert renamed(got, threads["lean"]) == renamed(stock, threads["stock"])
        lean_rows = await stored(both.pool, threads["lean"])
        assert lean_rows == await stored(both.pool, threads["stock"])
        assert sorted((r["task_id"], r["idx"]) for r in lean_rows["checkpoint_writes"]) == [
            ("t", -4), ("t", -3), ("t", -1), ("u", -4), ("u", -1), ("u", 0), ("u", 2)]


@pytest.mark.anyio
async def test_primitives_and_none_stay_inline_and_store_no_blob() -> None:
    values = {"none": None, "s": "x", "i": 1, "f": 1.5, "b": False, "e": ""}
    async with savers() as both:
        threads = {}
        for name, saver in (("lean", both.lean), ("stock", both.stock)):
            thread = threads[name] = both.thread(f"inline-{name}")
            versions = {channel: version(1) for channel in values}
            await saver.aput(at(thread), {**blank(checkpoint_id(1)), "channel_values": values,
                                          "channel_versions": versions}, {}, versions)
        rows = await stored(both.pool, threads["lean"])
        assert rows == await stored(both.pool, threads["stock"])
        assert rows["checkpoint_blobs"] == []
        assert rows["checkpoints"][0]["checkpoint"]["channel_values"] == values
        got = await both.lean.aget_tuple(at(threads["lean"]))
        assert got is not None and got.checkpoint["channel_values"] == values


@pytest.mark.anyio
async def test_a_put_again_replaces_checkpoint_and_metadata_but_keeps_parent_and_stored_blobs() -> None:
    async with savers() as both:
        threads = {}
        for name, saver in (("lean", both.lean), ("stock", both.stock)):
            thread = threads[name] = both.thread(f"again-{name}")
            first = blank(checkpoint_id(1))
            await saver.aput(at(thread), first, {"n": 1}, {})
            again = {**blank(checkpoint_id(2)), "channel_values": {"a": [1]},
                     "channel_versions": {"a": version(1)}}
            await saver.aput(at(thread, "", checkpoint_id(1)), again, {"n": 1}, {"a": version(1)})
            again = {**again, "channel_values": {"a": [2], "p": 3}, "channel_versions": {"a": version(2), "p": version(1)}}
            await saver.aput(at(thread), again, {"n": 2}, {"a": version(2), "p": version(1)})
            # a blob already stored under a version is kept, whatever a later save brings under it
            third = {**blank(checkpoint_id(3)), "channel_values": {"a": ["other"]}, "channel_versions": {"a": version(2)}}
            await saver.aput(at(thread), third, {"n": 3}, {"a": version(2)})
        rows = await stored(both.pool, threads["lean"])
        assert rows == await stored(both.pool, threads["stock"])
        [_, second, _] = rows["checkpoints"]
        assert (second["parent_checkpoint_id"], second["metadata"]["n"]) == (checkpoint_id(1), 2)
        assert [(b["channel"], b["version"]) for b in rows["checkpoint_blobs"]] == [("a", version(1)), ("a", version(2))]
        got = await both.lean.aget_tuple(at(threads["lean"], "", checkpoint_id(2)))
        assert got is not None and got.checkpoint["channel_values"] == {"a": [2], "p": 3}
        got = await both.lean.aget_tuple(at(threads["lean"], "", checkpoint_id(3)))
        assert got is not None and got.checkpoint["channel_values"] == {"a": [2]}


@pytest.mark.anyio
async def test_a_save_postgresql_refuses_leaves_nothing_behind_as_the_stock_one() -> None:
    """A checkpoint whose JSON PostgreSQL refuses (a NUL character in an inline string) stores neither it
    nor its blobs, on both. (NaN, which the stock saver also writes into the JSON for PostgreSQL to refuse,
    the lean one keeps in a blob: tests/test_pg_json.py.)"""
    async with savers() as both:
        for name, saver in (("lean", both.lean), ("stock", both.stock)):
            thread = both.thread(f"refused-{name}")
            versions = {"a": version(1), "x": version(1)}
            with pytest.raises(psycopg.errors.UntranslatableCharacter):
                await saver.aput(at(thread), {**blank(checkpoint_id(1)), "channel_versions": versions,
                                              "channel_values": {"a": [1], "x": "nul \x00"}}, {}, versions)
            assert await stored(both.pool, thread) == {table: [] for table in TABLES}


@pytest.mark.anyio
async def test_deleting_a_thread_is_all_or_nothing_as_the_stock_one() -> None:
    """``adelete_thread`` runs three deletes in the pipeline it asks for: when the last fails, the first
    two are undone, as the stock saver's are (in a schema of its own, whose writes table refuses deletes)."""
    with postgres_schema("lean_saver") as url:
        async with savers(url) as both:
            async with both.pool.connection() as conn:
                await conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                                   "$$ BEGIN RAISE EXCEPTION 'kept'; END $$")
                await conn.execute("CREATE TRIGGER refuse BEFORE DELETE ON checkpoint_writes "
                                   "FOR EACH ROW EXECUTE FUNCTION refuse()")
            for name, saver in (("lean", both.lean), ("stock", both.stock)):
                thread = new_thread(f"delete-{name}")
                await play(saver, thread, rich_program())
                before = await stored(both.pool, thread)
                with pytest.raises(psycopg.errors.RaiseException):
                    await saver.adelete_thread(thread)
                assert await stored(both.pool, thread) == before, name


# -- a graph with a delta channel, run async and sync from a worker thread -------------------------------

def add_in_batches(state: list[AnyMessage], writes: Sequence[list[AnyMessage]]) -> list[AnyMessage]:
    return reduce(add_messages, writes, state)


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], DeltaChannel(add_in_batches, snapshot_frequency=2)]
    turns: int


def reply(state: Chat) -> dict[str, Any]:
    return {"messages": [AIMessage(f"echo {state['messages'][-1].content}", id=f"ai{len(state['messages'])}")],
            "turns": state.get("turns", 0) + 1}


def note(state: Chat) -> dict[str, Any]:
    return {"messages": [AIMessage("noted", id=f"note{len(state['messages'])}")]}


def chat_graph(checkpointer: Any) -> CompiledStateGraph:
    graph = StateGraph(Chat)
    graph.add_node("reply", reply)
    graph.add_node("note", note)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", "note")
    graph.add_edge("note", END)
    return graph.compile(checkpointer=checkpointer)


_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                  r"|(?<![0-9a-f])(?:[0-9a-f]{32}|[0-9a-f]{12})(?![0-9a-f])")
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_VERSIONS = re.compile(r"(\d{32})\.[0-9.e+-]+")
_MEASURED = {"latency_ms"}


def canon(obj: Any, names: dict[str, str]) -> Any:
    """``obj`` as plain data with what differs between two runs of one script named by order of first
    appearance: ids (checkpoints, tasks, messages, handoffs, interrupts; the two runs' thread ids must
    differ only in their hex), times, and versions' random part."""
    if isinstance(obj, BaseModel):
        return canon(obj.model_dump(), names)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canon({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, names)
    if isinstance(obj, dict):
        return {canon(k, names): "<measured>" if k in _MEASURED else canon(v, names) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [canon(value, names) for value in obj]
    if isinstance(obj, str):
        text = _VERSIONS.sub(lambda m: f"v{int(m.group(1))}", _TIMES.sub("<time>", obj))
        return _IDS.sub(lambda m: names.setdefault(m.group(), f"<id{len(names)}>"), text)
    return obj


async def history(graph: CompiledStateGraph, config: dict[str, Any]) -> list[Any]:
    return [snapshot async for snapshot in graph.aget_state_history(config)]


async def chat_run(graph: CompiledStateGraph, thread: str) -> list[Any]:
    """Five turns, then a fork from the middle of the history; the states and histories seen on the way."""
    config = at(thread, None)
    for n in range(5):
        await graph.ainvoke({"messages": [HumanMessage(f"turn {n}", id=f"u{n}")]}, config, durability="sync")
    seen: list[Any] = [await graph.aget_state(config), await history(graph, config)]
    past = seen[1][len(seen[1]) // 2]
    seen.append(await graph.aget_state(past.config))
    forked = await graph.ainvoke({"messages": [HumanMessage("fork", id="uf")]}, past.config, durability="sync")
    seen += [forked, await graph.aget_state(config), await history(graph, config)]
    return seen


async def snapshots_stored(pool: AsyncConnectionPool, thread: str) -> tuple[int, int]:
    """Checkpoints holding a ``messages`` snapshot (``true`` inline, its blob behind it), and those holding none."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE c.checkpoint -> 'channel_values' -> 'messages' = 'true'::jsonb AND EXISTS ("
            " SELECT 1 FROM checkpoint_blobs b WHERE b.thread_id = c.thread_id AND b.channel = 'messages'"
            " AND b.version = c.checkpoint -> 'channel_versions' ->> 'messages')) AS snapshots,"
            " count(*) FILTER (WHERE NOT c.checkpoint -> 'channel_values' ? 'messages') AS deltas"
            " FROM checkpoints c WHERE c.thread_id = %s", (thread,))
        row = await cur.fetchone()
    assert row is not None
    return row["snapshots"], row["deltas"]


@pytest.mark.anyio
async def test_a_delta_channel_graph_runs_forks_and_reads_back_as_on_the_stock_saver() -> None:
    async with savers() as both:
        lean_thread, stock_thread = both.thread("chat"), both.thread("chat")
        lean_graph, stock_graph = chat_graph(both.lean), chat_graph(both.stock)
        on_lean = await chat_run(lean_graph, lean_thread)
        assert canon(on_lean, {}) == canon(await chat_run(stock_graph, stock_thread), {})
        snapshots, deltas = await snapshots_stored(both.pool, lean_thread)
        assert snapshots >= 2 and deltas >= 2, "the run stores delta snapshots and checkpoints between them"
        assert (snapshots, deltas) == await snapshots_stored(both.pool, stock_thread)
        assert [m.id for m in on_lean[0].values["messages"]] == [
            i for n in range(5) for i in (f"u{n}", f"ai{3 * n + 1}", f"note{3 * n + 2}")]
        # the stock saver reads the lean thread as the lean one does, to the last time-travel fork
        config = at(lean_thread, None)
        assert await stock_graph.aget_state(config) == await lean_graph.aget_state(config)
        assert await history(stock_graph, config) == await history(lean_graph, config)


@pytest.mark.anyio
async def test_the_sync_methods_work_from_a_worker_thread_while_the_loop_runs() -> None:
    """As LangGraph's sync APIs call them: ``put``, ``put_writes``, ``get_tuple`` and ``list`` from a worker
    thread, and a whole sync ``invoke``/``get_state``/``get_state_history`` of the chat graph."""
    program = rich_program()
    async with savers() as both:
        lean_thread, stock_thread = both.thread("sync-lean"), both.thread("sync-stock")
        lean = both.lean
        for op in program:
            if isinstance(op, Writes):
                await asyncio.to_thread(lean.put_writes, *writes_args(lean_thread, op))
            else:
                await asyncio.to_thread(lean.put, *put_args(lean_thread, op))
        await play(both.stock, stock_thread, program)
        assert await stored(both.pool, lean_thread) == await stored(both.pool, stock_thread)
        for ns, cid in {(op.ns, op.checkpoint_id) for op in program if isinstance(op, Put)}:
            got = await asyncio.to_thread(lean.get_tuple, at(lean_thread, ns, cid))
            assert renamed(got, lean_thread) == renamed(await both.stock.aget_tuple(at(stock_thread, ns, cid)),
                                                        stock_thread)
        listed = await asyncio.to_thread(lambda: list(lean.list(at(lean_thread, None), filter={"tag": "x"}, limit=3)))
        assert len(listed) == 3
        assert renamed(listed, lean_thread) == renamed(
            [t async for t in both.stock.alist(at(stock_thread, None), filter={"tag": "x"}, limit=3)], stock_thread)
        with pytest.raises(asyncio.InvalidStateError):  # on the loop's own thread it would wait for itself
            lean.get_tuple(at(lean_thread))

        chat_thread = both.thread("sync-chat")
        graph, config = chat_graph(lean), at(chat_thread, None)
        for n in range(4):
            await asyncio.to_thread(graph.invoke, {"messages": [HumanMessage(f"turn {n}", id=f"u{n}")]}, config,
                                    durability="sync")
        state = await asyncio.to_thread(graph.get_state, config)
        assert state == await graph.aget_state(config)
        assert state.values["turns"] == 4 and len(state.values["messages"]) == 12
        assert await asyncio.to_thread(lambda: list(graph.get_state_history(config))) == await history(graph, config)
        stock_chat = both.thread("sync-chat")
        for n in range(4):
            await chat_graph(both.stock).ainvoke({"messages": [HumanMessage(f"turn {n}", id=f"u{n}")]},
                                                 at(stock_chat, None), durability="sync")
        assert canon(await history(graph, config), {}) == canon(
            await history(chat_graph(both.stock), at(stock_chat, None)), {})


# -- the project's customer-service graph ------------------------------------------------------------

async def decoded_rows(pool: AsyncConnectionPool, thread: str) -> dict[str, list[Any]]:
    """A thread's rows with their blobs decoded, in an order two runs of one script share (task ids
    and version suffixes are random, so they do not order them)."""
    serde = serializer()
    rows = await stored(pool, thread)
    for row in rows["checkpoint_blobs"] + rows["checkpoint_writes"]:
        row["blob"] = serde.loads_typed((row["type"], row["blob"])) if row["blob"] is not None else None
        row["type"] = row["type"].split("+")[0]  # whether a blob was compressed depends on its random ids' bytes
    rows["checkpoint_blobs"].sort(key=lambda r: (r["checkpoint_ns"], r["channel"], r["version"][:32]))
    rows["checkpoint_writes"].sort(key=lambda r: (r["checkpoint_ns"], r["checkpoint_id"], r["task_path"], r["idx"]))
    return rows


async def clear_store(store: AsyncPostgresStore, thread: str) -> None:
    for namespace in await store.alist_namespaces(suffix=(store_label(thread),), limit=100):
        for item in await store.asearch(namespace, limit=1000):
            await store.adelete(namespace, item.key)


async def customer_service_run(graph: CompiledStateGraph, thread: str) -> list[Any]:
    """The demo's turns, an escalation to a person and their answer, and one more turn, streamed as the
    service streams them; the state after each turn."""
    config = at(thread, None)
    lines = [*GRAPHS["customer-service"].demo, "This is useless, I want to speak to a manager."]
    seen = []
    for n, text in enumerate(lines):
        async for _ in graph.astream({"messages": [HumanMessage(text, id=f"u{n}")]}, config, **HandoffSession.STREAM):
            pass
        seen.append(await graph.aget_state(config))
    [escalation] = seen[-1].interrupts
    answer = {"reply": "Jo here: refunded.", "hand_back_to": "billing_expert", "case_file_updates": {}}
    async for _ in graph.astream(Command(resume={escalation.id: answer}), config, **HandoffSession.STREAM):
        pass
    seen.append(await graph.aget_state(config))
    async for _ in graph.astream({"messages": [HumanMessage("Thanks, bye.", id="u9")]}, config,
                                 **HandoffSession.STREAM):
        pass
    seen.append(await graph.aget_state(config))
    return seen


@pytest.mark.anyio
async def test_the_customer_service_graph_runs_on_it_as_on_the_stock_saver() -> None:
    async with savers() as both:
        store = AsyncPostgresStore(both.pool)
        await store.setup()
        await both.lean.setup()
        lean_thread, stock_thread = both.thread("cs"), both.thread("cs")
        lean_graph = GRAPHS["customer-service"].build(model=None).compile(checkpointer=both.lean, store=store)
        stock_graph = GRAPHS["customer-service"].build(model=None).compile(checkpointer=both.stock, store=store)
        try:
            on_lean = await customer_service_run(lean_graph, lean_thread)
            on_stock = await customer_service_run(stock_graph, stock_thread)
            lean_names: dict[str, str] = {}
            stock_names: dict[str, str] = {}
            assert canon(on_lean, lean_names) == canon(on_stock, stock_names)
            assert on_lean[-1].values["active_agent"] == "billing_expert" and on_lean[3].next == ("human",)
            lean_history = await history(lean_graph, at(lean_thread, None))
            assert len(lean_history) > 20
            assert canon(lean_history, lean_names) == canon(await history(stock_graph, at(stock_thread, None)),
                                                            stock_names)
            assert canon(await decoded_rows(both.pool, lean_thread), lean_names) == canon(
                await decoded_rows(both.pool, stock_thread), stock_names)
            # the stock saver and the CLI's sync one read the lean thread exactly as the lean one does
            config = at(lean_thread, None)
            assert await stock_graph.aget_state(config) == on_lean[-1]
            assert await history(stock_graph, config) == lean_history
            with sync_saver() as sync:
                cli_graph = GRAPHS["customer-service"].build(model=None).compile(checkpointer=sync, store=store)
                assert await asyncio.to_thread(cli_graph.get_state, config) == on_lean[-1]
        finally:
            for thread in (lean_thread, stock_thread):
                await clear_store(store, thread)


# -- many operations at once over the pool -----------------------------------------------------------

@pytest.mark.anyio
async def test_many_threads_saved_and_read_at_once_over_a_small_pool_each_read_back_whole() -> None:
    """24 threads, each two checkpoints and three tasks' writes saved concurrently, over a pool of three,
    while the saver's lock is held all along: over a pool no operation waits for it."""
    async with savers(max_size=3) as both:
        lean = both.lean
        threads = [both.thread(f"many{n}") for n in range(24)]

        async def one(n: int, thread: str) -> tuple[Any, Any]:
            first = {**blank(checkpoint_id(1)), "channel_values": {"a": [n], "p": n},
                     "channel_versions": {"a": version(1), "p": version(1)}}
            saved = await lean.aput(at(thread), first, {"n": n}, {"a": version(1), "p": version(1)})
            await asyncio.gather(*(lean.aput_writes(saved, [("a", [n, k]), (ERROR, f"e{k}")], f"task{k}")
                                   for k in range(3)))
            second = {**blank(checkpoint_id(2)), "channel_values": {"a": [n, "x"], "p": n},
                      "channel_versions": {"a": version(2), "p": version(1)}}
            await lean.aput(saved, second, {"n": n}, {"a": version(2)})
            return await lean.aget_tuple(saved), await lean.aget_tuple(at(thread))

        async with lean.lock:
            results = await asyncio.wait_for(asyncio.gather(*(one(n, t) for n, t in enumerate(threads))), 60)
            await asyncio.wait_for(lean.adelete_thread(threads[0]), 60)
        for n, (first, latest) in enumerate(results):
            assert first.checkpoint["channel_values"] == {"a": [n], "p": n}
            assert sorted(first.pending_writes) == sorted(
                [(f"task{k}", "a", [n, k]) for k in range(3)] + [(f"task{k}", ERROR, f"e{k}") for k in range(3)])
            assert latest.checkpoint["channel_values"] == {"a": [n, "x"], "p": n}
            assert latest.parent_config == first.config and latest.metadata["n"] == n
        assert await lean.aget_tuple(at(threads[0])) is None
        assert await stored(both.pool, threads[0]) == {table: [] for table in TABLES}


@pytest.mark.anyio
async def test_more_rows_than_one_statement_carries_store_and_read_as_the_stock_saver() -> None:
    """A checkpoint with 2,500 new blobs and a task with 2,500 writes (one statement carries 1,000 rows)."""
    channels = {f"c{n}": [n] for n in range(2_500)}
    versions = {name: version(1) for name in channels}
    await side_by_side([
        Put("", checkpoint_id(1), None, channels, versions, versions, {"source": "loop", "step": 0, "tag": "x"}),
        Writes("", checkpoint_id(1), "t1", "", [(f"c{n}", [n, n]) for n in range(2_500)]),
        Writes("", checkpoint_id(1), "t2", "", [(ERROR, "boom")] * 3),
    ])


@pytest.mark.anyio
async def test_saves_send_numbered_parameters_on_a_raw_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Saves of more than 50 parameters (a turn's usual checkpoint or task) go out as they are: a raw
    cursor and ``$n`` parameters, which psycopg does not parse for ``%s`` on every call (it keeps its
    parse only for statements of at most 50 parameters). They still store what the stock saver does."""
    sent: list[tuple[type, str, int]] = []
    execute = psycopg.AsyncCursor.execute

    async def recorded(cur: psycopg.AsyncCursor[Any], query: Any, params: Any = None, **kw: Any) -> Any:
        sent.append((type(cur), str(query), len(params or ())))
        return await execute(cur, query, params, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recorded)
    channels = {f"c{n}": [n] for n in range(12)}
    versions = {name: version(1) for name in channels}
    await side_by_side([
        Put("", checkpoint_id(1), None, channels, versions, versions, {"source": "loop", "step": 0}),
        Writes("", checkpoint_id(1), "t1", "", [(f"c{n}", [n, n]) for n in range(12)]),
    ])
    saves = [(kind, query, count) for kind, query, count in sent if query.lstrip().startswith(("WITH blobs", "INSERT"))
             and kind is not psycopg.AsyncCursor]
    assert {count for _, _, count in saves} >= {12 * 6 + 6, 12 * 9}, saves
    assert all(issubclass(kind, psycopg.AsyncRawCursor) and "%s" not in query and "$1" in query
               for kind, query, _ in saves)


@pytest.mark.anyio
@pytest.mark.parametrize("pipelined", [False, True])
async def test_saves_on_one_connection_or_a_callers_pipeline_read_back_as_the_stock_saver(pipelined: bool) -> None:
    """Not over a pool (one shared connection, or a caller's pipeline): the raw save statements run
    on that connection, inside the pipeline when there is one, and read back as the stock saver's."""
    channels = {f"c{n}": [n] for n in range(12)}
    versions = {name: version(1) for name in channels}
    program: list[Op] = [
        Put("", checkpoint_id(1), None, channels, versions, versions, {"source": "loop", "step": 0}),
        Writes("", checkpoint_id(1), "t1", "", [(f"c{n}", [n, n]) for n in range(12)]),
        Writes("", checkpoint_id(1), "t2", "", [(ERROR, "boom")]),
    ]
    async with savers(max_size=2) as both:
        lean_thread, stock_thread = both.thread("lean-conn"), both.thread("stock-conn")
        await play(both.stock, stock_thread, program)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, **POOL_KWARGS) as conn:
            if pipelined:
                async with conn.pipeline() as pipe:
                    await play(LeanPostgresSaver(conn, pipe=pipe, serde=serializer()), lean_thread, program)
            else:
                await play(LeanPostgresSaver(conn, serde=serializer()), lean_thread, program)
        assert renamed(await reads(both.lean, lean_thread, program), lean_thread) == renamed(
            await reads(both.stock, stock_thread, program), stock_thread)
        assert await stored(both.pool, lean_thread) == await stored(both.pool, stock_thread)
