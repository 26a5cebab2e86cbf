"""Small builders shared by the tests."""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.memory import InMemoryStore

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.gate import GatePolicy
from handoff.graphs.persistence import serializer
from handoff.graphs.session import HandoffSession, TurnResult


def compile_memory(builder) -> CompiledStateGraph:
    """Compile with an in-memory checkpointer and store."""
    return builder.compile(checkpointer=InMemorySaver(serde=serializer()), store=InMemoryStore())


def support_session(
    model: ScriptedChatModel, *, office: BackOffice | None = None, policy: GatePolicy | None = None
) -> HandoffSession:
    """A customer-service conversation on a scripted model, in memory."""
    graph = compile_memory(build_customer_service_graph(model=model, office=office, policy=policy))
    return HandoffSession(graph)


def agents_in(path: Sequence[str]) -> list[str]:
    """The agent nodes of a turn's path, without intake and the gate."""
    return [n for n in path if n not in ("intake", "handoff_gate")]


TECH_PAYLOAD = {"reason": "line keeps dropping", "summary": "evening drops",
                "account_id": "ACC-1001", "symptoms": "drops every evening"}
"""A valid payload for General Support's transfer to the Technical Specialist."""


def technical_handoff() -> tuple[HandoffSession, ScriptedChatModel, TurnResult]:
    """One turn in which General Support's model hands to the Technical Specialist, who answers."""
    from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL
    from handoff.agents.scripted import calls, tool_call

    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH_PAYLOAD))],
        TECHNICAL: ["Looking at your line now."],
    })
    session = support_session(model)
    return session, model, session.send("My internet drops every evening, account ACC-1001")
