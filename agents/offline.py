"""The offline model: deterministic, labelled, and tool-calling like a real one.

It needs no key and no network. It reads the same system prompt, messages and
bound tools a real model gets, and decides by plain rules:

1. call its own tools whose "Use when:" words appear in the user's message,
   filling arguments from the case file and the conversation;
2. hand off with a ``transfer_to_<agent>`` tool when the user's words match
   that agent's topics better than its own;
3. otherwise answer, saying plainly that the answer comes from the offline
   model and reporting what its tools returned.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult

from handoff.agents.prompt_markers import (
    BRIEFING_MARKER,
    CASE_FILE_MARKER,
    JUST_RECEIVED,
    TOPICS_MARKER,
)
from handoff.agents.tool_calling_fake import ToolCallingFakeModel, agent_of, system_text

OFFLINE_LABEL = "[offline model]"
TRANSFER_PREFIX = "transfer_to_"
ID_TOKEN = re.compile(r"\b([A-Z]{2,5})-(\d{2,})\b")
NUMBER = re.compile(r"(?<![\w-])\$?(\d+(?:\.\d+)?)")


class OfflineChatModel(ToolCallingFakeModel):
    """A deterministic stand-in for a chat model that says what it is."""

    label: ClassVar[str] = OFFLINE_LABEL

    @property
    def _llm_type(self) -> str:
        return "handoff-offline"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = decide(messages, [t["function"] for t in tools or []])
        prompt_tokens = count_tokens_approximately(messages)
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": count_tokens_approximately([message]),
            "total_tokens": prompt_tokens + count_tokens_approximately([message]),
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


def decide(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage:
    """The offline model's whole policy, as a pure function."""
    system = system_text(messages)
    me = agent_of(system)
    case = _case_file(system)
    human_at = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    user = str(messages[human_at].content) if human_at >= 0 else ""
    history = " ".join(str(m.content) for m in messages if isinstance(m, HumanMessage))
    this_turn = messages[human_at + 1 :]
    mine = [m for m in this_turn if isinstance(m, AIMessage) and (m.name or "") == me]
    called = {tc["name"] for m in mine for tc in m.tool_calls}
    results = {m.tool_call_id: m for m in this_turn if isinstance(m, ToolMessage)}
    my_calls = [tc for m in mine for tc in m.tool_calls]

    transfers = [t for t in tools if t["name"].startswith(TRANSFER_PREFIX)]
    own = [t for t in tools if not t["name"].startswith(TRANSFER_PREFIX)]

    if not any(c["name"].startswith(TRANSFER_PREFIX) for c in my_calls):
        wanted = [
            t for t in own if t["name"] not in called and _matches(_hint(t, "Use when:"), user)
        ]
        calls = [c for t in wanted if (c := _call(t, case, user, history)) is not None]
        if calls:
            return AIMessage(content="", tool_calls=calls, name=me or None)

        own_score = len(_matches(_line_after(system, TOPICS_MARKER), user))
        scored = [(len(_matches(_hint(t, "Topics:"), user)), t) for t in transfers]
        best = max(scored, key=lambda s: s[0], default=(0, None))
        if best[1] is not None and best[0] > own_score:
            words = ", ".join(_matches(_hint(best[1], "Topics:"), user))
            call = _call(best[1], case, user, history, reason=f"The request is about {words}.")
            if call is not None:
                return AIMessage(content="", tool_calls=[call], name=me or None)

    handed_over = JUST_RECEIVED in system
    text = _answer(system, me, handed_over, user, case, my_calls, results)
    return AIMessage(content=text, name=me or None)


