"""What the offline and the scripted models share: tool binding like a real chat model,
and reading which agent a prompt is for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from handoff.agents.prompt_markers import AGENT_MARKER


class ToolCallingFakeModel(BaseChatModel):
    """A local chat model that receives bound tools as OpenAI tool schemas in ``tools``."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:  # type: ignore[override]
        kwargs.pop("tool_choice", None)
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def system_text(messages: Sequence[BaseMessage]) -> str:
    """The first system message's text, or ''."""
    return next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")


def agent_of(system: str) -> str:
    """The agent a system prompt was written for (its AGENT line), or ''."""
    at = system.find(AGENT_MARKER)
    if at < 0:
        return ""
    return system[at + len(AGENT_MARKER):].split("\n", 1)[0].strip()
