"""A checkpoint's state values as a run would see them, read from the checkpointer alone.

The message window, the recent handoff records and the usage counters are LangGraph ``DeltaChannel``s
(state/conversation.py): most checkpoints store no value for them, and a graph rebuilds them from the
writes along the checkpoint's parent chain. Code that reads checkpoints without compiling a graph (the
report, a fork into a new thread) rebuilds them here the same way, through the checkpointer's
``get_delta_channel_history`` and the channels' own reducers.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, get_type_hints

from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from handoff.state import HandoffState


@cache
def delta_channels(schema: type[Any] = HandoffState) -> Mapping[str, DeltaChannel]:
    """The state keys of ``schema`` kept as delta channels, with their channel."""
    hints = get_type_hints(schema, include_extras=True)
    return {key: meta for key, hint in hints.items() for meta in getattr(hint, "__metadata__", ())
            if isinstance(meta, DeltaChannel)}


def checkpoint_values(checkpointer: BaseCheckpointSaver, found: CheckpointTuple,
                      schema: type[Any] = HandoffState) -> dict[str, Any]:
    """``found``'s channel values with every delta channel rebuilt (plain values, no snapshots)."""
    checkpoint = found.checkpoint
    values = dict(checkpoint["channel_values"])
    specs = delta_channels(schema)
    stored = {k: values[k] for k in specs if k in values}
    for key, value in stored.items():
        values[key] = specs[key].from_checkpoint(value).get()
    walk = [k for k in specs if k not in stored and k in checkpoint["channel_versions"]]
    if walk:
        for key, history in checkpointer.get_delta_channel_history(config=found.config, channels=walk).items():
            channel = specs[key].from_checkpoint(history.get("seed"))
            for _, _, value in history["writes"]:
                channel.update([value])
            values[key] = channel.get()
    return values
