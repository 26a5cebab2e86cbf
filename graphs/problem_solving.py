"""The problem-solving graph: Analyst -> Solution Designer -> Implementer, with hand-backs to design."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from handoff.agents.problem_solving.specialists import ANALYST, ProblemCaseFile, problem_solving_agents
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.exports import lazy_graph, studio_factory
from handoff.graphs.gate import GatePolicy

NAME = "problem-solving"


def build_problem_solving_graph(
    *,
    model: BaseChatModel | None = None,
    policy: GatePolicy | None = None,
    human_escalation: bool = True,
) -> StateGraph:
    """The uncompiled problem-solving graph.

    Args:
        model: Chat model for all three agents; the environment's by default.
        policy: Gate limits; the defaults otherwise (the ping-pong guard bounds hand-backs).
        human_escalation: Add the ``human`` node every agent may hand to.
    """
    return build_handoff_graph(
        problem_solving_agents(),
        default_agent=ANALYST,
        case_file_model=ProblemCaseFile,
        model=model,
        policy=policy,
        human_escalation=human_escalation,
        name=NAME,
    )


make_graph = studio_factory(build_problem_solving_graph)
__getattr__ = lazy_graph(make_graph)
