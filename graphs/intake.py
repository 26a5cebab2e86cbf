"""The first node of every turn: record the user's message, run the rule triggers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from agents.spec import AgentSpec
from agents.triggers import TriggerContext, first_firing
from graphs.journal import Journal
from state import HandoffState

INTAKE = "intake"


def make_intake(
    specs: Mapping[str, AgentSpec], *, default_agent: str
) -> Callable[[HandoffState, Runtime], dict[str, Any]]:
    """The intake node: archives the new user message(s) and checks triggers."""

    def intake(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        messages = state.get("messages") or []
        arrived: list[HumanMessage] = []
        for m in reversed(messages):
            if not isinstance(m, HumanMessage):
                break
            arrived.insert(0, m)
        thread = (runtime.execution_info.thread_id if runtime.execution_info else None) or ""
        start = state.get("transcript_len", 0)
        active = state.get("active_agent") or default_agent
        if active not in specs:
            active = default_agent
        update: dict[str, Any] = {
            "transcript_len": Journal(runtime.store, thread).append_messages(start, arrived),
            "active_agent": active,
            "turn": state.get("turn", 0) + 1,
            "hops": 0,
            "pending_handoff": None,
        }
        if arrived:
            ctx = TriggerContext(source=active, message=str(arrived[-1].content),
                                 case_file=state.get("case_file") or {})
            update["pending_handoff"] = first_firing(specs[active].triggers, ctx)
        return update

    return intake
