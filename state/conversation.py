"""The one typed state object every agent node and the handoff gate share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, convert_to_messages
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from handoff.state.case_file import merge_case_file
from handoff.state.handoff import plain_record, plain_request

MESSAGE_WINDOW = 12
"""Messages kept in the checkpointed state. The full transcript lives in the
LangGraph store (see graphs/journal.py); keeping the window bounded is what
makes checkpoint storage grow linearly instead of quadratically."""

RECORD_WINDOW = 8
"""Handoff records kept in state for loop guards; the full log is in the store."""


def window_messages(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """Reducer: `add_messages`, then keep a recent window that starts on a user turn.

    Cutting only at a HumanMessage keeps every tool call next to its result. If
    the current turn alone is longer than the window, the whole turn is kept.
    """
    merged = add_messages(left, with_ids(left, right))
    if len(merged) <= MESSAGE_WINDOW:
        return merged
    human_at = [i for i, m in enumerate(merged) if isinstance(m, HumanMessage)]
    if not human_at:
        return merged
    start = next((i for i in human_at if i >= len(merged) - MESSAGE_WINDOW), human_at[-1])
    return merged[start:]


def with_ids(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """``right`` as messages, each without an id given one drawn from what precedes it.

    ``add_messages`` would draw a random id, and the window is rebuilt from its stored writes on every
    read (a message written as text by ``update_state`` is stored as text): a random id would change
    from one read to the next. The same window and the same write always give the same id.
    """
    items = right if isinstance(right, list) else [right]
    if all(isinstance(m, BaseMessage) and m.id is not None for m in items):
        return items  # what nodes write: nothing to convert or name
    messages = convert_to_messages(items)
    before = left[-1].id if left else ""
    for position, message in enumerate(messages):
        if message.id is None:
            seed = f"{before}|{position}|{message.type}|{message.content}"
            message.id = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
    return messages


def append_records(left: list[dict[str, Any]] | None, right: Any) -> list[dict[str, Any]]:
    """Reducer: append new records (as plain data, see state/handoff.py), keep the last RECORD_WINDOW."""
    new = right if isinstance(right, list) else ([] if right is None else [right])
    kept = [r if isinstance(r, dict) else plain_record(r) for r in (left or [])[-RECORD_WINDOW:]]
    return [*kept, *(plain_record(r) for r in new)][-RECORD_WINDOW:]


def merge_usage(
    left: dict[str, dict[str, int]] | None, right: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]]:
    """Reducer: add per-agent counters (model calls, prompt tokens)."""
    merged = {k: dict(v) for k, v in (left or {}).items()}
    for agent, counts in (right or {}).items():
        slot = merged.setdefault(agent, {})
        for name, value in counts.items():
            slot[name] = slot.get(name, 0) + value
    return merged


def write_by_write(reducer: Callable[[Any, Any], Any]) -> Callable[[Any, Sequence[Any]], Any]:
    """A ``DeltaChannel`` reducer from a pairwise one: the writes of a batch applied one after another,
    as the run applied them. However LangGraph groups the writes when it replays them, the value is
    the one the run had (the batching invariance ``DeltaChannel`` asks of its reducer), removals and
    reused message ids included (tests/test_delta_state.py and tests/test_delta_attacks.py)."""

    def replay(left: Any, writes: Sequence[Any]) -> Any:
        for write in writes:
            left = reducer(left, write)
        return left

    replay.__name__ = f"{reducer.__name__}_write_by_write"
    return replay


window_batch = write_by_write(window_messages)
records_batch = write_by_write(append_records)
usage_batch = write_by_write(merge_usage)

DELTA_SNAPSHOT_EVERY = 8
"""Updates of a delta channel between full copies of it in a checkpoint. In between a checkpoint stores
nothing for it: LangGraph's ``DeltaChannel`` rebuilds it from the writes it keeps anyway, so a
checkpoint per step no longer repeats the last dozen messages. Fewer snapshots store less, but every
read replays a longer chain of checkpoints: the window updates two or three times a turn, so a read
walks back about three turns."""

WindowedMessages = Annotated[list[AnyMessage], DeltaChannel(window_batch, snapshot_frequency=DELTA_SNAPSHOT_EVERY)]
"""The bounded message window as a delta channel (one object, so the state, input and output schemas
declare the same channel)."""

RecentRecords = Annotated[list[dict[str, Any]], DeltaChannel(records_batch, snapshot_frequency=DELTA_SNAPSHOT_EVERY // 2)]
"""The recent handoff records as a delta channel. A turn's intake writes it once (an empty write when
no handoff happens), so its snapshots come every four turns. A read walks back until every delta
channel has found a full copy, so this channel sets how far back a read goes; snapshots every two
turns would shorten the walk but store about 6% more (eight records a copy)."""

USAGE_SNAPSHOT_EVERY = 2
"""Updates of the usage counters between full copies. They update once a model call, about once a
turn: at ``DELTA_SNAPSHOT_EVERY`` they sent every read back about eight turns (some 25 checkpoints)
where the other channels need four; a copy is a few dozen bytes."""

AgentUsage = Annotated[dict[str, dict[str, int]], DeltaChannel(usage_batch, snapshot_frequency=USAGE_SNAPSHOT_EVERY)]
"""Per-agent counters as a delta channel: every model call adds to them."""


class HandoffState(TypedDict, total=False):
    """Conversation state shared by every node of a handoff graph."""

    messages: WindowedMessages
    """Recent messages (bounded window); the model sees these plus its briefing."""
    transcript_len: int
    """How many messages the whole conversation holds in the store's transcript."""
    active_agent: str
    """Who answers the next user message; survives restarts with the checkpoint."""
    case_file: Annotated[dict[str, Any], merge_case_file]
    """What is known so far; validated by the domain's CaseFile model."""
    pending_handoff: Annotated[dict[str, Any] | None, plain_request]
    """A request waiting for the gate (a ``HandoffRequest`` as plain data; ``request_of`` reads it)."""
    handoffs: RecentRecords
    """The most recent handoff records as plain data (``records_of`` reads them); the full log is in
    the store."""
    handoff_count: int
    """How many handoff records the conversation has in all."""
    briefing: str | None
    """What the active agent was told when it received the conversation."""
    receiving: str | None
    """Id of the handoff whose receiver has not answered yet."""
    notice: str | None
    """A note for the active agent's next prompt, e.g. why its handoff was refused."""
    hops: int
    """Handoffs attempted during the current user turn (the hop budget)."""
    turn: int
    """Number of user turns so far."""
    taken_in: str | None
    """Id of the last user message whose turn was started (archived, counted); a node that finds a
    later one at the end of ``messages`` starts the turn itself (graphs/intake.py)."""
    usage: AgentUsage
    """Per-agent model calls and approximate prompt tokens."""


