"""The checkpoint a turn read before its run, handed to the run instead of being read again.

A turn's first read (service/transcript.py, ``settled``) fetches the thread's latest checkpoint under
the thread's lock to learn that its last run ended; the run then starts by fetching the same row
(LangGraph's loop, ``aget_tuple``). ``prime`` hands the first answer to the run that follows in the
same context: the service's PostgreSQL saver (service/postgres_saver.py) answers the run's first
read of that thread's latest checkpoint with it, once, and reads the database for anything else.
Nothing can have written the thread in between but an editor that ignores the turn lock (Studio's
``update_state``), which could as well write between the run's own read and its first save.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, get_checkpoint_id


@dataclass
class _Primed:
    thread_id: str
    saved: CheckpointTuple | None
    used: bool = False


_PRIMED: ContextVar[_Primed | None] = ContextVar("handoff_primed_checkpoint", default=None)


def prime(thread_id: str, saved: CheckpointTuple | None) -> None:
    """Answer the next read of ``thread_id``'s latest checkpoint in this context with ``saved`` (None: the
    thread has none). Replaces what an earlier ``prime`` left unused."""
    _PRIMED.set(_Primed(thread_id, saved))


def unprime() -> None:
    """Forget what ``prime`` left in this context, used or not."""
    primed = _PRIMED.get()
    if primed is not None:
        primed.used = True


def take(config: RunnableConfig) -> tuple[bool, CheckpointTuple | None]:
    """``(True, checkpoint)`` when ``config`` asks for the primed thread's latest checkpoint (root
    namespace, no id) and nothing took it yet; ``(False, None)`` otherwise: read the database."""
    primed = _PRIMED.get()
    configurable = config.get("configurable") or {}
    if (primed is None or primed.used or configurable.get("thread_id") != primed.thread_id
            or configurable.get("checkpoint_ns", "") != "" or get_checkpoint_id(config)):
        return False, None
    primed.used = True
    return True, primed.saved
