"""Side effects recorded once, in the LangGraph store the conversation already uses.

Refunds, tickets, quotes, orders, publications and production changes are
ledger records keyed by an idempotency key, and the facts a privileged tool
relies on (an owner verified in a conversation, a quote prepared in it) are
ledger facts keyed by thread. Both live in the run's store (``ToolContext.store``):
SQLite for the CLI, PostgreSQL shared by every service worker, ``langgraph
dev``'s own store, or an ``InMemoryStore`` in tests. So a restart, a resumed
step or a second worker finds what was already done.

The store has no compare-and-set, so the two operations that must not race
are built from put, get and search alone:

- a record id (``RF-3001``) is claimed by writing a claim under the id and then
  reading every claim on it; the claimant yields (and tries the next number)
  when it sees anyone else's. Of two claimants, the later reader always sees the
  earlier writer, so two keys never both win an id (both may yield; they then
  try again). Ids stay short and readable and are unique across workers.
- a share of a limited total (a refund of an invoice) is reserved as a pending
  record first and then re-counted against everything else reserved; it goes
  ahead only if the total still fits. Pending shares of others count, so two
  concurrent refunds that would together exceed the invoice are never both paid;
  the one that steps back waits a random moment and counts again. A process
  that dies between the two writes leaves its share pending (counted against
  others) until its conversation runs that step again with the same key.

What one key records is read before it is written; two runs with the same key at
once do not happen because keys are scoped to a thread and a thread runs one turn
at a time (service/locks.py holds that across workers).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from langgraph.store.base import BaseStore, Item
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel, ConfigDict, Field

LEDGER = ("handoff", "ledger")
"""Root of every ledger namespace (the journal uses ``("handoff", "transcript"|"handoffs", thread)``)."""
MAX_ID_TRIES = 50
"""Ids tried one after another before giving up (each try is a put and a search)."""
PAGE = 1000
SHARE_TRIES = 8
"""Times a share is counted again while others' pending shares leave it no room."""
BACKOFF = 0.02
"""Seconds of the first random wait between those counts; doubled each time, at most 0.5."""


class LedgerError(RuntimeError):
    """The ledger could not record something; the message says why."""


class LedgerRecord(BaseModel):
    """One side effect: what was done, under which key and id."""

    model_config = ConfigDict(frozen=True)

    kind: str
    key: str = Field(description="The idempotency key it was recorded under.")
    record_id: str
    state: Literal["pending", "done"] = "done"
    units: int | None = Field(default=None, description="Its share of a limited total, if it has one.")
    data: dict[str, Any] = Field(default_factory=dict)


class Fact(BaseModel):
    """Something established in one conversation, about one subject (e.g. an account)."""

    model_config = ConfigDict(frozen=True)

    name: str
    subject: str
    holds_when: dict[str, Any] = Field(
        default_factory=dict,
        description="Case-file values that go with the fact; a fork inherits it only where they hold.")
    data: dict[str, Any] = Field(default_factory=dict)


class ShareRefused(Exception):
    """A share that does not fit: ``left`` units remain of the limit (others' pending shares counted)."""

    def __init__(self, left: int, *, contended: bool = False) -> None:
        super().__init__(f"{left} units left")
        self.left = left
        self.contended = contended


def records_namespace(kind: str, group: str | None = None) -> tuple[str, ...]:
    return (*LEDGER, "records", kind, *([group] if group else []))


def facts_namespace(thread_id: str) -> tuple[str, ...]:
    return (*LEDGER, "facts", store_label(thread_id))


def store_label(thread_id: str) -> str:
    """``thread_id`` as one label of a LangGraph store namespace, which may not contain a dot: ``%`` and
    ``.`` are percent-encoded, so ``order.42`` and ``order%2E42`` stay apart.

    Ids without ``.`` or ``%`` (every id the project generates) are unchanged, so existing
    transcripts and facts keep their namespace. The journal uses it too (graphs/journal.py); it lives
    here, in the lower layer, because the ledger may not import the graphs.
    """
    return thread_id.replace("%", "%25").replace(".", "%2E")


def _ids_namespace(record_id: str) -> tuple[str, ...]:
    return (*LEDGER, "ids", record_id, "claims")


