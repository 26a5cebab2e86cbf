"""Find and answer a pending human escalation on a thread."""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from handoff.graphs.human import HUMAN, EscalationRequest, HumanAnswer


class NoPendingEscalation(LookupError):
    """The thread is not waiting for a person."""


def pending_escalation(graph: CompiledStateGraph, config: dict[str, Any]) -> EscalationRequest | None:
    """The escalation the thread is paused on, or None."""
    snapshot = graph.get_state(config)
    for task in snapshot.tasks:
        if task.name != HUMAN:
            continue
        for pending in task.interrupts:
            return EscalationRequest.model_validate(pending.value)
    return None


def answer_escalation(graph: CompiledStateGraph, config: dict[str, Any], answer: HumanAnswer) -> None:
    """Resume the paused thread with the person's answer.

    Raises:
        NoPendingEscalation: the thread is not waiting for a person.
        ValueError: ``hand_back_to`` names no agent of this graph.
        InputRefused: the answer cannot be stored (graphs/boundary.py); the escalation stays pending.
    """
    if pending_escalation(graph, config) is None:
        thread = config.get("configurable", {}).get("thread_id")
        raise NoPendingEscalation(f"thread {thread!r} has no pending human escalation")
    agents = {n for n in graph.nodes if n not in ("__start__", "intake", "handoff_gate", HUMAN)}
    if answer.hand_back_to is not None and answer.hand_back_to not in agents:
        raise ValueError(
            f"cannot hand back to {answer.hand_back_to!r}; agents: {', '.join(sorted(agents))}"
        )
    graph.invoke(Command(resume=answer.model_dump()), config)
