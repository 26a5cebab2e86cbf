"""Graph nodes with a sync and an async path that write the journal once per step.

LangGraph runs a plain function node on a thread of its executor under
``astream``, and the node's store calls then hop back to the event loop. A
node made here is a ``RunnableCallable`` with both paths: ``graph.stream``
calls the step and writes its journal with ``store.batch``; ``graph.astream``
calls the same step on the loop and writes with ``await store.abatch``. The
step itself only computes (it appends to a deferred journal), so it is written
once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from langgraph._internal._runnable import RunnableCallable  # the node type add_node builds itself
from langgraph.runtime import Runtime

from handoff.graphs.journal import Journal
from handoff.state import HandoffState, plain_update

Step = Callable[[HandoffState, Runtime, Journal], dict[str, Any]]
"""A node's work: the state update, with its transcript and records appended to the journal."""


def thread_of(runtime: Runtime) -> str:
    """The id of the thread a node runs on ("" outside a checkpointed run)."""
    info = runtime.execution_info
    return (info.thread_id if info else None) or ""


SETTLED_KEYS = frozenset({"transcript_len", "active_agent", "handoff_count", "briefing", "receiving", "notice",
                          "hops", "turn", "taken_in", "pending_handoff"})
"""Keys whose value replaces the old one (no reducer that adds or appends): writing the value they
already hold changes nothing."""


def changes_only(state: Mapping[str, Any], update: dict[str, Any], keep: Collection[str] = ()) -> dict[str, Any]:
    """``update`` without what would leave the state as it is.

    LangGraph stores every key a node returns as a write of its own, and bumps that channel's version
    even when the value is the same: a turn's bookkeeping (``hops`` 0 again, no ``notice``, the same
    agent) would cost a row per key per step. Case-file fields the case file already holds are
    dropped too (its reducer only ever overwrites or unions). ``keep``: keys to return regardless.
    """
    for key in [k for k in update if k not in keep]:
        value = update[key]
        if key in SETTLED_KEYS:
            if key in state and state[key] == value:
                del update[key]
        elif key == "case_file" and isinstance(value, Mapping):
            held = state.get("case_file") or {}
            if all(held.get(field) == v or v is None for field, v in value.items()):
                del update[key]
    return update


def journaled_node(name: str, step: Step, keep: Collection[str] = ()) -> RunnableCallable:
    """A node running ``step`` with a deferred journal flushed after it, on either path; its update
    holds only what changes the state, and the keys in ``keep``."""

    def run(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        update = step(state, runtime, journal)
        journal.flush()
        return changes_only(state, plain_update(update), keep)

    async def arun(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        update = step(state, runtime, journal)
        await journal.aflush()
        return changes_only(state, plain_update(update), keep)

    run.__name__ = arun.__name__ = name
    # trace=False: LangGraph traces the node itself; a traced callable would nest a second run.
    return RunnableCallable(run, arun, name=name, trace=False)
