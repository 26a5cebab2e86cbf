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

from collections.abc import Callable
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


def journaled_node(name: str, step: Step) -> RunnableCallable:
    """A node running ``step`` with a deferred journal flushed after it, on either path."""

    def run(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        update = step(state, runtime, journal)
        journal.flush()
        return plain_update(update)

    async def arun(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        update = step(state, runtime, journal)
        await journal.aflush()
        return plain_update(update)

    run.__name__ = arun.__name__ = name
    # trace=False: LangGraph traces the node itself; a traced callable would nest a second run.
    return RunnableCallable(run, arun, name=name, trace=False)
