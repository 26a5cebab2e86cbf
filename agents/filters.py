"""Ready input filters: how much of the history a receiver sees (``Handoff.input_filter``,
``ContextPolicy.input_filter``), like the OpenAI Agents SDK's ``handoff_filters``.

A filter is any callable from the history to the history the receiver sees instead; these are the
common ones. The case file and the briefing are not part of the history: they always reach the
receiver, so a filter can drop the conversation without losing what was learnt.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from handoff.agents.spec import InputFilter


def remove_all_tools(history: list[BaseMessage]) -> list[BaseMessage]:
    """Without tool calls and tool results: only what the user and the agents said."""
    kept: list[BaseMessage] = []
    for message in history:
        if isinstance(message, ToolMessage):
            continue
        if isinstance(message, AIMessage) and message.tool_calls:
            if not message.text.strip():
                continue
            message = AIMessage(content=message.content, name=message.name, id=message.id)
        kept.append(message)
    return kept


def user_messages_only(history: list[BaseMessage]) -> list[BaseMessage]:
    """Only the user's own messages: a receiver that must not be steered by the previous agent."""
    return [m for m in history if isinstance(m, HumanMessage)]


def last_messages(count: int) -> InputFilter:
    """The last ``count`` messages (a tool result whose call was cut is dropped with it)."""
    if count < 1:
        raise ValueError(f"last_messages needs a count of at least 1, not {count}")

    def keep_last(history: list[BaseMessage]) -> Sequence[BaseMessage]:
        return history[-count:]

    keep_last.__name__ = f"last_{count}_messages"
    return keep_last
