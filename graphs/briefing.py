"""What a model sees: its system prompt, the briefing, and a bounded history.

The case file and the handoff briefing are always in the system prompt and
are never trimmed; only transcript messages are cut to fit the agent's token
budget. They are cut a whole user turn at a time (a tool call and its result
always sit in one turn), oldest first, so every tool call keeps its result;
what is cut is summarised in one line, without a model call. The current turn
is always shown; if it alone is too long, its longest texts are shortened.

The budget covers everything sent to the model: system prompt, history, the
messages this agent produced earlier in the same turn (``current``), and a
reserve for tool results when the agent has tools. It can only be exceeded
when the system prompt itself (instructions, case file, briefing) is larger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, Protocol

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately

from handoff.agents.prompt_markers import (
    AGENT_MARKER,
    BRIEFING_MARKER,
    CASE_FILE_MARKER,
    EARLIER_MARKER,
    JUST_RECEIVED,
    NOTICE_MARKER,
    TOPICS_MARKER,
)
from handoff.agents.spec import AgentSpec, HandoffPayload, InputFilter
from handoff.graphs.journal import HUMAN_TYPES
from handoff.state import HandoffRequest, InitResult

EARLIER_MESSAGES = 16
"""How many messages before the state's window the agent node reads from the journal."""
EARLIER_CHARS = 700
"""Longest summary of the messages the agent does not see in full."""
TOOL_RESERVE = 0.2
"""Share of the budget kept free for this turn's tool calls and results (agents with tools).
Results beyond it push older turns out, up to half the budget; past that they are shortened."""
MIN_CLIP_CHARS = 200
"""A shortened message keeps at least this many characters."""
CLIPPED = " [...]"


class StoredMessages(Protocol):
    """Messages as the journal stores them (``{"type": ..., "data": {...}}``), newest first: the
    earlier messages an agent node hands ``build_prompt`` without making message objects of them
    (graphs/journal.py, ``StoredTail``)."""

    def __bool__(self) -> bool: ...

    def newest_first(self) -> Iterator[dict[str, Any]]: ...


Earlier = Sequence[BaseMessage] | StoredMessages
"""Messages from before the state's window: message objects, or the journal's stored ones."""

Said = tuple[str, str]
"""One message as the summary shows it: who said it, and its text on one line."""

UNSHOWN_TYPES = frozenset({"tool", "system", "ToolMessageChunk", "SystemMessageChunk"})
OTHER_TYPES = frozenset({"ai", "chat", "function", "remove", "AIMessageChunk", "FunctionMessageChunk",
                         "ChatMessageChunk"})
"""Stored message types (``messages_to_dict``'s ``type``) by how the summary shows them: as the user's
(``HUMAN_TYPES``), not at all (tool results and system text, as ``summarise`` skips them), or as the
agent's."""


def prompt_tokens(messages: Sequence[BaseMessage]) -> int:
    """The token estimate every budget in this project is checked with."""
    return count_tokens_approximately(messages)


def system_prompt(
    spec: AgentSpec,
    *,
    targets: dict[str, AgentSpec],
    case_file: dict[str, Any],
    briefing: str | None,
    just_received: bool = False,
    notice: str | None = None,
    earlier: Sequence[BaseMessage] | str = (),
    tool_names: Mapping[str, str] | None = None,
) -> str:
    """The agent's instructions plus everything it must know, never trimmed.

    Args:
        spec: The agent.
        targets: The agents it may hand to.
        case_file: Every known fact; all of them are rendered.
        briefing: What the agent was told when it received the conversation.
        just_received: Whether this is the receiver's first answer after the handoff.
        notice: A note from the gate, e.g. why the agent's last handoff was refused.
        earlier: Messages to summarise, or a ready summary.
        tool_names: The transfer tool's name per target, where the agent's ``Handoff`` overrides it.
    """
    lines = [spec.instructions, "", f"{AGENT_MARKER} {spec.name}", f"You are {spec.title}."]
    if spec.topics:
        lines.append(f"{TOPICS_MARKER} {', '.join(spec.topics)}")
    if targets:
        lines.append("You may hand the conversation to: " + "; ".join(
            f"{t.title} (tool {(tool_names or {}).get(t.name, t.transfer_tool_name)}): {t.description}"
            for t in targets.values()
        ))
        lines.append("To hand over, call the transfer tool; saying so in text does nothing.")
    facts = {k: v for k, v in case_file.items() if v not in (None, "", [])}
    lines.append(f"{CASE_FILE_MARKER} {json.dumps(facts, sort_keys=True, default=str)}")
    if briefing:
        lines.append(f"{BRIEFING_MARKER} {briefing}")
        if just_received:
            lines.append(JUST_RECEIVED)
    if notice:
        lines.append(f"{NOTICE_MARKER} {notice}")
    summary = earlier if isinstance(earlier, str) else summarise(earlier)
    if summary:
        lines.append(f"{EARLIER_MARKER} {summary}")
    return "\n".join(lines)


