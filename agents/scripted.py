"""A scripted chat model for tests, benchmarks and notebooks.

Each agent (read from the system prompt's AGENT line) gets its own queue of
replies; every call's prompt and bound tools are recorded for assertions.
A reply may be an AIMessage, a string, or a callable ``(messages) -> AIMessage``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, PrivateAttr

from handoff.agents.tool_calling_fake import ToolCallingFakeModel, agent_of, system_text

Reply = AIMessage | str | Callable[[Sequence[BaseMessage]], AIMessage]


class ScriptExhausted(RuntimeError):
    """The script has no reply left for this agent."""


def tool_call(name: str, args: Mapping[str, Any] | None = None, call_id: str | None = None) -> dict[str, Any]:
    """A tool call dict for an AIMessage."""
    return {"name": name, "args": dict(args or {}), "id": call_id or f"call_{name}", "type": "tool_call"}


def calls(*tool_calls: dict[str, Any], content: str = "") -> AIMessage:
    """An AIMessage that makes these tool calls."""
    return AIMessage(content=content, tool_calls=list(tool_calls))


class ScriptedChatModel(ToolCallingFakeModel):
    """Replies from per-agent scripts; ``default`` answers when an agent has none."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scripts: dict[str, list[Any]] = {}
    default: Any = None
    _queues: dict[str, deque] = PrivateAttr(default_factory=dict)
    _calls: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def model_post_init(self, _: Any) -> None:
        self._queues = defaultdict(deque, {k: deque(v) for k, v in self.scripts.items()})

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every call so far: {'agent', 'messages', 'tools'}."""
        return self._calls

    def calls_by(self, agent: str) -> list[dict[str, Any]]:
        return [c for c in self._calls if c["agent"] == agent]

    def add(self, agent: str, replies: Iterable[Reply]) -> None:
        self._queues[agent].extend(replies)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        agent = agent_of(system_text(messages))
        self._calls.append({"agent": agent, "messages": list(messages),
                            "tools": [t["function"]["name"] for t in tools or []]})
        queue = self._queues[agent]
        if queue:
            reply = queue.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            raise ScriptExhausted(f"no scripted reply left for agent {agent!r}")
        if callable(reply) and not isinstance(reply, AIMessage):
            reply = reply(messages)
        if isinstance(reply, Exception):
            raise reply
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply))
        message = message.model_copy(update={"usage_metadata": {
            "input_tokens": count_tokens_approximately(messages), "output_tokens": 1,
            "total_tokens": count_tokens_approximately(messages) + 1}})
        return ChatResult(generations=[ChatGeneration(message=message)])
