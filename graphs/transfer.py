"""Transfer tools: how an agent asks for a handoff with a typed payload (or announces one in text)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool

from handoff.agents.offline import TRANSFER_PREFIX
from handoff.agents.spec import AgentSpec
from handoff.state import HandoffRequest

__all__ = ["ANNOUNCEMENT", "TRANSFER_PREFIX", "announced_transfer", "make_transfer_tool", "request_from_call",
           "transfer_description", "transfer_targets"]


def make_transfer_tool(receiver: AgentSpec, source: AgentSpec | None = None) -> BaseTool:
    """A ``transfer_to_<receiver>`` tool whose arguments are the receiver's payload schema; the
    source's ``Handoff`` policy may rename it and describe it otherwise.

    The graph never runs this tool's function: the agent node turns the call
    into a HandoffRequest and the gate answers it.
    """

    def _transfer(**_: Any) -> str:
        return "Handoffs are carried out by the handoff gate."

    return StructuredTool.from_function(
        func=_transfer,
        name=source.tool_name_for(receiver.name) if source else receiver.transfer_tool_name,
        description=transfer_description(receiver, source),
        args_schema=receiver.payload_schema,
    )


def transfer_description(receiver: AgentSpec, source: AgentSpec | None = None) -> str:
    policy = source.policy_for(receiver.name) if source else None
    if policy and policy.tool_description:
        return policy.tool_description
    topics = f" Topics: {', '.join(receiver.topics)}" if receiver.topics else ""
    return f"Hand the conversation to {receiver.title}: {receiver.description}{topics}"


def transfer_targets(source: AgentSpec) -> dict[str, str]:
    """Tool name -> target, for every agent ``source`` may hand to."""
    return {source.tool_name_for(target): target for target in source.handoffs}


def request_from_call(source: str, call: dict[str, Any], target: str | None = None) -> HandoffRequest:
    """The handoff request a transfer tool call stands for (validated later by the gate)."""
    args = call.get("args") or {}
    return HandoffRequest(
        source=source,
        target=target or call["name"][len(TRANSFER_PREFIX):],
        reason=str(args.get("reason") or ""),
        summary=str(args.get("summary") or ""),
        payload=dict(args),
        trigger="tool",
        trigger_name=call["name"],
        tool_call_id=call["id"],
    )


ANNOUNCEMENT = re.compile(
    r"\b(transfer(?:ring)?|hand(?:ing)?\s+(?:you\s+)?(?:over|off)|connect(?:ing)?\s+you|"
    r"pass(?:ing)?\s+you|put(?:ting)?\s+you\s+through|escalat(?:e|ing))\b",
    re.IGNORECASE,
)


def announced_transfer(
    spec: AgentSpec, targets: Mapping[str, AgentSpec], ai: AIMessage, case_file: dict[str, Any]
) -> HandoffRequest | None:
    """A handoff the model announced in text without calling its tool, completed for it.

    Only when the text both announces a transfer and names exactly one allowed
    target; the payload is filled from the case file, and the gate validates it.
    """
    text = str(ai.content)
    if not text or not ANNOUNCEMENT.search(text):
        return None
    lowered = text.lower()
    named = [t for t in targets.values()
             if t.title.lower() in lowered or t.name.replace("_", " ") in lowered or t.name in lowered]
    if len(named) != 1:
        return None
    target = named[0]
    fields = {k: case_file[k] for k in target.payload_schema.model_fields if k in case_file}
    reason = f"{spec.title} announced a transfer without calling the tool: {text[:160]}"
    return HandoffRequest(
        source=spec.name, target=target.name, reason=reason, summary=text[:300],
        payload={**fields, "reason": reason, "summary": text[:300]},
        trigger="rule", trigger_name="announced_transfer",
    )