def briefing_text(
    request: HandoffRequest, payload: HandoffPayload, init: InitResult | None, source_title: str
) -> str:
    """One paragraph for the receiver: who sent it, why, the payload, what init found."""
    extra = {k: v for k, v in payload.model_dump(mode="json").items()
             if k not in ("reason", "summary") and v not in (None, "")}
    parts = [f"From {source_title} ({request.trigger} handoff): {payload.reason}"]
    if payload.summary:
        parts.append(f"Summary: {payload.summary}")
    if extra:
        parts.append(f"Details: {json.dumps(extra, sort_keys=True)}")
    if init:
        parts.append(f"On arrival ({init.action}): {init.summary}")
    return " | ".join(parts)


def summarise(messages: Sequence[BaseMessage]) -> str:
    """A short extractive summary of earlier turns, newest kept first; no model call."""
    return summary_of(said(m) for m in reversed(messages))


def said(message: BaseMessage) -> Said | None:
    """How ``summarise`` shows a message (None: not at all)."""
    text = str(message.content).strip().replace("\n", " ")
    if not text or isinstance(message, ToolMessage | SystemMessage):
        return None
    return "user" if isinstance(message, HumanMessage) else (message.name or "agent"), text


def said_stored(item: dict[str, Any]) -> Said | None:
    """``said`` of a stored message, read from the journal's item without making the message object.

    Raises:
        ValueError: an unknown message type, as ``messages_from_dict`` raises for it.
    """
    kind, data = item["type"], item["data"]
    if kind not in HUMAN_TYPES and kind not in OTHER_TYPES:
        if kind in UNSHOWN_TYPES:
            return None
        raise ValueError(f"Got unexpected message type: {kind}")
    text = str(data.get("content", "")).strip().replace("\n", " ")
    if not text:
        return None
    return "user" if kind in HUMAN_TYPES else (data.get("name") or "agent"), text


def newest_first(earlier: Earlier) -> Iterator[Said | None]:
    """``earlier`` as ``said`` shows it, newest first (a stored message is read only when reached)."""
    if isinstance(earlier, Sequence):
        return (said(m) for m in reversed(earlier))
    return (said_stored(item) for item in earlier.newest_first())


def summary_of(messages: Iterable[Said | None]) -> str:
    """``summarise``'s text from the messages as shown, newest first; read only as far as it keeps."""
    bits: list[str] = []
    size = 0
    for shown in messages:
        if shown is None:
            continue
        who, text = shown
        bit = f"{who}: {text[:120]}"
        if size + len(bit) + 3 > EARLIER_CHARS:
            break
        bits.append(bit)
        size += len(bit) + 3
    return " / ".join(reversed(bits))


