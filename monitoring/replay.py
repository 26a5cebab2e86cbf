"""Time travel: list a thread's checkpoints, and re-run from one of them on a fork.

A fork is a new thread that starts as an exact copy of the chosen checkpoint:
the checkpoint itself (same id, same channel values and versions, but not the
writes its next step produced, so that step runs again), plus the journal prefix that checkpoint refers to (``transcript_len``
messages, ``handoff_count`` records). The graph then continues on the new
thread; the original thread's checkpoints and journal are never written.

Why not LangGraph's own fork (invoke with an old ``checkpoint_id`` in the same
thread)? It would make the fork the thread's latest state, and it would
overwrite the journal positions after the checkpoint, which the original's
later checkpoints still point at.

Replay runs the graph you pass in, so a changed rule, policy or model takes
effect on the fork. Tools run again too, on a scratch ledger
(agents/ledger_scratch.py): the fork sees the refunds, quotes and changes that
really exist, and inherits the facts (a verified owner, a prepared quote) its
checkpoint's case file shows, but nothing it records reaches the real ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field

from handoff.agents.ledger import Ledger
from handoff.agents.ledger_scratch import ScratchLedgerStore
from handoff.graphs.checkpoint_values import checkpoint_values
from handoff.graphs.gate import GATE
from handoff.graphs.intake import awaits_intake
from handoff.graphs.journal import Journal
from handoff.graphs.session import HandoffSession, TurnResult
from handoff.graphs.telemetry import TraceOptions
from handoff.state import HandoffEvent, HandoffState, records_of, request_of


class ReplayError(ValueError):
    """The replay cannot be done as asked; the message says why and what to do."""


class CheckpointInfo(BaseModel):
    """One checkpoint of a thread, as ``handoff history`` shows it."""

    model_config = ConfigDict(frozen=True)

    checkpoint_id: str
    parent_id: str | None
    step: int
    source: str = Field(description="input (a user turn starts), loop (a node ran), update, or fork.")
    next: tuple[str, ...] = Field(description="Nodes that run next from here; empty at the end of a turn.")
    turn: int = Field(description="The user turn the checkpoint belongs to (a message no node has taken in "
                                  "yet starts the next one).")
    active_agent: str | None
    handoff_count: int
    pending_handoff: str | None = Field(description="A requested handoff the gate has not decided yet.")
    last_handoff: str | None = Field(description="The most recent decided handoff at this point.")
    created_at: str | None

    @property
    def before_handoff(self) -> bool:
        """True when the gate runs next: replaying from here re-decides a handoff."""
        return GATE in self.next


class ReplayResult(BaseModel):
    """Where a replay started and what the fork's run produced."""

    model_config = ConfigDict(frozen=True)

    source_thread: str
    checkpoint_id: str
    thread_id: str = Field(description="The fork's thread id.")
    turn: TurnResult


def history(graph: CompiledStateGraph, thread_id: str) -> list[CheckpointInfo]:
    """The thread's checkpoints, oldest first."""
    snapshots = list(graph.get_state_history({"configurable": {"thread_id": thread_id}}))
    infos = []
    for snapshot in reversed(snapshots):
        values = snapshot.values or {}
        pending = request_of(values)
        last = (records_of(values) or [None])[-1]
        parent = (snapshot.parent_config or {}).get("configurable", {})
        metadata = snapshot.metadata or {}
        infos.append(CheckpointInfo(
            checkpoint_id=snapshot.config["configurable"]["checkpoint_id"],
            parent_id=parent.get("checkpoint_id"),
            step=int(metadata.get("step", -1)),
            source=str(metadata.get("source", "")),
            next=tuple(snapshot.next),
            turn=int(values.get("turn") or 0) + (1 if awaits_intake(values) else 0),
            active_agent=values.get("active_agent"),
            handoff_count=int(values.get("handoff_count") or 0),
            pending_handoff=f"{pending.source} -> {pending.target} ({pending.trigger})" if pending else None,
            last_handoff=f"{last.source} -> {last.target}: {last.outcome}" if last else None,
            created_at=snapshot.created_at,
        ))
    return infos


