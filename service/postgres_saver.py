"""LangGraph's async PostgreSQL checkpointer, with each save one statement and no thread hop.

``LeanPostgresSaver`` keeps ``AsyncPostgresSaver``'s tables, rows and reads exactly (a database
either of them wrote, the other reads; the CLI's sync ``PostgresSaver`` too), and changes only
how a worker talks to them. Measured on the load benchmark's service (``benchmarks/load.py``),
the stock saver spent a turn's CPU on:

- a thread hop for every save and load: it serialises writes and deserialises pending writes
  with ``asyncio.to_thread``, about ten hops a turn, each a pool submit, a wake-up and a
  cross-thread callback, for payloads of a few hundred bytes;
- a pipeline per save: the channel blobs as an ``executemany`` and the checkpoint as a second
  statement, and each task's writes as an ``executemany``, with the pipeline's enter, sync and
  exit each time;
- one ``asyncio.Lock`` around every operation, even over a pool, which hands each operation a
  connection of its own anyway.

Here a checkpoint and its new blobs are one ``INSERT`` (the blobs in a data-modifying ``WITH``,
so both land or neither), a task's writes are one multi-row ``INSERT``, both serialised on the
event loop, and operations over a pool do not queue on the lock. Rows are ``VALUES`` of scalar
parameters, which psycopg adapts in C; arrays for ``unnest`` were adapted in Python, at 395 against
228 microseconds of CPU per statement on this project's load machine (two writes). The SQL
conflict rules are the stock ones: blobs and ordinary writes keep the first row, special writes
(errors, interrupts, resumes) the last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import lru_cache
from itertools import chain
from math import isfinite
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

# LangGraph's marker for a delta channel's snapshot: the stock saver stores it as a blob and
# leaves True in the checkpoint, and its reader expects exactly that.
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncCursor, AsyncRawCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from handoff.service import primed


def _values(rows: int, width: int, first: int = 1) -> str:
    """``rows`` rows of ``width`` numbered parameters, from ``$first`` on."""
    return ", ".join("(" + ", ".join(f"${first + row * width + col}" for col in range(width)) + ")"
                     for row in range(rows))


_WRITES_CONFLICT = {
    True: "UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob",
    False: "NOTHING",
}
MAX_ROWS = 1000
"""Rows one statement carries as parameters: a statement may hold at most 65,535 (nine a write)."""


@lru_cache(maxsize=128)
def blobs_sql(blobs: int) -> str:
    """``blobs`` blob rows, kept where they already are (a blob is immutable under its version)."""
    return (f"INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
            f"VALUES {_values(blobs, 6)} ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING")


@lru_cache(maxsize=128)
def put_sql(blobs: int) -> str:
    """A checkpoint with ``blobs`` new blobs in one statement: the blobs in a data-modifying ``WITH``, so both
    land or neither. Rows as ``VALUES``, each value a parameter: psycopg adapts scalars in C, where the
    arrays an ``unnest`` takes were adapted in Python at nearly twice the CPU per statement."""
    checkpoint = ("INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
                  f"checkpoint, metadata) VALUES {_values(1, 6, blobs * 6 + 1)} "
                  "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) "
                  "DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata")
    return f"WITH blobs AS ({blobs_sql(blobs)}) {checkpoint}" if blobs else checkpoint


@lru_cache(maxsize=128)
def writes_sql(rows: int, upsert: bool) -> str:
    """A task's ``rows`` writes in one statement: special writes replace what is there, others never do."""
    return ("INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
            f"type, blob) VALUES {_values(rows, 9)} ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) "
            f"DO {_WRITES_CONFLICT[upsert]}")


