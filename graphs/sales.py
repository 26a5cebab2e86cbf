"""The sales graph: Lead Qualifier -> Product Specialist -> Closer, with the specialist on call."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from handoff.agents.sales.specialists import QUALIFIER, SalesCaseFile, sales_agents
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.exports import lazy_graph, studio_factory
from handoff.graphs.gate import GatePolicy

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


make_graph = studio_factory(build_sales_graph)
__getattr__ = lazy_graph(make_graph)