def fork(
    graph: CompiledStateGraph, thread_id: str, checkpoint_id: str, *, new_thread_id: str | None = None
) -> str:
    """Copy one checkpoint and its journal prefix into a new thread; return the new thread id.

    No ledger fact is copied: continued on its own, the fork must verify the
    customer again (``replay`` gives it scratch copies of the facts its checkpoint shows).

    Args:
        graph: The compiled graph whose checkpointer and store hold the thread.
        thread_id: The thread to fork; it is only read.
        checkpoint_id: The checkpoint to start from (see ``history``).
        new_thread_id: Id for the fork; a fresh one otherwise. Must not exist yet.
    """
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise ReplayError("the graph was compiled without a checkpointer; there is nothing to replay")
    source = saver.get_tuple(_config(thread_id, checkpoint_id))
    if source is None:
        raise ReplayError(f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}; "
                          f"see `handoff history {thread_id}`")
    new_thread_id = new_thread_id or f"{thread_id[:12]}-fork-{uuid.uuid4().hex[:8]}"
    if saver.get_tuple(_config(new_thread_id)) is not None:
        raise ReplayError(f"thread {new_thread_id!r} already exists; choose another id for the fork")

    # The window, records and usage are delta channels: the source checkpoint alone may not hold them,
    # and the fork has none of its parent chain, so it starts from their rebuilt values.
    values = checkpoint_values(saver, source, getattr(graph.builder, "state_schema", HandoffState))
    if graph.store is not None:
        old, new = Journal(graph.store, thread_id), Journal(graph.store, new_thread_id)
        new.append_messages(0, old.messages(int(values.get("transcript_len") or 0)))
        for seq, record in enumerate(old.records(int(values.get("handoff_count") or 0))):
            new.append_record(seq, record)

    checkpoint = {**source.checkpoint, "channel_values": dict(values),
                  "channel_versions": dict(source.checkpoint["channel_versions"])}
    metadata = {**source.metadata, "source": "fork", "forked_from_thread": thread_id,
                "forked_from_checkpoint": checkpoint_id}
    # The source's pending writes are not copied: they are what its next step already produced,
    # and LangGraph would apply them instead of running that step again on the fork.
    saver.put(_config(new_thread_id), checkpoint, metadata,  # type: ignore[arg-type]
              dict(source.checkpoint["channel_versions"]))
    return new_thread_id


def replay(
    graph: CompiledStateGraph,
    thread_id: str,
    checkpoint_id: str,
    *,
    message: str | None = None,
    new_thread_id: str | None = None,
    on_event: Callable[[HandoffEvent], None] | None = None,
    trace: TraceOptions | None = None,
) -> ReplayResult:
    """Fork the thread at a checkpoint and run the graph from there on the fork.

    A checkpoint in the middle of a turn (e.g. just before the gate) is
    resumed as it stands; a checkpoint that ends a turn needs the next user
    ``message``. The fork's tools record into a scratch ledger (see the module doc).

    Args:
        graph: The graph to run; it may differ from the original (rules, policy, model).
        thread_id: The original thread, left unchanged.
        checkpoint_id: Where to start (see ``history``).
        message: The user's next message, for a checkpoint that ends a turn.
        new_thread_id: Id for the fork; a fresh one otherwise.
        on_event: Sees each handoff event of the replayed run.
        trace: LangSmith options for the fork's runs.
    """
    if graph.checkpointer is None:
        raise ReplayError("the graph was compiled without a checkpointer; there is nothing to replay")
    snapshot = graph.get_state(_config(thread_id, checkpoint_id))
    if not snapshot.values and snapshot.next == ():
        raise ReplayError(f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}; "
                          f"see `handoff history {thread_id}`")
    if snapshot.next and message:
        raise ReplayError(f"checkpoint {checkpoint_id} is in the middle of a turn (next: "
                          f"{', '.join(snapshot.next)}); replay resumes it, so give no message")
    if not snapshot.next and not message:
        raise ReplayError(f"checkpoint {checkpoint_id} ends a turn; give the next user message to replay from it")
    fork_id = fork(graph, thread_id, checkpoint_id, new_thread_id=new_thread_id)
    scratch = ScratchLedgerStore(graph.store)
    Ledger(scratch).inherit_facts(thread_id, fork_id, (snapshot.values or {}).get("case_file") or {})
    session = HandoffSession(graph.copy(update={"store": scratch}), fork_id, trace=trace)
    turn = session.send(message, on_event) if message else session.resume(on_event)
    return ReplayResult(source_thread=thread_id, checkpoint_id=checkpoint_id, thread_id=fork_id, turn=turn)


def _config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}
