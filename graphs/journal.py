"""The full transcript and handoff log, kept in a LangGraph store.

Checkpoints hold only a recent window (see state/conversation.py); the journal
holds everything, one store item per message or record, keyed by position.
The state's counters (``transcript_len``, ``handoff_count``) say how much of
the journal belongs to a given checkpoint, so an older checkpoint still reads
a consistent history. Time travel on the same thread (invoking from an older
checkpoint) overwrites the positions after it: the new branch reads right, the
abandoned branch's later checkpoints then read the new branch's tail. Forking
into a new thread (``handoff replay``, graphs/replay.py) copies the prefix and
leaves the old thread intact.
Writes and reads go to the store in one batch each (one transaction in SQLite,
one query per namespace), so their cost depends on how many items are touched,
not on how long the conversation is.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, messages_from_dict, messages_to_dict
from langgraph.store.base import BaseStore, GetOp, Item, PutOp

from handoff.agents.ledger import store_label
from handoff.state import HandoffRecord, records_of

TRANSCRIPT = "transcript"
HANDOFFS = "handoffs"
SENT = "sent"
"""Each user message's position, keyed by its id: telling a resent message from a new one is one
keyed read, not a read of the thread's recent messages (service/transcript.py, ``find_sent``)."""
BATCH = 500
"""Items per store batch when reading a long stretch of the journal."""


def _key(seq: int) -> str:
    return f"{seq:09d}"


def sent_key(message_id: str) -> str:
    """The ``SENT`` key of a message id: a fixed-length digest, as ids come from clients and may be long."""
    return hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


DEFAULT_FIELDS: dict[str, Any] = {
    "additional_kwargs": {}, "response_metadata": {}, "name": None, "tool_calls": [],
    "invalid_tool_calls": [], "usage_metadata": None, "artifact": None, "status": "success", "example": False,
}
"""Message fields LangChain fills in itself when they are missing, at these values."""


HUMAN_TYPES = frozenset({"human", "HumanMessageChunk"})
"""The ``type`` of a stored user message (``messages_to_dict``'s): ``messages_from_dict`` makes a
``HumanMessage`` of either."""


def slim_message_dict(item: dict[str, Any]) -> dict[str, Any]:
    """``messages_to_dict``'s item without what ``messages_from_dict`` restores by itself: the fields
    at their defaults and the repeated type. A journal item then stores the message, not its
    schema: a third fewer bytes for a typical turn, read back as the same message."""
    data = {k: v for k, v in item["data"].items()
            if k != "type" and not (k in DEFAULT_FIELDS and v == DEFAULT_FIELDS[k])}
    if "tool_calls" in data:
        data["tool_calls"] = [{k: v for k, v in call.items() if not (k == "type" and v == "tool_call")}
                              for call in data["tool_calls"]]
    return {"type": item["type"], "data": data}


