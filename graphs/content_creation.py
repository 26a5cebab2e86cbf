"""The content-creation graph: Researcher -> Writer -> Editor, with bounded revision rounds."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from handoff.agents.content_creation.specialists import (
    MAX_REVISION_ROUNDS,
    RESEARCHER,
    ContentCaseFile,
    content_creation_agents,
)
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.exports import lazy_graph, studio_factory
from handoff.graphs.gate import GatePolicy

NAME = "content-creation"

DEFAULT_POLICY = GatePolicy(ping_pong_limit=2 * MAX_REVISION_ROUNDS + 2)
"""Writer and editor pass a draft back and forth by design: each revision round
is two accepted handoffs, so the ping-pong guard sits above the revision bound,
which the writer's precondition enforces with its own, clearer message."""


def build_content_creation_graph(
    *,
    model: BaseChatModel | None = None,
    policy: GatePolicy | None = None,
    human_escalation: bool = True,
) -> StateGraph:
    """The uncompiled content-creation graph.

    Args:
        model: Chat model for all three agents; the environment's by default.
        policy: Gate limits; DEFAULT_POLICY otherwise.
        human_escalation: Add the ``human`` node every agent may hand to.
    """
    return build_handoff_graph(
        content_creation_agents(),
        default_agent=RESEARCHER,
        case_file_model=ContentCaseFile,
        model=model,
        policy=policy or DEFAULT_POLICY,
        human_escalation=human_escalation,
        name=NAME,
    )


make_graph = studio_factory(build_content_creation_graph)
__getattr__ = lazy_graph(make_graph)