def _chunks(rows: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """``rows`` in runs of at most ``MAX_ROWS``, one statement each."""
    return [rows[start:start + MAX_ROWS] for start in range(0, len(rows), MAX_ROWS)]


def _flat(rows: list[tuple[Any, ...]]) -> list[Any]:
    """The parameters of ``rows``' ``VALUES``, one row after the other."""
    return list(chain.from_iterable(rows))


class LeanPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` with one statement per save, no thread hops, and no lock over a pool."""

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        """A cursor on a connection of the pool's own, with no lock; on one shared connection (or a
        caller's pipeline) the stock cursor.

        ``pipeline`` is still honoured over a pool: the stock methods that ask for it run several
        statements that must land together (``adelete_thread``'s three deletes are one implicit
        transaction in a pipeline; without one, a failure part-way left a thread's writes behind
        its deleted checkpoints)."""
        if self.pipe is not None or not isinstance(self.conn, AsyncConnectionPool):
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if not pipeline:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
                return
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(conn.pipeline() if self.supports_pipeline else conn.transaction())
                yield await stack.enter_async_context(conn.cursor(binary=True, row_factory=dict_row))

    @asynccontextmanager
    async def _saving(self, *, statements: int) -> AsyncIterator[AsyncRawCursor[Any]]:
        """A cursor for a save of ``statements`` statements, which sends each as it is, its parameters
        numbered ``$1, $2...``: an ordinary cursor looks for ``%s`` in every statement, in Python, and
        keeps what it found only for statements of at most 50 parameters; most saves carry more, so
        each was parsed again on every call.

        Over a pool, a save of one statement runs alone (PostgreSQL makes it a transaction), and a
        save of several in one transaction, which a failure anywhere rolls back, psycopg's refusal
        of a parameter included. On one shared connection, or in a caller's pipeline, the save is
        in a pipeline synced on its exit, as the stock saver's: on a connection its caller put in
        pipeline mode, that commits the save, and raises its error, before the save returns."""
        if self.pipe is not None or not isinstance(self.conn, AsyncConnectionPool):
            async with super()._cursor(pipeline=True) as cur, AsyncRawCursor(cur.connection) as raw:
                yield raw
            return
        async with self.conn.connection() as conn:
            if statements == 1:
                async with AsyncRawCursor(conn) as raw:
                    yield raw
                return
            async with conn.transaction(), AsyncRawCursor(conn) as raw:
                yield raw

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The stock read, unless the turn read this thread's latest checkpoint just before its run
        (service/primed.py): then that answer, once."""
        hit, saved = primed.take(config)
        if hit:
            return saved
        return await super().aget_tuple(config)

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint and its changed channels' blobs in one statement."""
        configurable = config["configurable"]
        thread_id, ns = configurable["thread_id"], configurable["checkpoint_ns"]
        inline = dict(checkpoint["channel_values"])
        blobs: list[tuple[Any, ...]] = []
        for name, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                inline[name] = True
            elif value is None or isinstance(value, str | int | bool) or (isinstance(value, float) and isfinite(value)):
                continue  # primitives stay inline in the checkpoint's JSON, as the stock saver keeps them
            # NaN and infinities too go to a blob: JSON cannot hold them (service/pg_json.py writes null)
            else:
                del inline[name]
            if name in new_versions:
                blobs.append((thread_id, ns, name, cast(str, new_versions[name]), *self.serde.dumps_typed(value)))
        saved = (thread_id, ns, checkpoint["id"], configurable.get("checkpoint_id"),
                 Jsonb({**checkpoint, "channel_values": inline}),
                 Jsonb(get_serializable_checkpoint_metadata(config, metadata)))
        # More blobs than one statement carries go first, in the same transaction (``_saving``).
        *earlier, last = _chunks(blobs) or [[]]
        async with self._saving(statements=len(earlier) + 1) as cur:
            for chunk in earlier:
                await cur.execute(blobs_sql(len(chunk)), _flat(chunk))
            await cur.execute(put_sql(len(last)), [*_flat(last), *saved])
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "",
    ) -> None:
        """Save a task's writes in one statement."""
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        rows: dict[int, tuple[str, str, bytes]] = {}
        for idx, (channel, value) in enumerate(writes):
            key = WRITES_IDX_MAP.get(channel, idx)
            if special or key not in rows:  # one statement may not touch a row twice: keep the stock winner
                rows[key] = (channel, *self.serde.dumps_typed(value))
        if not rows:
            return
        configurable = config["configurable"]
        ids = (configurable["thread_id"], configurable["checkpoint_ns"], configurable["checkpoint_id"], task_id,
               task_path)
        chunks = _chunks([(*ids, idx, *row) for idx, row in rows.items()])
        # a task with more writes than one statement carries saves them in one transaction (``_saving``)
        async with self._saving(statements=len(chunks)) as cur:
            for chunk in chunks:
                await cur.execute(writes_sql(len(chunk), special), _flat(chunk))

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        """The stock row-to-tuple conversion, its pending writes decoded here rather than in a thread."""
        checkpoint = value["checkpoint"]
        parent = value["parent_checkpoint_id"]
        ids = {"thread_id": value["thread_id"], "checkpoint_ns": value["checkpoint_ns"]}
        return CheckpointTuple(
            {"configurable": {**ids, "checkpoint_id": value["checkpoint_id"]}},
            {**checkpoint, "channel_values": {**(checkpoint.get("channel_values") or {}),
                                              **self._load_blobs(value["channel_values"])}},
            value["metadata"],
            {"configurable": {**ids, "checkpoint_id": parent}} if parent else None,
            self._load_writes(value["pending_writes"]),
        )
