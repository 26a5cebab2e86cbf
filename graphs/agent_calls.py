"""What an agent's turn asks for, and the two drivers that carry it out.

The turn (graphs/agent_node.py) is a generator: it yields a ``ModelCall`` or a
``ToolCall`` and is sent the result. ``drive`` makes the calls with
``invoke`` (``graph.stream``), ``adrive`` with ``await ainvoke``
(``graph.astream``), so the turn's logic is written once.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from handoff.agents.tooling import CONTEXT_ARG, ToolContext


@dataclass(frozen=True)
class ModelCall:
    """One model call the turn asks for; the node's sync or async driver makes it."""

    runnable: Runnable
    prompt: list[BaseMessage]

    def run(self) -> BaseMessage:
        return self.runnable.invoke(self.prompt)

    async def arun(self) -> BaseMessage:
        return await self.runnable.ainvoke(self.prompt)


@dataclass(frozen=True)
class ToolCall:
    """One call of the agent's own tool, with the trusted context injected."""

    tool: BaseTool
    call: dict[str, Any]
    ctx: ToolContext

    def run(self) -> tuple[ToolMessage, dict[str, Any]]:
        try:
            message = self.tool.invoke(tool_input(self.tool, self.call, self.ctx))
        except Exception as exc:  # a tool error is shown to the model, not raised
            return tool_note(self.call, f"error: {type(exc).__name__}: {exc}"), {}
        return tool_result(message)

    async def arun(self) -> tuple[ToolMessage, dict[str, Any]]:
        try:
            message = await self.tool.ainvoke(tool_input(self.tool, self.call, self.ctx))
        except Exception as exc:
            return tool_note(self.call, f"error: {type(exc).__name__}: {exc}"), {}
        return tool_result(message)


Steps = Generator[ModelCall | ToolCall, Any, dict[str, Any]]
"""A turn written once: it yields the calls it needs and is sent their results."""


def drive(steps: Steps) -> dict[str, Any]:
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = call.run()


async def adrive(steps: Steps) -> dict[str, Any]:
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = await call.arun()


def tool_input(tool: BaseTool, call: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    args = dict(call["args"])
    args.pop(CONTEXT_ARG, None)  # a model may not forge the trusted context
    if CONTEXT_ARG in tool._injected_args_keys:  # langchain's own marker for injected args
        args[CONTEXT_ARG] = ctx
    return {**call, "args": args, "type": "tool_call"}


def tool_result(message: ToolMessage) -> tuple[ToolMessage, dict[str, Any]]:
    artifact = getattr(message, "artifact", None)
    return message, artifact if isinstance(artifact, dict) else {}


def tool_note(call: dict[str, Any], text: str) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error")