def build_prompt(
    spec: AgentSpec,
    *,
    targets: dict[str, AgentSpec],
    state: dict[str, Any],
    earlier: Earlier = (),
    current: Sequence[BaseMessage] = (),
    input_filter: InputFilter | None = None,
) -> list[BaseMessage]:
    """System prompt plus the visible history, within the agent's token budget.

    Args:
        spec: The agent about to be called; its context policy and budget apply.
        targets: The agents it may hand to.
        state: The graph state (window, case file, briefing, notice).
        earlier: Journal messages from before the state's window, for the summary: message objects, or
            the journal's stored items (read only as far as the summary goes).
        current: What this agent already produced in this turn (tool calls and
            results of earlier rounds). When given, they are returned at the end
            of the prompt, inside the budget; when not, the caller appends them
            and only the tool reserve keeps the total within the budget.
        input_filter: Shapes the history before the budget applies (the handoff's own filter, or the
            agent's ``ContextPolicy.input_filter``); this turn's own messages are never filtered.
    """
    budget = spec.context.token_budget
    brief = {
        "targets": targets,
        "case_file": state.get("case_file") or {},
        "briefing": state.get("briefing"),
        "just_received": bool(state.get("receiving")),
        "notice": state.get("notice"),
        "tool_names": {t: spec.tool_name_for(t) for t in targets},
    }
    fixed = prompt_tokens([SystemMessage(system_prompt(spec, **brief))])
    own_turn = list(current)
    reserve = min(max(prompt_tokens(own_turn) if own_turn else 0,
                      int(budget * TOOL_RESERVE) if spec.tools else 0), budget // 2)
    turns = split_turns(policy_view(spec, state.get("messages") or [], input_filter))
    older, latest = turns[:-1], (turns[-1] if turns else [])
    may_hide = bool(older) or bool(earlier)  # older first: it needs no read of the journal
    room = budget - fixed - reserve - (_summary_tokens() if may_hide else 0)

    latest = fit(latest, room)
    room -= prompt_tokens(latest) if latest else 0
    kept: list[list[BaseMessage]] = []
    count = len(latest)
    for turn in reversed(older):
        if spec.context.mode != "full" and count + len(turn) > spec.context.last_messages:
            break
        size = prompt_tokens(turn)
        if size > room:
            break
        kept.insert(0, turn)
        room -= size
        count += len(turn)
    hidden = [m for turn in older[: len(older) - len(kept)] for m in turn]

    summary = summary_of(chain((said(m) for m in reversed(hidden)), newest_first(earlier)))
    system = SystemMessage(system_prompt(spec, **brief, earlier=summary))
    history = ensure_paired([*(m for turn in kept for m in turn), *latest])
    if own_turn:
        spare = budget - prompt_tokens([system, *history])
        own_turn = fit(ensure_paired(own_turn), spare)
    return [system, *history, *own_turn]


def policy_view(spec: AgentSpec, messages: Sequence[BaseMessage],
                input_filter: InputFilter | None = None) -> list[BaseMessage]:
    """The window as the agent's context policy (and input filter) shows it, before the budget applies.

    Raises:
        InputFilterError: the filter failed or did not return a list of messages.
    """
    history = list(messages)
    if spec.context.mode == "filtered":
        history = without_foreign_tool_chatter(spec.name, history)
    chosen = input_filter or spec.context.input_filter
    if chosen is not None:
        history = run_filter(chosen, history)
    return ensure_paired(history)


class InputFilterError(ValueError):
    """An input filter raised, or returned something other than a sequence of messages."""


def run_filter(chosen: InputFilter, history: list[BaseMessage]) -> list[BaseMessage]:
    name = getattr(chosen, "__name__", type(chosen).__name__)
    try:
        # Copies: a filter that redacts in place must change the view, not the stored conversation.
        shaped = chosen([m.model_copy(deep=True) for m in history])
    except Exception as exc:
        raise InputFilterError(f"input filter {name} failed: {type(exc).__name__}") from exc
    if isinstance(shaped, str | bytes) or not isinstance(shaped, Sequence) \
            or not all(isinstance(m, BaseMessage) for m in shaped):
        raise InputFilterError(f"input filter {name} must return a list of messages, "
                               f"not {type(shaped).__name__}")
    return list(shaped)


def split_turns(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    """Messages grouped into user turns: each starts at a HumanMessage."""
    turns: list[list[BaseMessage]] = []
    for m in messages:
        if isinstance(m, HumanMessage) or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


def fit(messages: Sequence[BaseMessage], room: int) -> list[BaseMessage]:
    """Shorten the longest texts until ``messages`` fit ``room`` tokens; nothing is dropped.

    No text is cut below ``MIN_CLIP_CHARS``, so with very little room the result
    can stay over it; ``build_prompt`` leaves enough room for that not to happen.
    """
    out = list(messages)
    over = prompt_tokens(out) - room if out else 0
    while over > 0:
        clippable = [i for i, m in enumerate(out) if _text_len(m) > MIN_CLIP_CHARS + len(CLIPPED)]
        if not clippable:
            break
        longest = max(clippable, key=lambda i: _text_len(out[i]))
        text = str(out[longest].content)
        keep = max(MIN_CLIP_CHARS, len(text) - over * 4 - len(CLIPPED) - 8)
        out[longest] = out[longest].model_copy(update={"content": text[:keep] + CLIPPED})
        over = prompt_tokens(out) - room
    return out


def ensure_paired(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Drop tool results with no call before them and tool calls with no result after."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    called: set[str] = set()
    out: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            keep = [tc for tc in m.tool_calls if tc["id"] in answered]
            if len(keep) != len(m.tool_calls):
                if not keep and not m.content:
                    continue
                m = m.model_copy(update={"tool_calls": keep})
            called.update(tc["id"] for tc in keep)
        elif isinstance(m, ToolMessage) and m.tool_call_id not in called:
            continue
        out.append(m)
    return out


def without_foreign_tool_chatter(me: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Other agents' tool calls and tool results removed; their words to the user kept."""
    foreign_calls: set[str] = set()
    out: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls and (m.name or "") != me:
            foreign_calls.update(tc["id"] for tc in m.tool_calls)
            if m.content:
                out.append(AIMessage(content=m.content, name=m.name, id=m.id))
            continue
        if isinstance(m, ToolMessage) and m.tool_call_id in foreign_calls:
            continue
        out.append(m)
    return out


def _summary_tokens() -> int:
    return (len(EARLIER_MARKER) + EARLIER_CHARS + 2) // 4 + 1


def _text_len(message: BaseMessage) -> int:
    return len(message.content) if isinstance(message.content, str) else 0
