"""What a turn's input may carry into the graph, checked on every entry point.

A caller gives the user's message(s), or ``Command(resume=...)`` to continue a
paused escalation, and nothing else: the active agent, the case file, the
handoff records, the counters, the briefing, notices and usage are trusted
state that only the graph's own nodes write (``state.TRUSTED_KEYS``). The
input schema (``state.HandoffInput``) already drops unknown keys silently;
refusing them here instead tells a caller who tried that it did not work, and
``Command(update=...)``/``Command(goto=...)``, which LangGraph writes to the
channels without any input schema, are refused too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import HumanMessage, convert_to_messages
from langgraph.types import Command

from handoff.state import TRUSTED_KEYS

MAX_MESSAGE_CHARS = 20_000
"""Longest user message the graph takes."""
MAX_MESSAGES_PER_TURN = 20
"""Most user messages one input may carry."""
INPUT_KEYS = ("messages",)


class InputRefused(ValueError):
    """A turn's input that the graph does not take; the message names what was wrong and the limit."""


def admit(graph_input: Any) -> Any:
    """The input as the graph takes it: ``None`` (continue from the checkpoint), a resume
    ``Command``, or ``{"messages": [HumanMessage, ...]}``.

    Raises:
        InputRefused: trusted keys or unknown keys in the input, a ``Command`` that updates state or
            jumps to a node, a message that is not the user's, or one that is empty or too long.
    """
    if graph_input is None:
        return None
    if isinstance(graph_input, Command):
        return _admit_command(graph_input)
    if not isinstance(graph_input, Mapping):
        raise InputRefused(
            f"a turn's input is {{'messages': [the user's message]}}, not {type(graph_input).__name__}"
        )
    extra = [str(k) for k in graph_input if k not in INPUT_KEYS]
    if extra:
        trusted = [k for k in extra if k in TRUSTED_KEYS]
        detail = (f"{', '.join(trusted)} {'is' if len(trusted) == 1 else 'are'} written only by the "
                  "graph's own nodes" if trusted else f"unknown key(s): {', '.join(extra)}")
        raise InputRefused(f"a turn's input may carry only 'messages' (the user's message); {detail}")
    return {"messages": _user_messages(graph_input.get("messages"))}


def _admit_command(command: Command) -> Command:
    if command.update is not None or command.goto or command.graph is not None:
        raise InputRefused(
            "a Command given as input may only resume a paused escalation (Command(resume=...)); "
            "updating state or jumping to a node is reserved to the graph's own nodes"
        )
    return command


def _user_messages(raw: Any) -> list[HumanMessage]:
    if raw is None or (isinstance(raw, Sequence) and not isinstance(raw, str) and not raw):
        raise InputRefused("a turn's input needs the user's message in 'messages'")
    items = [raw] if isinstance(raw, str | Mapping | HumanMessage | tuple) else list(raw)
    if len(items) > MAX_MESSAGES_PER_TURN:
        raise InputRefused(f"messages: {len(items)} messages in one turn; the limit is {MAX_MESSAGES_PER_TURN}")
    try:
        messages = convert_to_messages(items)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InputRefused(f"messages: not a message: {str(exc)[:200]}") from None
    for position, message in enumerate(messages):
        if not isinstance(message, HumanMessage):
            raise InputRefused(
                f"messages[{position}]: a message of type {message.type!r}; a turn's input carries only the "
                "user's messages (agent, tool and system messages are written by the graph)"
            )
        text = message.text
        if not text.strip():
            raise InputRefused(f"messages[{position}]: the message is empty")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InputRefused(
                f"messages[{position}]: {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}"
            )
    return messages  # type: ignore[return-value]


THREAD_ID_MAX = 128
"""Longest thread id."""
THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")
"""A thread id: letters, digits and ``. _ : @ + -``, starting with a letter or digit (an e-mail or
``order.42`` is fine; spaces, newlines and control characters are not)."""


def check_thread_id(thread_id: str) -> str:
    """``thread_id`` if it is a valid thread id (the same rule in the CLI, the session and the service).

    Raises:
        InputRefused: it is empty, longer than ``THREAD_ID_MAX`` or has a character outside the pattern.
    """
    if not thread_id:
        raise InputRefused("thread id: empty")
    if len(thread_id) > THREAD_ID_MAX:
        raise InputRefused(f"thread id: {len(thread_id)} characters; the limit is {THREAD_ID_MAX}")
    if not THREAD_ID_PATTERN.fullmatch(thread_id):
        raise InputRefused(
            "thread id: use letters, digits and . _ : @ + - only, starting with a letter or digit "
            f"(at most {THREAD_ID_MAX} characters)"
        )
    return thread_id


def store_label(thread_id: str) -> str:
    """``thread_id`` as one label of a LangGraph store namespace, which may not contain a dot.

    Ids without ``.`` or ``%`` (every id the project generates) are unchanged, so existing
    transcripts keep their namespace.
    """
    return thread_id.replace("%", "%25").replace(".", "%2E")
