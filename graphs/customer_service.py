"""The customer-service graph: General Support -> Technical Specialist -> Billing Expert."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from handoff.agents.customer_service.back_office import ACCOUNTS, BackOffice
from handoff.agents.customer_service.specialists import GENERAL, SupportCaseFile, customer_service_agents
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.exports import lazy_graph, studio_factory
from handoff.graphs.gate import GatePolicy
from handoff.graphs.masking import INTRODUCED_NAME_RULE, POSTCODE_RULE, Sensitivity, known_values

NAME = "customer-service"

SENSITIVITY = Sensitivity.for_case_file(
    SupportCaseFile, ("account_id", "customer_name"),
    keys=("postcode", "email", "card_number"),  # verify_identity's postcode is the identity secret
    rules=(POSTCODE_RULE, INTRODUCED_NAME_RULE),
    # The back office's own customers, wherever their names or postcodes appear; a stranger's name
    # is caught only after an introduction, a postcode only where the text says it is one.
    values=known_values(names=[a.customer_name for a in ACCOUNTS.values()],
                        postcodes=[a.postcode for a in ACCOUNTS.values()]),
)
"""Names, e-mails, postcodes, card numbers and account ids (e-mails, cards and account ids are also
masked by the default rules of graphs/masking.py)."""


def build_customer_service_graph(
    *,
    model: BaseChatModel | None = None,
    office: BackOffice | None = None,
    policy: GatePolicy | None = None,
) -> StateGraph:
    """The uncompiled customer-service graph.

    Args:
        model: Chat model for all three agents; the environment's by default.
        office: The back office the tools use; a new one by default. Its refunds and tickets go
            to the store the graph is compiled with (its own in-memory store if there is none).
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
        sensitivity=SENSITIVITY,
    )


make_graph = studio_factory(build_customer_service_graph)
__getattr__ = lazy_graph(make_graph)
