"""A store whose ledger is a scratch copy: for replays that must not touch the real back office.

``ScratchLedgerStore`` passes every operation to the real store except those
on the ledger's namespaces (agents/ledger.py). Those are copy-on-write in
memory: reads see the real ledger plus what the scratch run wrote, writes and
deletes stay in the scratch layer. So a forked conversation sees the refunds,
quotes and changes that really exist (an invoice refunded in full stays so)
while what it does itself vanishes with it. The journal and everything else
go to the real store as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from handoff.agents.ledger import LEDGER

Key = tuple[tuple[str, ...], str]
PAGE = 500


def _touches_ledger(namespace: tuple[str, ...]) -> bool:
    """Whether items under ``namespace`` (a namespace or a search prefix) may be ledger items."""
    common = min(len(namespace), len(LEDGER))
    return namespace[:common] == LEDGER[:common]


def _is_ledger(namespace: tuple[str, ...]) -> bool:
    return tuple(namespace[: len(LEDGER)]) == LEDGER


class ScratchLedgerStore(BaseStore):
    """``base`` with the ledger copy-on-write in memory; see the module doc."""

    def __init__(self, base: BaseStore | None) -> None:
        """Args:
        base: The real store; None gives an empty one (a graph compiled without a store).
        """
        self.base = base if base is not None else InMemoryStore()
        self.layer = InMemoryStore()
        self.hidden: set[Key] = set()
        self._lock = threading.Lock()

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        reads = self._base_reads(ops)
        return self._finish(ops, self.base.batch(reads) if reads else [])

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        reads = self._base_reads(ops)
        return self._finish(ops, await self.base.abatch(reads) if reads else [])

    def _base_reads(self, ops: list[Op]) -> list[Op]:
        """What the real store is asked: every op off the ledger, and the reads a ledger op falls back on."""
        out: list[Op] = []
        for op in ops:
            if isinstance(op, PutOp):
                if not _is_ledger(op.namespace):
                    out.append(op)
            elif isinstance(op, GetOp):
                out.append(op)
            elif isinstance(op, SearchOp) and _touches_ledger(op.namespace_prefix):
                # Enough to fill the page after hiding what the scratch run deleted or rewrote.
                extra = len(self.hidden) + len(self._layer_items(op.namespace_prefix, op.filter))
                out.append(op._replace(offset=0, limit=op.offset + op.limit + extra))
            else:
                out.append(op)
        return out

    def _finish(self, ops: list[Op], base_results: list[Result]) -> list[Result]:
        results: list[Result] = []
        answers = iter(base_results)
        with self._lock:
            for op in ops:
                if isinstance(op, PutOp):
                    if _is_ledger(op.namespace):
                        self._write(op)
                    else:
                        next(answers)
                    results.append(None)
                elif isinstance(op, GetOp):
                    results.append(self._get(op, next(answers)))
                elif isinstance(op, SearchOp) and _touches_ledger(op.namespace_prefix):
                    results.append(self._search(op, next(answers)))  # type: ignore[arg-type]
                elif isinstance(op, ListNamespacesOp):
                    theirs = next(answers)
                    mine = self.layer.batch([op])[0]
                    merged = list(dict.fromkeys([*theirs, *mine]))  # type: ignore[misc]
                    results.append(merged[: op.limit])
                else:
                    results.append(next(answers))
        return results

    def _write(self, op: PutOp) -> None:
        key = (tuple(op.namespace), op.key)
        if op.value is None:
            self.hidden.add(key)
            self.layer.batch([op])
        else:
            self.hidden.discard(key)
            self.layer.batch([op._replace(index=False)])

    def _get(self, op: GetOp, theirs: Any) -> Item | None:
        if not _is_ledger(op.namespace):
            return theirs
        key = (tuple(op.namespace), op.key)
        if key in self.hidden:
            return None
        mine = self.layer.batch([op])[0]
        return mine if mine is not None else theirs

    def _layer_items(self, prefix: tuple[str, ...], filter: dict[str, Any] | None) -> list[SearchItem]:
        items: list[SearchItem] = []
        while True:
            page = self.layer.search(prefix, filter=filter, limit=PAGE, offset=len(items))
            items.extend(page)
            if len(page) < PAGE:
                return items

    def _search(self, op: SearchOp, theirs: list[SearchItem]) -> list[SearchItem]:
        merged: dict[Key, SearchItem] = {}
        for item in theirs:
            key = (tuple(item.namespace), item.key)
            if key not in self.hidden:
                merged[key] = item
        for item in self._layer_items(op.namespace_prefix, op.filter):
            merged[(tuple(item.namespace), item.key)] = item
        return list(merged.values())[op.offset: op.offset + op.limit]