class Journal:
    """Append-only logs of one thread; a no-op when the graph has no store.

    A ``deferred`` journal keeps its writes until ``flush()`` (or ``await aflush()``),
    so a graph node writes once per step, from its sync or its async path alike
    (graphs/nodes.py).
    """

    def __init__(self, store: BaseStore | None, thread_id: str, *, deferred: bool = False) -> None:
        self.store = store
        self.thread_id = thread_id
        self.deferred = deferred
        self._pending: list[PutOp] = []

    def flush(self) -> None:
        """Write what a deferred journal holds, in one store batch."""
        if self.store is not None and self._pending:
            self.store.batch(self._pending)
        self._pending = []

    async def aflush(self) -> None:
        """``flush`` for async code."""
        if self.store is not None and self._pending:
            await self.store.abatch(self._pending)
        self._pending = []

    def namespace(self, kind: str) -> tuple[str, ...]:
        """Where items of ``kind`` (``transcript`` or ``handoffs``) live for this thread."""
        return ("handoff", kind, store_label(self.thread_id))

    def append_messages(self, start: int, messages: Sequence[BaseMessage]) -> int:
        """Store messages at positions ``start..`` and return the new length.

        A message without an id gets one here, in place, as ``add_messages``
        would give it; so the journal and the state's window name it alike.
        """
        for message in messages:
            if message.id is None:
                message.id = str(uuid.uuid4())
        sent = self.namespace(SENT)
        self._put([*self._puts(TRANSCRIPT, start, [slim_message_dict(d) for d in messages_to_dict(list(messages))]),
                   *(PutOp(sent, sent_key(m.id), {"at": start + i}, index=False)
                     for i, m in enumerate(messages) if isinstance(m, HumanMessage) and m.id is not None)])
        return start + len(messages)

    async def asent_at(self, message_id: str) -> int | None:
        """The position the user message ``message_id`` was last stored at, or None: never stored, or
        stored before the journal kept positions by id. The position may since hold another message
        (time travel in place writes over what followed its checkpoint): check it."""
        if self.store is None:
            return None
        item = await self.store.aget(self.namespace(SENT), sent_key(message_id))
        at = item.value.get("at") if item is not None and isinstance(item.value, dict) else None
        return at if isinstance(at, int) else None

    def append_record(self, seq: int, record: HandoffRecord) -> None:
        """Store handoff record number ``seq`` (0-based)."""
        self._put(self._puts(HANDOFFS, seq, [record.model_dump(mode="json", exclude_none=True)]))

    def messages(self, upto: int, last: int | None = None) -> list[BaseMessage]:
        """Messages at positions ``[upto-last, upto)`` (all before ``upto`` when last is None)."""
        start = 0 if last is None else max(0, upto - last)
        return messages_from_dict(self._read(TRANSCRIPT, start, upto))

    async def amessages(self, upto: int, last: int | None = None) -> list[BaseMessage]:
        """``messages`` for async code."""
        start = 0 if last is None else max(0, upto - last)
        return messages_from_dict(await self._aread(TRANSCRIPT, start, upto))

    def stored_before(self, upto: int, last: int) -> StoredTail:
        """The stored messages at positions ``[upto-last, upto)`` as the journal keeps them, read newest
        first and only as far as the reader goes (``StoredTail``)."""
        return StoredTail(self, max(0, upto - last), upto)

    async def astored_before(self, upto: int, last: int) -> StoredTail:
        """``stored_before`` for async code: the positions are read now, in one batch."""
        start = max(0, upto - last)
        return StoredTail(None, start, upto, await self.aread_transcript(start, upto))

    def records(self, upto: int, last: int | None = None) -> list[HandoffRecord]:
        """Handoff records ``[upto-last, upto)``, oldest first (all when last is None)."""
        start = 0 if last is None else max(0, upto - last)
        return [HandoffRecord.model_validate(v) for v in self._read(HANDOFFS, start, upto)]

    async def arecords(self, upto: int, last: int | None = None) -> list[HandoffRecord]:
        """``records`` for async code."""
        start = 0 if last is None else max(0, upto - last)
        return [HandoffRecord.model_validate(v) for v in await self._aread(HANDOFFS, start, upto)]

    def messages_at(self, values: Mapping[str, Any]) -> list[BaseMessage]:
        """The whole transcript as of a checkpoint's state ``values`` (its own prefix of the journal)."""
        if self.store is None:
            return list(values.get("messages") or [])
        return self.messages(int(values.get("transcript_len") or 0))

    def records_at(self, values: Mapping[str, Any]) -> list[HandoffRecord]:
        """Every handoff record as of a checkpoint's state ``values``, oldest first."""
        if self.store is None:
            return records_of(values)
        return self.records(int(values.get("handoff_count") or 0))

    def read_transcript(self, start: int, upto: int) -> list[dict[str, Any]]:
        """The stored items (``slim_message_dict``'s form) at positions ``[start, upto)``, oldest first;
        a position with no item is left out."""
        return self._read(TRANSCRIPT, start, max(start, upto))

    async def aread_transcript(self, start: int, upto: int) -> list[dict[str, Any]]:
        """``read_transcript`` for async code."""
        return await self._aread(TRANSCRIPT, start, max(start, upto))

    def _gets(self, kind: str, start: int, upto: int) -> Iterator[list[GetOp]]:
        """The reads of positions ``[start, upto)``, ``BATCH`` per store call."""
        ns = self.namespace(kind)
        for first in range(start, upto, BATCH):
            yield [GetOp(ns, _key(seq)) for seq in range(first, min(first + BATCH, upto))]

    def _puts(self, kind: str, start: int, values: Sequence[dict[str, Any]]) -> list[PutOp]:
        ns = self.namespace(kind)
        return [PutOp(ns, _key(start + i), value, index=False) for i, value in enumerate(values)]

    def _put(self, puts: list[PutOp]) -> None:
        """Write ``puts`` in one store batch, or keep them for ``flush`` (deferred)."""
        if self.store is None or not puts:
            return
        if self.deferred:
            self._pending.extend(puts)
        else:
            self.store.batch(puts)

    def _read(self, kind: str, start: int, upto: int) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        return [item.value for ops in self._gets(kind, start, upto)
                for item in self.store.batch(ops) if isinstance(item, Item)]

    async def _aread(self, kind: str, start: int, upto: int) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        return [item.value for ops in self._gets(kind, start, upto)
                for item in await self.store.abatch(ops) if isinstance(item, Item)]


class StoredTail:
    """Stored messages before a position, newest first, each read at most once.

    The prompt's summary of earlier messages keeps only the newest few hundred characters
    (graphs/briefing.py), so a turn usually needs the newest handful of the positions it may look
    at: the newest ``FIRST_READ`` are read on first use, the rest only when the reader goes past
    them. What is read is kept, so every model call of the turn reads the journal once at most.
    ``journal`` None: ``items`` were read already (the async path).
    """

    FIRST_READ = 8
    """Positions read first: the summary's few hundred characters are about six messages' worth."""

    def __init__(self, journal: Journal | None, start: int, upto: int,
                 items: list[dict[str, Any]] | None = None) -> None:
        self._journal = journal
        self._start = start
        self._upto = upto
        self._unread = start if items is not None else upto
        """Positions ``[start, _unread)`` are still to be read."""
        self._newest_first: list[dict[str, Any]] = list(reversed(items or []))

    def _read_more(self) -> bool:
        """Read the next positions back; False when none is left."""
        if self._journal is None or self._unread <= self._start:
            return False
        first = self._unread == self._upto
        start = max(self._start, self._unread - self.FIRST_READ) if first else self._start
        self._newest_first.extend(reversed(self._journal.read_transcript(start, self._unread)))
        self._unread = start
        return True

    def newest_first(self) -> Iterator[dict[str, Any]]:
        """The stored items, newest first."""
        at = 0
        while True:
            while at < len(self._newest_first):
                yield self._newest_first[at]
                at += 1
            if not self._read_more():
                return

    def __bool__(self) -> bool:
        """Whether any position holds a message."""
        return next(self.newest_first(), None) is not None
