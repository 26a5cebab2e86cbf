"""A thread's messages as people see them, its pending escalation, whether its last run ended, and finding a
message sent before."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, messages_from_dict
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.serde.types import TASKS
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel._checkpoint import LATEST_VERSION as CHECKPOINT_FORMAT  # private: the format runs write
from langgraph.types import StateSnapshot

from handoff.graphs.journal import HUMAN_TYPES, Journal
from handoff.service.models import ChatMessage, Escalation

LOOKBACK = 50
"""A retried message is recognised while it is among the thread's last this-many messages."""


def chat_messages(messages: Iterable[BaseMessage]) -> list[ChatMessage]:
    """Messages as the user sees them; AI messages with no text (bare tool calls) are left out."""
    out: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            out.append(ChatMessage(role="user", text=message.text))
        elif isinstance(message, AIMessage) and message.text.strip():
            out.append(ChatMessage(role="agent", agent=message.name, text=message.text))
        elif isinstance(message, ToolMessage):
            out.append(ChatMessage(role="tool", agent=message.name, text=message.text))
    return out


def pending_escalation(snapshot: StateSnapshot) -> Escalation | None:
    """The first pending interrupt of the snapshot's tasks, as an Escalation; None when none waits."""
    for task in snapshot.tasks:
        for pending in task.interrupts:
            value = pending.value
            fields = value if isinstance(value, dict) else {"question": str(value)}
            return Escalation(
                id=pending.id,
                node=task.name,
                source=str(fields.get("source") or ""),
                reason=str(fields.get("reason") or ""),
                briefing=str(fields.get("briefing") or ""),
                question=str(fields.get("question") or ""),
                value=value,
            )
    return None


def unfinished(snapshot: StateSnapshot) -> bool:
    """True when the thread's last run stopped before its end (its worker died, its database went
    away), not because it waits for a person.

    ``snapshot.tasks``, not ``snapshot.next``: a task that finished but whose step was never
    checkpointed has its writes saved and is left out of ``next``, yet the run still has to go
    on from it (``graph.astream(None)`` applies those writes and continues). Sending new input
    instead would drop them and leave the user's message to be archived a second time.
    """
    return bool(snapshot.tasks) and not any(task.interrupts for task in snapshot.tasks)


@dataclass(frozen=True)
class SentBefore:
    """A user message found in the thread, with what followed it in its turn."""

    message: HumanMessage
    after: list[BaseMessage]
    latest: bool
    """It is the thread's most recent user message."""


async def find_sent(journal: Journal, values: Mapping[str, Any], message_id: str, *,
                    indexed: bool = False) -> SentBefore | None:
    """The user message ``message_id`` if the thread holds it: in the checkpoint's window
    (where it is before the turn's first node has archived it) or among the journal's last ``LOOKBACK`` messages.

    ``indexed``: the journal has kept every user message's position by id since the thread began (its
    registration says so), so one keyed read finds the message or shows it is new; otherwise, and
    when the position found is past the checkpoint's history or holds another message now (time travel),
    the last ``LOOKBACK`` positions are read and searched. One answer differs from the scan's: an id the
    thread stored twice within the lookback (Studio running a user message again) is found at its latest
    copy, where the scan finds the first (tests/test_sent_index_attacks.py)."""
    found = _find(list(values.get("messages") or []), message_id)
    if found is not None:
        return found
    upto = int(values.get("transcript_len") or 0)
    start = max(0, upto - LOOKBACK)
    if indexed:
        at = await journal.asent_at(message_id)
        if at is None or at < start:  # never stored, or last stored beyond the lookback (so every copy is)
            return None
        if at < upto:
            stored = await journal.aread_transcript(at, upto)
            if stored and _holds(stored[0], message_id):
                return _find(messages_from_dict(stored), message_id)
        # last stored past this checkpoint's history (a branch time travel left, a step never saved), or
        # its position since written over: an earlier copy may be in the lookback, which the scan finds
    stored = await journal.aread_transcript(start, upto)
    # almost every message is new and found nowhere: compare the stored ids, make messages of
    # what follows the one found only
    at = next((i for i, item in enumerate(stored) if _holds(item, message_id)), None)
    return _find(messages_from_dict(stored[at:]), message_id) if at is not None else None


