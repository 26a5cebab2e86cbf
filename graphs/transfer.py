"""Transfer tools: how an agent asks for a handoff with a typed payload."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from agents.offline import TRANSFER_PREFIX
from agents.spec import AgentSpec
from state import HandoffRequest

__all__ = ["TRANSFER_PREFIX", "make_transfer_tool", "request_from_call"]


def make_transfer_tool(receiver: AgentSpec) -> BaseTool:
    """A ``transfer_to_<receiver>`` tool whose arguments are the receiver's payload schema.

    The graph never runs this tool's function: the agent node turns the call
    into a HandoffRequest and the gate answers it.
    """

    def _transfer(**_: Any) -> str:
        return "Handoffs are carried out by the handoff gate."

    topics = f" Topics: {', '.join(receiver.topics)}" if receiver.topics else ""
    return StructuredTool.from_function(
        func=_transfer,
        name=receiver.transfer_tool_name,
        description=f"Hand the conversation to {receiver.title}: {receiver.description}{topics}",
        args_schema=receiver.payload_schema,
    )


def request_from_call(source: str, call: dict[str, Any]) -> HandoffRequest:
    """The handoff request a transfer tool call stands for (validated later by the gate)."""
    args = call.get("args") or {}
    return HandoffRequest(
        source=source,
        target=call["name"][len(TRANSFER_PREFIX):],
        reason=str(args.get("reason") or ""),
        summary=str(args.get("summary") or ""),
        payload=dict(args),
        trigger="tool",
        trigger_name=call["name"],
        tool_call_id=call["id"],
    )
