"""A SQLite checkpointer with a compact schema: LangGraph's checkpoints and writes, fewer bytes each.

LangGraph's ``SqliteSaver`` stores one ``writes`` row per channel a task wrote, each repeating
the thread id, the checkpoint's and the task's UUIDs as 36-character text, the task path and
the type tag: on the benchmark's conversation those keys were 70% of the table's bytes (twelve
rows a turn). This saver keeps the same data in a smaller shape (``SCHEMA``):

- a thread is named once, in ``handoff_threads``; rows refer to it by a small integer;
- checkpoint and task ids are UUIDs, stored as their 16 bytes (ids that are not UUIDs as text,
  which SQLite sorts below every UUID: LangGraph makes only UUIDs, so a thread never mixes them);
- a task's writes are one row: ``[task_path, [[idx, channel, value], ...]]`` serialized and
  compressed together by the checkpoint serializer, so the channel names and small values
  share one compressed blob instead of a row each;
- a checkpoint and its metadata are one blob, compressed together (metadata is no JSON text
  of its own); the checkpoint's id is not repeated inside it; the type tag travels in front;
- channel versions of a new thread are integers, LangGraph's default kind.

Everything else is LangGraph's contract: ``put_writes`` keeps ``SqliteSaver``'s semantics (a
write at an index already stored is kept, except LangGraph's special channels, which replace),
pending writes come back in ``writes_sort_key`` order, and ``get_delta_channel_history`` walks
the parent chain in two queries like ``SqliteSaver``'s. The async methods run the same code in a
worker thread, so the service uses this saver too and both read the same file.

A file written by ``SqliteSaver`` (this project before, or any LangGraph user) is moved into
these tables the first time this saver opens it, in one transaction: its blobs stay as they
were (the serializer still reads every earlier codec) and its threads go on with the string
versions they began with.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS handoff_threads (
    id INTEGER PRIMARY KEY,
    thread_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS handoff_checkpoints (
    thread INTEGER NOT NULL,
    ns TEXT NOT NULL DEFAULT '',
    id BLOB NOT NULL,
    parent BLOB,
    checkpoint BLOB NOT NULL,
    PRIMARY KEY (thread, ns, id)
);
CREATE TABLE IF NOT EXISTS handoff_writes (
    thread INTEGER NOT NULL,
    ns TEXT NOT NULL DEFAULT '',
    checkpoint BLOB NOT NULL,
    task BLOB NOT NULL,
    writes BLOB NOT NULL,
    PRIMARY KEY (thread, ns, checkpoint, task)
);
"""

STAGE1_SQL = (
    # Follows parent links, not id order (ids are monotonic only within one process); CROSS JOIN
    # keeps the walk outermost, one primary-key lookup a step (as LangGraph's SqliteSaver does).
    "WITH RECURSIVE chain(id, parent, checkpoint) AS ("
    "SELECT id, parent, checkpoint FROM handoff_checkpoints WHERE thread = ? AND ns = ? AND id = ? "
    "UNION ALL SELECT c.id, c.parent, c.checkpoint FROM chain a CROSS JOIN handoff_checkpoints c "
    "ON c.id = a.parent WHERE c.thread = ? AND c.ns = ?) "
    "SELECT id, checkpoint FROM chain"
)

HELD_CACHE = 8192
"""Checkpoints, and task rows, whose channel names are kept in memory (``CompactSqliteSaver._held``,
``_wrote``): a few hundred kilobytes at most."""

FILTER_KEY = re.compile(r"^[a-zA-Z0-9_.-]+$")
"""The metadata filter keys ``SqliteSaver`` accepts."""

THREAD_CACHE = 4096
"""Thread ids whose row numbers are kept in memory. A thread's row is never deleted (deleting a
thread deletes its checkpoints and writes), so a remembered number stays right in every process."""


