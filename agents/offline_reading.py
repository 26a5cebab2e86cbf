"""What the offline model reads from a prompt: who it is, the case file, the turn so far, the tools.

Everything comes from what a real model is sent (the system prompt, the messages, the bound tools),
so the offline model knows nothing a real model would not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from handoff.agents.offline_cache import DESCRIPTIONS, memo
from handoff.agents.prompt_markers import (
    BRIEFING_MARKER,
    CASE_FILE_MARKER,
    JUST_RECEIVED,
    NOTICE_MARKER,
    TOPICS_MARKER,
)
from handoff.agents.tool_calling_fake import agent_of, system_text

TRANSFER_PREFIX = "transfer_to_"
_FIRST_SENTENCE_END = re.compile(r"(?<=\.)\s|\n|Use when:")
HAND_TO = re.compile(r"^Hand the conversation to (?P<title>[^:]+):\s*(?P<description>.*?)(?:\s+Topics:.*)?$", re.S)


@dataclass(frozen=True)
class Exchange:
    """One earlier user message and this agent's final reply to it (None if another agent answered)."""

    user: str
    reply: str | None


@dataclass(frozen=True)
class Reading:
    """The prompt, read."""

    me: str
    system: str
    case: dict[str, Any]
    briefing: str
    notice: str
    just_received: bool
    user: str
    history: str
    """Every user message the prompt shows, this one last."""
    exchanges: tuple[Exchange, ...]
    """Earlier user messages of the visible window, oldest first, each with this agent's reply."""
    own: tuple[dict[str, Any], ...]
    transfers: tuple[dict[str, Any], ...]
    my_calls: tuple[dict[str, Any], ...]
    results: dict[str, ToolMessage] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.me.replace("_", " ").title() or "Assistant"

    @property
    def topics(self) -> str:
        return line_after(self.system, TOPICS_MARKER)

    @property
    def instructions(self) -> str:
        return self.system.split("\n", 1)[0].strip()

    @property
    def called(self) -> set[str]:
        return {c["name"] for c in self.my_calls}

    @property
    def transferred(self) -> bool:
        return any(c["name"].startswith(TRANSFER_PREFIX) for c in self.my_calls)

    @property
    def handed_request(self) -> str:
        """What the colleague who just handed over was asked (the briefing's summary), or ''."""
        if not self.just_received:
            return ""
        return next((p.removeprefix("Summary: ") for p in self.briefing.split(" | ") if p.startswith("Summary: ")), "")

    def result_of(self, call: dict[str, Any]) -> str | None:
        message = self.results.get(call["id"])
        return None if message is None else str(message.content)

    def tool_texts(self) -> list[str]:
        """This turn's own tool results, in call order."""
        return [text for c in self.my_calls if not c["name"].startswith(TRANSFER_PREFIX)
                and (text := self.result_of(c)) is not None]


def read(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Reading:
    """Read a prompt the way the offline model uses it."""
    system = system_text(messages)
    me = agent_of(system)
    human_at = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    user = str(messages[human_at].content) if human_at >= 0 else ""
    this_turn = messages[human_at + 1:]
    mine = [m for m in this_turn if isinstance(m, AIMessage) and (m.name or "") == me]
    return Reading(
        me=me,
        system=system,
        case=case_file(system),
        briefing=line_after(system, BRIEFING_MARKER),
        notice=line_after(system, NOTICE_MARKER),
        just_received=JUST_RECEIVED in system,
        user=user,
        history=" ".join(str(m.content) for m in messages if isinstance(m, HumanMessage)),
        exchanges=_exchanges(messages[: max(human_at, 0)], me),
        own=tuple(t for t in tools if not t["name"].startswith(TRANSFER_PREFIX)),
        transfers=tuple(t for t in tools if t["name"].startswith(TRANSFER_PREFIX)),
        my_calls=tuple(tc for m in mine for tc in m.tool_calls),
        results={m.tool_call_id: m for m in this_turn if isinstance(m, ToolMessage)},
    )


def _exchanges(earlier: Sequence[BaseMessage], me: str) -> tuple[Exchange, ...]:
    out: list[Exchange] = []
    for i, m in enumerate(earlier):
        if not isinstance(m, HumanMessage):
            continue
        reply = None
        for later in earlier[i + 1:]:
            if isinstance(later, HumanMessage):
                break
            if isinstance(later, AIMessage) and not later.tool_calls and later.content:
                reply = str(later.content) if (later.name or "") == me else None
        out.append(Exchange(user=str(m.content), reply=reply))
    return tuple(out)


def target_of(tool: dict[str, Any]) -> str:
    """The agent a transfer tool hands to."""
    return tool["name"][len(TRANSFER_PREFIX):]


def title_of(tool: dict[str, Any]) -> str:
    """The human title of a transfer tool's receiver ("Technical Specialist")."""
    title = _title(tool.get("description", ""))
    return title if title is not None else target_of(tool).replace("_", " ").title()


def description_of(tool: dict[str, Any]) -> str:
    """What a transfer tool's receiver handles, or an own tool's first sentence."""
    return _described(tool.get("description", ""))


def hint(tool: dict[str, Any], marker: str) -> str:
    return _hint(tool.get("description", ""), marker)


# A tool's description is the same string on every call of every turn: read once, keyed by its text.
@memo(DESCRIPTIONS)
def _title(description: str) -> str | None:
    found = HAND_TO.match(description)
    return found.group("title").strip() if found else None


@memo(DESCRIPTIONS)
def _described(description: str) -> str:
    found = HAND_TO.match(description)
    if found:
        return found.group("description").strip()
    return _FIRST_SENTENCE_END.split(description, maxsplit=1)[0].strip()


@memo(DESCRIPTIONS)
def _hint(description: str, marker: str) -> str:
    return line_after(description, marker)


def line_after(text: str, marker: str) -> str:
    at = text.find(marker)
    if at < 0:
        return ""
    return text[at + len(marker):].split("\n", 1)[0].strip()


def case_file(system: str) -> dict[str, Any]:
    raw = line_after(system, CASE_FILE_MARKER)
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
