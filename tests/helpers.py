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
from handoff.graphs.session import HandoffSession


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