def id_key(value: str) -> bytes | str:
    """A checkpoint or task id as stored: a UUID's 16 bytes, any other id as its text.

    Byte order is the order of the UUID's hex text, so ``ORDER BY id`` and ``id < ?`` keep
    LangGraph's id order (its ids are time-ordered UUIDs)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return value
    return parsed.bytes if str(parsed) == value else value


def id_text(value: bytes | str) -> str:
    """The id an ``id_key`` stored."""
    return str(uuid.UUID(bytes=value)) if isinstance(value, bytes) else value


def pack(typed: tuple[str, bytes]) -> bytes:
    """A serializer's ``(type, bytes)`` as one blob: the type's name, a NUL, the bytes."""
    return typed[0].encode() + b"\0" + bytes(typed[1])


def unpack(blob: bytes) -> tuple[str, bytes]:
    """The ``(type, bytes)`` that ``pack`` joined."""
    cut = blob.index(b"\0")
    return blob[:cut].decode(), blob[cut + 1:]


def next_version(current: str | int | None) -> str | int:
    """The version after ``current``.

    A thread begun here counts in integers. A thread begun by LangGraph's stock savers has
    32-digit strings (with random digits after a dot); it goes on in strings, the counter only,
    as LangGraph compares a thread's versions with each other and takes their ``max``."""
    if isinstance(current, str):
        return f"{int(current.split('.')[0]) + 1:032}"
    return (current or 0) + 1


