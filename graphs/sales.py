"""The sales graph: Lead Qualifier -> Product Specialist -> Closer, with the specialist on call."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from agents.sales import QUALIFIER, SalesCaseFile, sales_agents
from graphs.builder import build_handoff_graph
from graphs.gate import GatePolicy

NAME = "sales"


def build_sales_graph(
    *,
    model: BaseChatModel | None = None,
    policy: GatePolicy | None = None,
    human_escalation: bool = True,
) -> StateGraph:
    """The uncompiled sales graph.

    Args:
        model: Chat model for all three agents; the environment's by default.
        policy: Gate limits; the defaults otherwise.
        human_escalation: Add the ``human`` node every agent may hand to.
    """
    return build_handoff_graph(
        sales_agents(),
        default_agent=QUALIFIER,
        case_file_model=SalesCaseFile,
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
    return build_sales_graph().compile()


def __getattr__(name: str) -> Any:
    # `graph` is built on first use so importing this module reads no environment.
    if name == "graph":
        return make_graph()
    raise AttributeError(name)