TRUSTED_KEYS = tuple(k for k in HandoffState.__annotations__ if k != "messages")
"""State written only by the graph's own nodes, never by a caller's input."""


class HandoffInput(TypedDict):
    """What a turn may bring into the graph: the user's message(s), nothing else.

    Everything else in ``HandoffState`` is trusted and written by the graph's
    own nodes (graphs/boundary.py refuses an input that tries). A paused
    escalation is continued with ``Command(resume=...)``, not with input.
    """

    messages: WindowedMessages
    """The user's new message(s): text, ``("user", text)``, ``{"role": "user", ...}`` or HumanMessage."""


class HandoffOutput(TypedDict, total=False):
    """What ``invoke`` returns: the recent messages and where the conversation stands."""

    messages: WindowedMessages
    """Recent messages (bounded window); the whole transcript is in the store (graphs/journal.py)."""
    active_agent: str
    """Who answers the next user message."""
    case_file: Annotated[dict[str, Any], merge_case_file]
    """What is known so far."""
    handoffs: RecentRecords
    """The most recent handoff records as plain data (``state.records_of`` gives the models)."""
    handoff_count: int
    """How many handoff records the conversation has in all."""
    briefing: str | None
    """What the active agent was told when it received the conversation."""
    turn: int
    """Number of user turns so far."""
    transcript_len: int
    """How many messages the whole conversation holds in the store's transcript."""