def _holds(item: dict[str, Any], message_id: str) -> bool:
    """Whether a stored journal item is the user message ``message_id``."""
    return item.get("type") in HUMAN_TYPES and (item.get("data") or {}).get("id") == message_id


def _find(messages: list[BaseMessage], message_id: str) -> SentBefore | None:
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    for position in humans:
        if messages[position].id == message_id:
            following = [i for i in humans if i > position]
            end = following[0] if following else len(messages)
            return SentBefore(cast(HumanMessage, messages[position]), messages[position + 1:end],
                              latest=not following)
    return None


@dataclass(frozen=True)
class Settled:
    """A thread whose last run ended at the graph's end: nothing pending, no person awaited."""

    transcript_len: int
    """Messages the journal holds for it; every message of its checkpoint's window is among them."""
    saved: CheckpointTuple | None = field(default=None, compare=False, repr=False)
    """The checkpoint this was read from (None: the thread has none yet), for the run to start from
    (service/primed.py)."""


async def settled(graph: CompiledStateGraph, thread_id: str) -> Settled | None:
    """The thread as its latest checkpoint alone tells it, when that is enough; None when the full
    state must be read (``aget_state``): a run left unfinished, a person awaited, or anything unsure.

    A turn's first question is whether the thread's last run ended. ``aget_state`` answers it by
    rebuilding every channel (the message window from its delta history too) and the next tasks;
    the checkpoint row answers it for a run that ended: a row the run wrote (not ``update_state``), in
    the format LangGraph writes now, with no pending writes (an interrupt, a finished task of an
    unsaved step), no pending sends, and no node with a trigger newer than it has seen that holds a
    value (LangGraph's own rule for the next step's tasks). Such a thread's window is all in the
    journal, as every node archives the messages it adds; except, through later turns too, an agent's
    message Studio wrote (never archived) and a fork's window over a journal another branch wrote on
    (tests/test_service_settled_attacks.py, its xfail tests).
    """
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver) or graph.store is None:
        return None
    saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    if saved is None:
        return Settled(transcript_len=0, saved=None)
    checkpoint = saved.checkpoint
    # a row of an older format is migrated as it is read (triggers renamed, sends moved into a channel),
    # which only the full read does; a row update_state wrote (Studio) may hold messages no node archived
    if checkpoint.get("v") != CHECKPOINT_FORMAT or saved.metadata.get("source") != "loop":
        return None
    if saved.pending_writes or checkpoint["channel_values"].get(TASKS):
        return None
    values, versions = checkpoint["channel_values"], checkpoint["channel_versions"]
    for name, node in graph.nodes.items():
        seen = checkpoint["versions_seen"].get(name) or {}
        for channel in node.triggers:
            version = versions.get(channel)
            if version is None or (channel in seen and not version > seen[channel]):
                continue
            if holds_value(graph, values, channel):  # newer than seen, and it counts: a task to run
                return None
    length = values.get("transcript_len", 0)
    return Settled(transcript_len=length, saved=saved) if isinstance(length, int) else None


def holds_value(graph: CompiledStateGraph, values: dict[str, Any], channel: str) -> bool:
    """Whether a trigger ``channel`` holds a value in a checkpoint's ``values``, as LangGraph asks it
    (the channel restored from its saved value, ``is_available``): a consumed trigger is left out of
    the values or saved empty (a join's barrier as an empty set) while its version moves on. A delta
    channel is not in every checkpoint's values, and anything unsure counts as holding one."""
    spec = graph.channels.get(channel)
    if spec is None or isinstance(spec, DeltaChannel):
        return True
    if channel not in values:
        return False
    try:
        return spec.from_checkpoint(values[channel]).is_available()
    except Exception:  # a value this channel cannot restore: the full read decides
        return True