def _holds(case_file: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether every expected value is in the case file (a list field holds it as an element)."""
    for field, value in expected.items():
        actual = case_file.get(field)
        if actual != value and not (isinstance(actual, list) and value in actual):
            return False
    return True


class Ledger:
    """Records and facts in one store (the run's own, see ``LedgerHome``)."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    # records -----------------------------------------------------------------------------------

    def find(self, kind: str, key: str, *, group: str | None = None) -> LedgerRecord | None:
        """The record under ``key``, pending or done."""
        item = self.store.get(records_namespace(kind, group), key)
        return LedgerRecord.model_validate(item.value) if item else None

    def records(self, kind: str, *, group: str | None = None, pending: bool = False) -> list[LedgerRecord]:
        """Every record of ``kind`` (of one ``group`` if given); done ones only unless ``pending``."""
        found = [LedgerRecord.model_validate(i.value) for i in self._all(records_namespace(kind, group),
                                                                        exact=group is not None)]
        return [r for r in found if pending or r.state == "done"]

    def record_once(
        self, kind: str, key: str, data: Mapping[str, Any], *,
        prefix: str = "", first: int = 1, record_id: str | None = None,
    ) -> tuple[LedgerRecord, bool]:
        """Record ``data`` under ``key`` unless something already is; returns the record and whether it is new.

        Args:
            kind: What it is (``ticket``, ``quote``...): one namespace per kind.
            key: The idempotency key; a second call with it returns the first record.
            data: What to record (JSON).
            prefix: The id's prefix for a numbered id (``TKT`` gives ``TKT-5001``...).
            first: The first number of that sequence.
            record_id: A fixed id instead (the caller guarantees it is unique, e.g. one per plan).
        """
        if not (record_id or prefix):
            raise ValueError("record_once needs a record_id or an id prefix")
        existing = self.find(kind, key)
        if existing is not None and existing.state == "done":
            return existing, False
        rid = record_id or self._claim_id(prefix, first, f"{kind}:{key}")
        record = LedgerRecord(kind=kind, key=key, record_id=rid, data=dict(data))
        self.store.put(records_namespace(kind), key, record.model_dump(mode="json"), index=False)
        return record, True

    def claim_share(
        self, kind: str, key: str, *, group: str, units: int | None, limit: int,
        data: Callable[[int], Mapping[str, Any]], prefix: str, first: int,
    ) -> tuple[LedgerRecord, bool]:
        """Record a share of ``limit`` for ``group`` under ``key``, once; see the module doc.

        While other shares are pending (being recorded at this moment) and
        would not leave room, it waits a little, at random, and counts again.

        Args:
            kind: What it is (``refund``).
            key: The idempotency key; a second call returns the first record, whatever ``units`` it asks.
            group: What the limit is of (an invoice id).
            units: The share asked for (e.g. cents), positive; None for all that is left.
            limit: The most every share of ``group`` may add up to.
            data: Builds the record's data from the units granted.
            prefix: The id's prefix (``RF``).
            first: The first number of the id sequence.

        Raises:
            ShareRefused: the share does not fit (or nothing is left); nothing is recorded.
        """
        namespace = records_namespace(kind, group)
        existing = self.find(kind, key, group=group)
        if existing is not None and existing.state == "done":
            return existing, False
        for attempt in range(SHARE_TRIES):
            done, pending = self._reserved(kind, group, key)
            left = limit - done
            granted = left if units is None else units
            if left <= 0 or granted <= 0 or granted > left:
                if existing is not None:  # a pending share of ours a dead process left behind
                    self.store.delete(namespace, key)
                raise ShareRefused(left)
            if granted <= left - pending:
                claim = LedgerRecord(kind=kind, key=key, record_id="", state="pending", units=granted)
                self.store.put(namespace, key, claim.model_dump(mode="json"), index=False)
                # Counted again after our own write: whoever wrote before this read is seen here.
                done, pending = self._reserved(kind, group, key)
                if done + pending + granted <= limit:
                    rid = self._claim_id(prefix, first, f"{kind}:{key}")
                    record = LedgerRecord(kind=kind, key=key, record_id=rid, units=granted,
                                          data=dict(data(granted)))
                    self.store.put(namespace, key, record.model_dump(mode="json"), index=False)
                    return record, True
                self.store.delete(namespace, key)
            time.sleep(random.uniform(0, min(BACKOFF * 2**attempt, 0.5)))
        raise ShareRefused(max(limit - done - pending, 0), contended=True)

    def _reserved(self, kind: str, group: str, key: str) -> tuple[int, int]:
        """Units of ``group`` already recorded, and units being recorded right now, by other keys."""
        others = [r for r in self.records(kind, group=group, pending=True) if r.key != key]
        done = sum(r.units or 0 for r in others if r.state == "done")
        return done, sum(r.units or 0 for r in others if r.state == "pending")

    def _claim_id(self, prefix: str, first: int, owner: str) -> str:
        """The next free ``prefix-N`` (N >= first), claimed for ``owner``; see the module doc."""
        hint_ns = (*LEDGER, "next")
        hint = self.store.get(hint_ns, prefix)
        number = max(first, int(hint.value["number"]) if hint else first)
        for _ in range(MAX_ID_TRIES):
            candidate = f"{prefix}-{number}"
            claims = _ids_namespace(candidate)
            self.store.put(claims, owner, {"owner": owner}, index=False)
            holders = {i.key for i in self._all(claims, exact=True)}
            if holders == {owner}:
                self.store.put(hint_ns, prefix, {"number": number + 1}, index=False)
                return candidate
            if owner in holders:
                self.store.delete(claims, owner)
            number += 1
        raise LedgerError(f"no free {prefix} id after {MAX_ID_TRIES} tries; the ledger is too busy, try again")

    def _all(self, namespace: tuple[str, ...], *, exact: bool) -> list[Item]:
        """Every item under ``namespace`` (only in it, when ``exact``), page by page."""
        items: list[Item] = []
        while True:
            page = self.store.search(namespace, limit=PAGE, offset=len(items))
            items.extend(page)
            if len(page) < PAGE:
                break
        unique = {(i.namespace, i.key): i for i in items}
        return [i for i in unique.values() if not exact or tuple(i.namespace) == namespace]

    # facts -------------------------------------------------------------------------------------

    def establish(
        self, thread_id: str, name: str, subject: str, *,
        holds_when: Mapping[str, Any], data: Mapping[str, Any] | None = None,
    ) -> Fact:
        """Record that ``name`` holds for ``subject`` in conversation ``thread_id``."""
        fact = Fact(name=name, subject=subject, holds_when=dict(holds_when), data=dict(data or {}))
        if thread_id:  # a run without a thread has no conversation to bind a fact to
            self.store.put(facts_namespace(thread_id), f"{name}:{subject}", fact.model_dump(mode="json"),
                           index=False)
        return fact

    def revoke(self, thread_id: str, name: str, subject: str) -> None:
        """Forget ``name`` for ``subject`` in conversation ``thread_id``."""
        if thread_id:
            self.store.delete(facts_namespace(thread_id), f"{name}:{subject}")

    def fact(self, thread_id: str, name: str, subject: str) -> Fact | None:
        """The fact, if it was established in conversation ``thread_id``."""
        if not thread_id:
            return None
        item = self.store.get(facts_namespace(thread_id), f"{name}:{subject}")
        return Fact.model_validate(item.value) if item else None

    def inherit_facts(self, source: str, target: str, case_file: Mapping[str, Any]) -> list[Fact]:
        """Copy ``source``'s facts to ``target`` where the case file (a fork's start) still shows them."""
        kept = []
        for item in self._all(facts_namespace(source), exact=True):
            fact = Fact.model_validate(item.value)
            if _holds(case_file, fact.holds_when):
                self.store.put(facts_namespace(target), item.key, item.value, index=False)
                kept.append(fact)
        return kept


class LedgerHome:
    """Where a graph's side effects go: the run's store, else one of this instance's own.

    A graph compiled without a store (``ctx.store`` is None) records into a
    process-local ``InMemoryStore`` owned by this instance: idempotent within
    the process, lost with it, and not shared with other processes.
    """

    def __init__(self) -> None:
        self._local = InMemoryStore()

    def ledger(self, store: BaseStore | None) -> Ledger:
        """The ledger in ``store`` (the run's), or in this instance's own store when there is none."""
        return Ledger(self._local if store is None else store)
