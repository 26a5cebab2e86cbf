"""The customer-service graph: General Support -> Technical Specialist -> Billing Expert."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from agents.back_office import BackOffice
from agents.customer_service import GENERAL, SupportCaseFile, customer_service_agents
from graphs.builder import build_handoff_graph
from graphs.exports import lazy_graph, studio_factory
from graphs.gate import GatePolicy

NAME = "customer-service"


def build_customer_service_graph(
    *,
    model: BaseChatModel | None = None,
    office: BackOffice | None = None,
    policy: GatePolicy | None = None,
) -> StateGraph:
    """The uncompiled customer-service graph.

    Args:
        model: Chat model for all three agents; the environment's by default.
        office: The back office the tools use; a fresh in-memory one by default.
        policy: Gate limits; the defaults otherwise.
    """
    return build_handoff_graph(
        customer_service_agents(office),
        default_agent=GENERAL,
        case_file_model=SupportCaseFile,
        model=model,
        policy=policy,
        human_escalation=True,
        name=NAME,
    )


make_graph = studio_factory(build_customer_service_graph)
__getattr__ = lazy_graph(make_graph)