def _answer(
    system: str,
    me: str,
    handed_over: bool,
    user: str,
    case: dict[str, Any],
    my_calls: list[dict[str, Any]],
    results: dict[str, ToolMessage],
) -> str:
    title = me.replace("_", " ").title() or "Assistant"
    parts = [f"{OFFLINE_LABEL} {title} here (deterministic offline model, no LLM was called)."]
    briefing = _line_after(system, BRIEFING_MARKER)
    if briefing and handed_over:
        pieces = briefing.split(" | ")
        kept = [pieces[0], *(p for p in pieces[1:] if p.startswith("On arrival"))]
        parts.append(f"I have taken over. {' '.join(p.rstrip('.') + '.' for p in kept)}")
    for call in my_calls:
        result = results.get(call["id"])
        if result is None:
            continue
        if call["name"].startswith(TRANSFER_PREFIX):
            parts.append(f"The handoff was refused: {result.content}")
        else:
            parts.append(f"{call['name']} says: {result.content}")
    if not my_calls:
        parts.append(f"You said: {user[:200]!r}.")
        facts = ", ".join(f"{k}={v}" for k, v in case.items() if v not in (None, "", []))
        if facts:
            parts.append(f"On file: {facts}.")
    return " ".join(parts)


def _call(
    tool: dict[str, Any],
    case: dict[str, Any],
    user: str,
    history: str,
    reason: str | None = None,
) -> dict[str, Any] | None:
    """A tool call with every required argument filled, or None if one cannot be."""
    params = tool.get("parameters", {})
    args: dict[str, Any] = {}
    required = set(params.get("required", []))
    for name, schema in params.get("properties", {}).items():
        value = _fill(name, schema, case, user, history, reason, free_text=name in required)
        if value is not None:
            args[name] = value
    if any(r not in args for r in params.get("required", [])):
        return None
    digest = hashlib.sha1(f"{tool['name']}|{user}|{sorted(args.items())}".encode()).hexdigest()
    call_id = f"offline_{digest[:12]}"
    return {"name": tool["name"], "args": args, "id": call_id, "type": "tool_call"}


def _fill(
    name: str,
    schema: dict[str, Any],
    case: dict[str, Any],
    user: str,
    history: str,
    reason: str | None,
    *,
    free_text: bool,
) -> Any:
    """A value for one argument. Free text (the user's words) fills only required
    fields; optional ones come from the case file, a pattern or an id token."""
    kind = schema.get("type") or next(
        (s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), "string"
    )
    if name == "reason" and reason:
        return reason
    if name == "summary":
        return f"User said: {user[:300]}"
    if case.get(name) not in (None, "", []):
        return case[name]
    pattern = schema.get("pattern") or next(
        (s["pattern"] for s in schema.get("anyOf", []) if s.get("pattern")), None
    )
    if pattern:
        pattern = pattern.lstrip("^").rstrip("$")
        found = re.search(rf"\b{pattern}\b", user) or re.search(rf"\b{pattern}\b", history)
        return found.group(0) if found else None
    if name.endswith("_id"):
        prefix = name[:3].upper()
        for text in (user, history):
            for token_prefix, digits in ID_TOKEN.findall(text):
                if token_prefix.startswith(prefix):
                    return f"{token_prefix}-{digits}"
        return None
    if not free_text:
        return None
    if kind in ("number", "integer"):
        found = NUMBER.search(user)
        if not found:
            return None
        return float(found.group(1)) if kind == "number" else int(float(found.group(1)))
    if kind == "boolean":
        return None
    if kind == "array":
        return [user[:200]]
    if kind == "string" and "enum" not in schema:
        return user[:300]
    return None


def _hint(tool: dict[str, Any], marker: str) -> str:
    return _line_after(tool.get("description", ""), marker)


def _line_after(text: str, marker: str) -> str:
    at = text.find(marker)
    if at < 0:
        return ""
    return text[at + len(marker) :].split("\n", 1)[0].strip()


def _matches(words_line: str, text: str) -> list[str]:
    words = [w.strip().lower() for w in words_line.split(",") if w.strip()]
    lowered = text.lower()
    return [w for w in words if re.search(rf"\b{re.escape(w)}", lowered)]


def _case_file(system: str) -> dict[str, Any]:
    raw = _line_after(system, CASE_FILE_MARKER)
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
