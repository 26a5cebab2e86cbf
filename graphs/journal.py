"""The full transcript and handoff log, kept in a LangGraph store.

Checkpoints hold only a recent window (see state/conversation.py); the journal
holds everything, one store item per message or record, keyed by position.
The state's counters (``transcript_len``, ``handoff_count``) say how much of
the journal belongs to a given checkpoint, so an older checkpoint still reads
a consistent history and a fork simply overwrites the positions after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict
from langgraph.store.base import BaseStore

from state import HandoffRecord

TRANSCRIPT = "transcript"
HANDOFFS = "handoffs"


def _key(seq: int) -> str:
    return f"{seq:09d}"


class Journal:
    """Append-only logs of one thread; a no-op when the graph has no store."""

    def __init__(self, store: BaseStore | None, thread_id: str) -> None:
        self.store = store
        self.thread_id = thread_id

    def _ns(self, kind: str) -> tuple[str, ...]:
        return ("handoff", kind, self.thread_id)

    def append_messages(self, start: int, messages: Sequence[BaseMessage]) -> int:
        """Store messages at positions start.. and return the new length."""
        for offset, data in enumerate(messages_to_dict(list(messages))):
            self._write(TRANSCRIPT, start + offset, data)
        return start + len(messages)

    def append_record(self, seq: int, record: HandoffRecord) -> None:
        self._write(HANDOFFS, seq, record.model_dump(mode="json"))

    def messages(self, upto: int, last: int | None = None) -> list[BaseMessage]:
        """Messages at positions [upto-last, upto) (all when last is None)."""
        start = 0 if last is None else max(0, upto - last)
        return messages_from_dict(self._read(TRANSCRIPT, start, upto))

    def records(self, upto: int) -> list[HandoffRecord]:
        return [HandoffRecord.model_validate(v) for v in self._read(HANDOFFS, 0, upto)]

    def _write(self, kind: str, seq: int, value: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.put(self._ns(kind), _key(seq), value, index=False)

    def _read(self, kind: str, start: int, upto: int) -> list[dict[str, Any]]:
        if self.store is None or upto <= start:
            return []
        out: list[dict[str, Any]] = []
        for seq in range(start, upto):
            item = self.store.get(self._ns(kind), _key(seq))
            if item is not None:
                out.append(item.value)
        return out
