"""The problem-solving graph: Analyst -> Solution Designer -> Implementer, with hand-backs to design."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from agents.problem_solving import ANALYST, ProblemCaseFile, problem_solving_agents
from graphs.builder import build_handoff_graph
from graphs.gate import GatePolicy

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


def make_graph(config: dict[str, Any] | None = None) -> CompiledStateGraph:
    """Compiled without a checkpointer, for LangGraph Studio (which brings its own).

    Args:
        config: Studio's run configuration (unused).
    """
    return build_problem_solving_graph().compile()


def __getattr__(name: str) -> Any:
    # `graph` is built on first use so importing this module reads no environment.
    if name == "graph":
        return make_graph()
    raise AttributeError(name)
