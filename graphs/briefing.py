"""What a model sees: its system prompt, the briefing, and a bounded history.

The case file and the handoff briefing are always in the system prompt and
are never trimmed; only transcript messages are cut to fit the agent's token
budget, and they are cut so that every tool call keeps its result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from agents.prompt_markers import (
    AGENT_MARKER,
    BRIEFING_MARKER,
    CASE_FILE_MARKER,
    EARLIER_MARKER,
    JUST_RECEIVED,
    TOPICS_MARKER,
)
from agents.spec import AgentSpec, HandoffPayload
from state import HandoffRequest, InitResult

EARLIER_MESSAGES = 16
EARLIER_CHARS = 700


def system_prompt(
    spec: AgentSpec,
    *,
    targets: dict[str, AgentSpec],
    case_file: dict[str, Any],
    briefing: str | None,
    just_received: bool = False,
    earlier: Sequence[BaseMessage] = (),
) -> str:
    """The agent's instructions plus everything it must know, never trimmed."""
    lines = [spec.instructions, "", f"{AGENT_MARKER} {spec.name}", f"You are {spec.title}."]
    if spec.topics:
        lines.append(f"{TOPICS_MARKER} {', '.join(spec.topics)}")
    if targets:
        lines.append("You may hand the conversation to: " + "; ".join(
            f"{t.title} (tool {t.transfer_tool_name}): {t.description}" for t in targets.values()
        ))
        lines.append("To hand over, call the transfer tool; saying so in text does nothing.")
    facts = {k: v for k, v in case_file.items() if v not in (None, "", [])}
    lines.append(f"{CASE_FILE_MARKER} {json.dumps(facts, sort_keys=True, default=str)}")
    if briefing:
        lines.append(f"{BRIEFING_MARKER} {briefing}")
        if just_received:
            lines.append(JUST_RECEIVED)
    if earlier:
        lines.append(f"{EARLIER_MARKER} {summarise(earlier)}")
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
    """A short extractive summary of earlier turns; no model call."""
    bits: list[str] = []
    for m in messages:
        text = str(m.content).strip().replace("\n", " ")
        if not text or isinstance(m, ToolMessage):
            continue
        who = "user" if isinstance(m, HumanMessage) else (m.name or "agent")
        bits.append(f"{who}: {text[:120]}")
    summary = " / ".join(bits)
    return summary[-EARLIER_CHARS:]


def visible_history(spec: AgentSpec, messages: Sequence[BaseMessage], budget: int) -> list[BaseMessage]:
    """The transcript window this agent sees under its context policy and budget."""
    history = list(messages)
    if spec.context.mode != "full":
        history = history[-spec.context.last_messages :]
    if spec.context.mode == "filtered":
        history = _without_foreign_tool_chatter(spec.name, history)
    history = ensure_paired(history)
    trimmed = trim_messages(
        history,
        max_tokens=max(budget, 1),
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    if not trimmed:
        last_human = next((m for m in reversed(history) if isinstance(m, HumanMessage)), None)
        trimmed = [_clip(last_human, budget)] if last_human else []
    return ensure_paired(trimmed)


def build_prompt(
    spec: AgentSpec,
    *,
    targets: dict[str, AgentSpec],
    state: dict[str, Any],
    earlier: Sequence[BaseMessage] = (),
) -> list[BaseMessage]:
    """System prompt plus the visible history, within the agent's token budget."""
    system = SystemMessage(system_prompt(
        spec, targets=targets, case_file=state.get("case_file") or {},
        briefing=state.get("briefing"), just_received=bool(state.get("receiving")),
        earlier=earlier,
    ))
    left = spec.context.token_budget - count_tokens_approximately([system])
    return [system, *visible_history(spec, state.get("messages") or [], left)]


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


def _without_foreign_tool_chatter(me: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
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


def _clip(message: BaseMessage, budget: int) -> BaseMessage:
    limit = max(budget, 16) * 4
    text = str(message.content)
    if len(text) <= limit:
        return message
    return message.model_copy(update={"content": text[:limit] + " [...]"})