def _parts(by_idx: Mapping[int, tuple[str, list[Any]]]) -> list[tuple[str, list[list[Any]]]]:
    """A task row's writes, grouped by task path, each group in index order."""
    parts: dict[str, list[list[Any]]] = {}
    for at in sorted(by_idx):
        path, entry = by_idx[at]
        parts.setdefault(path, []).append(entry)
    return list(parts.items())


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` has every value of a ``list`` filter; a dotted key reaches into nested
    metadata, as ``SqliteSaver``'s ``json_extract`` does."""
    for key, value in wanted.items():
        if not FILTER_KEY.match(key):
            raise ValueError(f"Invalid filter key: {key!r}. Filter keys must contain only alphanumeric "
                             "characters, underscores, dots, and hyphens.")
        found: Any = metadata
        for part in key.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if found != value:
            return False
    return True


def _remember(cache: OrderedDict[Any, frozenset[str]], key: Any, names: frozenset[str]) -> None:
    """Note ``names`` under ``key`` in a bounded cache, the oldest forgotten first."""
    cache[key] = names
    cache.move_to_end(key)
    if len(cache) > HELD_CACHE:
        cache.popitem(last=False)


class CompactSqliteSaver(BaseCheckpointSaver[str | int]):
    """LangGraph's checkpointer contract on SQLite, in the compact schema of this module's note.

    Args:
        conn: A connection opened with ``check_same_thread=False`` (the saver serialises its use
            with a lock); in autocommit mode (``isolation_level=None``) as ``open_persistence``
            opens it, or in Python's default mode.
        serde: The checkpoint serializer.
    """

    def __init__(self, conn: sqlite3.Connection, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.conn = conn
        self.lock = threading.RLock()
        self.is_setup = False
        self._threads: dict[str, int] = {}
        self._held: OrderedDict[tuple[int, str, bytes | str], frozenset[str]] = OrderedDict()
        """The names in each recent checkpoint's ``channel_values``, noted as it is written or read, so
        the delta walk decodes only the checkpoint that holds a channel's seed. A checkpoint is written
        once (LangGraph gives every one a new id), so a noted set stays true."""
        self._wrote: OrderedDict[tuple[int, str, bytes | str, bytes | str], frozenset[str]] = OrderedDict()
        """The channels of each recent task row (``put_writes`` notes them), so the delta walk decodes
        only the rows that wrote a channel it rebuilds. A row only grows, and a merge notes the union."""

    # -- set-up and connection ---------------------------------------------------------------

    def setup(self) -> None:
        """Create the tables, and move a stock ``SqliteSaver``'s rows into them (once)."""
        with self.lock:
            if self.is_setup:
                return
            try:
                self.conn.executescript(SCHEMA)
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc) or not self._has_table("handoff_checkpoints"):
                    if self._has_table("checkpoints"):
                        raise sqlite3.OperationalError(
                            "this file was written by LangGraph's SqliteSaver; open it once with write access "
                            "so its checkpoints move into this saver's tables") from exc
                    raise
            if self._has_table("checkpoints"):
                with self._transaction() as cur:
                    if self._has_table("checkpoints"):  # another process may have moved them meanwhile
                        self._adopt_stock_tables(cur)
            self.is_setup = True

    @contextmanager
    def cursor(self) -> Iterator[sqlite3.Cursor]:
        """A cursor under the saver's lock, after set-up."""
        with self.lock:
            self.setup()
            cur = self.conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
                if self.conn.in_transaction and self.conn.isolation_level is not None:
                    self.conn.commit()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """Several statements as one: taken with the write lock first, so a second process waits."""
        with self.lock:
            if self.conn.in_transaction:
                self.conn.commit()
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self.conn.rollback()
                self._threads.clear()  # numbers handed out inside the transaction no longer exist
                raise
            else:
                self.conn.commit()
            finally:
                cur.close()

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def _thread(self, cur: sqlite3.Cursor, thread_id: str, *, create: bool) -> int | None:
        """The row number of ``thread_id``; made when ``create`` and new, else None when unknown."""
        if (known := self._threads.get(thread_id)) is not None:
            return known
        if create:
            cur.execute("INSERT OR IGNORE INTO handoff_threads (thread_id) VALUES (?)", (thread_id,))
        row = cur.execute("SELECT id FROM handoff_threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None:
            return None
        if len(self._threads) >= THREAD_CACHE:
            self._threads.clear()
        self._threads[thread_id] = int(row[0])
        return int(row[0])

    def _note_held(self, thread: int, ns: str, key: bytes | str, values: Mapping[str, Any]) -> None:
        _remember(self._held, (thread, ns, key), frozenset(values))

    def _note_wrote(self, row: tuple[int, str, bytes | str, bytes | str], channels: Iterable[str]) -> None:
        _remember(self._wrote, row, frozenset(channels))

    # -- serialization -----------------------------------------------------------------------

    def _dump_checkpoint(self, checkpoint: Checkpoint, metadata: CheckpointMetadata) -> bytes:
        body = {k: v for k, v in checkpoint.items() if k != "id"}  # the row's id column holds it
        return pack(self.serde.dumps_typed([body, metadata]))

    def _load_checkpoint(self, blob: bytes, checkpoint_id: str) -> tuple[Checkpoint, CheckpointMetadata]:
        body, metadata = self.serde.loads_typed(unpack(blob))
        body["id"] = checkpoint_id
        return body, metadata

    def _dump_writes(self, parts: Sequence[tuple[str, list[list[Any]]]]) -> bytes:
        """A task row's blob: ``[task_path, entries]``, or ``[[task_path, entries], ...]`` in the rare
        row whose writes came with more than one path (each write keeps its own, as in ``SqliteSaver``)."""
        body = list(parts[0]) if len(parts) == 1 else [list(part) for part in parts]
        return pack(self.serde.dumps_typed(body))

    def _load_writes(self, blob: bytes) -> list[tuple[str, list[list[Any]]]]:
        body = self.serde.loads_typed(unpack(blob))
        if isinstance(body[0], str):
            return [(body[0], body[1])]
        return [(path, entries) for path, entries in body]

    def _entry(self, idx: int, channel: str, value: Any) -> list[Any]:
        if isinstance(value, bytearray):  # msgpack would give it back as bytes: keep it typed
            return [idx, channel, *self.serde.dumps_typed(value)]
        return [idx, channel, value]

    def _value(self, entry: list[Any]) -> Any:
        return self.serde.loads_typed((entry[2], entry[3])) if len(entry) == 4 else entry[2]

    def _pending(self, rows: Sequence[tuple[bytes | str, bytes]]) -> list[PendingWrite]:
        """Pending writes of one checkpoint's task rows, in ``writes_sort_key`` order."""
        keyed: list[tuple[tuple[str, str, int], PendingWrite]] = []
        for task_key, blob in rows:
            task_id = id_text(task_key)
            for task_path, entries in self._load_writes(blob):
                for entry in entries:
                    keyed.append((writes_sort_key(task_path, task_id, entry[0]),
                                  (task_id, entry[1], self._value(entry))))
        keyed.sort(key=lambda item: item[0])
        return [write for _, write in keyed]

    def _tuple(self, cur: sqlite3.Cursor, thread_id: str, thread: int, ns: str, row: tuple[Any, ...]) -> CheckpointTuple:
        key, parent, blob = row
        checkpoint_id = id_text(key)
        checkpoint, metadata = self._load_checkpoint(blob, checkpoint_id)
        writes = cur.execute(
            "SELECT task, writes FROM handoff_writes WHERE thread = ? AND ns = ? AND checkpoint = ?",
            (thread, ns, key)).fetchall()
        return CheckpointTuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}},
            checkpoint,
            metadata,
            ({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": id_text(parent)}}
             if parent is not None else None),
            self._pending(writes),
        )

    # -- LangGraph's checkpointer contract ---------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest, with its pending writes."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        with self.cursor() as cur:
            thread = self._thread(cur, thread_id, create=False)
            if thread is None:
                return None
            if checkpoint_id := get_checkpoint_id(config):
                row = cur.execute(
                    "SELECT id, parent, checkpoint FROM handoff_checkpoints "
                    "WHERE thread = ? AND ns = ? AND id = ?", (thread, ns, id_key(checkpoint_id))).fetchone()
            else:
                row = cur.execute(
                    "SELECT id, parent, checkpoint FROM handoff_checkpoints "
                    "WHERE thread = ? AND ns = ? ORDER BY id DESC LIMIT 1", (thread, ns)).fetchone()
            return None if row is None else self._tuple(cur, thread_id, thread, ns, row)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, as ``SqliteSaver.list`` gives them (metadata filtered by equality)."""
        wheres: list[str] = []
        params: list[Any] = []
        if config is not None:
            conf = config["configurable"]
            with self.cursor() as cur:
                thread = self._thread(cur, str(conf["thread_id"]), create=False)
            if thread is None:
                return
            wheres.append("c.thread = ?")
            params.append(thread)
            if (ns := conf.get("checkpoint_ns")) is not None:
                wheres.append("c.ns = ?")
                params.append(ns)
            if checkpoint_id := get_checkpoint_id(config):
                wheres.append("c.id = ?")
                params.append(id_key(checkpoint_id))
        if before is not None and (before_id := get_checkpoint_id(before)):
            wheres.append("c.id < ?")
            params.append(id_key(before_id))
        query = ("SELECT t.thread_id, c.thread, c.ns, c.id, c.parent, c.checkpoint "
                 "FROM handoff_checkpoints c JOIN handoff_threads t ON t.id = c.thread"
                 + (" WHERE " + " AND ".join(wheres) if wheres else "") + " ORDER BY c.id DESC")
        if limit is not None and not filter:
            query += " LIMIT ?"
            params.append(limit)
        with self.cursor() as cur:
            rows = cur.execute(query, params).fetchall()
        given = 0
        for thread_id, thread, ns, *row in rows:
            if limit is not None and given >= limit:
                return
            with self.cursor() as cur:
                found = self._tuple(cur, thread_id, thread, ns, tuple(row))
            if filter and not _matches(found.metadata, filter):
                continue
            given += 1
            yield found

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        """Store ``checkpoint`` as the child of the one ``config`` names."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id")
        blob = self._dump_checkpoint(checkpoint, get_checkpoint_metadata(config, metadata))
        with self.cursor() as cur:
            thread = self._thread(cur, thread_id, create=True)
            cur.execute(
                "INSERT OR REPLACE INTO handoff_checkpoints (thread, ns, id, parent, checkpoint) VALUES (?, ?, ?, ?, ?)",
                (thread, ns, id_key(checkpoint["id"]), id_key(parent) if parent else None, blob))
            self._note_held(thread, ns, id_key(checkpoint["id"]), checkpoint["channel_values"])
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        """Store a task's writes as one row, merged into the row it already has.

        As in ``SqliteSaver``: a write at an index the task already stored is kept, unless every
        write of the call goes to one of LangGraph's special channels (errors, interrupts,
        resumes), which replace."""
        if not writes:
            return
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        checkpoint, task = id_key(str(conf["checkpoint_id"])), id_key(task_id)
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        # SqliteSaver keys a write by its index: of two at one index, the last stays when every write
        # goes to a special channel (INSERT OR REPLACE), else the first (INSERT OR IGNORE)
        by_idx: dict[int, tuple[str, list[Any]]] = {}
        for idx, (channel, value) in enumerate(writes):
            at = WRITES_IDX_MAP.get(channel, idx)
            if replace or at not in by_idx:
                by_idx[at] = (task_path, self._entry(at, channel, value))
        with self.cursor() as cur:
            thread = self._thread(cur, thread_id, create=True)
            cur.execute(
                "INSERT INTO handoff_writes (thread, ns, checkpoint, task, writes) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING", (thread, ns, checkpoint, task, self._dump_writes(_parts(by_idx))))
            if cur.rowcount == 1:
                self._note_wrote((thread, ns, checkpoint, task), (entry[1] for _, entry in by_idx.values()))
                return
        with self._transaction() as cur:  # the task stored writes before: merge under the write lock
            row = cur.execute(
                "SELECT writes FROM handoff_writes WHERE thread = ? AND ns = ? AND checkpoint = ? AND task = ?",
                (thread, ns, checkpoint, task)).fetchone()
            merged = {entry[0]: (path, entry) for path, entries in (self._load_writes(row[0]) if row else [])
                      for entry in entries}
            for at, written in by_idx.items():
                if replace or at not in merged:
                    merged[at] = written
            self._note_wrote((thread, ns, checkpoint, task), (entry[1] for _, entry in merged.values()))
            cur.execute(
                "INSERT OR REPLACE INTO handoff_writes (thread, ns, checkpoint, task, writes) VALUES (?, ?, ?, ?, ?)",
                (thread, ns, checkpoint, task, self._dump_writes(_parts(merged))))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of ``thread_id``."""
        with self._transaction() as cur:
            thread = self._thread(cur, str(thread_id), create=False)
            if thread is None:
                return
            cur.execute("DELETE FROM handoff_checkpoints WHERE thread = ?", (thread,))
            cur.execute("DELETE FROM handoff_writes WHERE thread = ?", (thread,))

    def get_next_version(self, current: str | int | None, channel: None) -> str | int:  # type: ignore[override]
        """The next version (see ``next_version``)."""
        return next_version(current)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """LangGraph's parent-chain walk for delta channels, in two queries.

        The first streams the target's ancestors nearest first and stops at the one whose
        values hold every channel (the seed); the second reads the chain's task rows at once."""
        if not channels:
            return {}
        channels = list(channels)
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            target = self.get_tuple(config)
            if target is None:
                return {ch: {"writes": []} for ch in channels}
            checkpoint_id = target.config["configurable"]["checkpoint_id"]
        target_key = id_key(checkpoint_id)
        chain: dict[str, list[bytes | str]] = {ch: [] for ch in channels}
        seeds: dict[str, Any] = {}
        with self.cursor() as cur:
            thread = self._thread(cur, thread_id, create=False)
            if thread is None:
                return {ch: {"writes": []} for ch in channels}
            active = set(channels)
            walked: set[bytes | str] = set()
            for key, blob in cur.execute(STAGE1_SQL, (thread, ns, target_key, thread, ns)):
                if key == target_key and not walked:
                    walked.add(key)  # the target's own writes and values are not part of its history
                    continue
                if key in walked:  # put's INSERT OR REPLACE can make a parent loop
                    break
                walked.add(key)
                for ch in active:
                    chain[ch].append(key)
                held = self._held.get((thread, ns, key))
                if held is not None and held.isdisjoint(active):
                    continue
                values = self.serde.loads_typed(unpack(blob))[0].get("channel_values") or {}
                self._note_held(thread, ns, key, values)
                for ch in [ch for ch in active if ch in values]:
                    seeds[ch] = values[ch]
                    active.discard(ch)
                if not active:
                    break
            on_chain = {ch: set(keys) for ch, keys in chain.items()}
            wanted = list(set().union(*on_chain.values()))
            by_checkpoint: dict[bytes | str, list[tuple[bytes | str, bytes]]] = {}
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                part = wanted[start:start + 500]
                for key, task, blob in cur.execute(
                        "SELECT checkpoint, task, writes FROM handoff_writes WHERE thread = ? AND ns = ? "
                        f"AND checkpoint IN ({','.join('?' * len(part))})", (thread, ns, *part)):
                    wrote = self._wrote.get((thread, ns, key, task))
                    if wrote is None or not wrote.isdisjoint(ch for ch in channels if key in on_chain[ch]):
                        by_checkpoint.setdefault(key, []).append((task, blob))
        pending = {key: self._pending(rows) for key, rows in by_checkpoint.items()}
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            writes = [w for key in reversed(chain[ch]) for w in pending.get(key, []) if w[1] == ch]
            entry: DeltaChannelHistory = {"writes": writes}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result

    def latest(self, limit: int) -> list[tuple[str, str]]:
        """``(thread_id, latest checkpoint id)`` of the most recently active threads, newest first."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT t.thread_id, MAX(c.id) AS latest FROM handoff_checkpoints c "
                "JOIN handoff_threads t ON t.id = c.thread WHERE c.ns = '' "
                "GROUP BY c.thread ORDER BY latest DESC LIMIT ?", (limit,)).fetchall()
        return [(str(thread_id), id_text(key)) for thread_id, key in rows]

    # -- async: the same work in a worker thread --------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await asyncio.to_thread(lambda: self.get_delta_channel_history(config=config, channels=channels))

    # -- files a stock SqliteSaver wrote -------------------------------------------------------

    def _adopt_stock_tables(self, cur: sqlite3.Cursor) -> None:
        """Move ``SqliteSaver``'s ``checkpoints`` and ``writes`` rows into this schema, then drop them."""
        for thread_id, ns, checkpoint_id, parent, type_, blob, metadata in cur.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                "FROM checkpoints").fetchall():
            thread = self._thread(cur, str(thread_id), create=True)
            checkpoint = self.serde.loads_typed((type_, blob))
            loaded = json.loads(metadata) if metadata is not None else {}
            cur.execute(
                "INSERT OR REPLACE INTO handoff_checkpoints (thread, ns, id, parent, checkpoint) VALUES (?, ?, ?, ?, ?)",
                (thread, ns, id_key(checkpoint_id), id_key(parent) if parent else None,
                 self._dump_checkpoint(checkpoint, loaded)))
        if self._has_table("writes"):
            rows: dict[tuple[str, str, str, str], dict[int, tuple[str, list[Any]]]] = {}
            columns = {row[1] for row in cur.execute("PRAGMA table_info(writes)")}
            path = "task_path" if "task_path" in columns else "''"
            for thread_id, ns, checkpoint_id, task_id, task_path, idx, channel, type_, value in cur.execute(
                    f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {path}, idx, channel, type, value "
                    "FROM writes").fetchall():
                row = rows.setdefault((str(thread_id), ns, checkpoint_id, task_id), {})
                row[idx] = (task_path, self._entry(idx, channel, self.serde.loads_typed((type_, value))))
            for (thread_id, ns, checkpoint_id, task_id), by_idx in rows.items():
                cur.execute(
                    "INSERT OR REPLACE INTO handoff_writes (thread, ns, checkpoint, task, writes) VALUES (?, ?, ?, ?, ?)",
                    (self._thread(cur, thread_id, create=True), ns, id_key(checkpoint_id), id_key(task_id),
                     self._dump_writes(_parts(by_idx))))
            cur.execute("DROP TABLE writes")
        cur.execute("DROP TABLE checkpoints")
