"""The named graphs the CLI, Studio and the service know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from handoff.agents.customer_service.back_office import BackOffice


@dataclass(frozen=True)
class GraphEntry:
    """A graph the CLI, Studio and the service can open by name."""

    name: str
    title: str
    flow: str
    build: Callable[..., StateGraph]
    demo: tuple[str, ...]
    """A short scripted conversation that shows the graph's handoffs."""


class UnknownGraphError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _customer_service(model: BaseChatModel | None = None, office: BackOffice | None = None) -> StateGraph:
    from handoff.graphs.customer_service import build_customer_service_graph

    return build_customer_service_graph(model=model, office=office)


def _content_creation(model: BaseChatModel | None = None, office: BackOffice | None = None) -> StateGraph:
    from handoff.graphs.content_creation import build_content_creation_graph

    return build_content_creation_graph(model=model)


def _problem_solving(model: BaseChatModel | None = None, office: BackOffice | None = None) -> StateGraph:
    from handoff.graphs.problem_solving import build_problem_solving_graph

    return build_problem_solving_graph(model=model)


def _sales(model: BaseChatModel | None = None, office: BackOffice | None = None) -> StateGraph:
    from handoff.graphs.sales import build_sales_graph

    return build_sales_graph(model=model)


GRAPHS: dict[str, GraphEntry] = {
    "customer-service": GraphEntry(
        name="customer-service",
        title="Customer service",
        flow="General Support -> Technical Specialist -> Billing Expert",
        build=_customer_service,
        demo=(
            "Hi, this is Dana, account ACC-1001, postcode 90210.",
            "My internet keeps dropping every evening.",
            "Thanks. Also I was charged twice on invoice INV-2002 and want a refund.",
        ),
    ),
    "content-creation": GraphEntry(
        name="content-creation",
        title="Content creation",
        flow="Researcher -> Writer -> Editor (Editor -> Writer for revisions, bounded)",
        build=_content_creation,
        demo=(
            "I need a short piece on heat pumps for homeowners. Please research it first.",
            "Great research. Now write the first draft.",
            "Please send it to the editor for review.",
            "Please send it back to the writer to fix those issues.",
            "Looks good. Send it to the editor for a final review.",
        ),
    ),
    "problem-solving": GraphEntry(
        name="problem-solving",
        title="Problem solving",
        flow="Problem Analyst -> Solution Designer -> Implementer (Implementer -> Designer when infeasible)",
        build=_problem_solving,
        demo=(
            "Checkout has been really slow since yesterday's release. Can you analyse why?",
            "Thanks. Please design a fix.",
            "Looks good, go ahead and implement it.",
            "Understood. Send it back to design with the reason.",
            "Great, go ahead and implement that one.",
        ),
    ),
    "sales": GraphEntry(
        name="sales",
        title="Sales",
        flow="Lead Qualifier -> Product Specialist -> Closer (Closer -> Specialist for questions)",
        build=_sales,
        demo=(
            "Hi, I'm Priya Nair from Northwind Traders. We're evaluating a CRM for our sales team.",
            "Which plan fits us? We need SSO with Okta and to import our spreadsheets.",
            "Sounds right. Can we get a quote for our 40 seats?",
            "One question first: does the Team plan include audit logs? Our compliance team asks.",
            "OK, then quote Enterprise for the 40 seats and send the order form.",
        ),
    ),
}


def get_graph(name: str) -> GraphEntry:
    """The entry for ``name``; UnknownGraphError names the graphs that exist."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise UnknownGraphError(
            f"unknown graph {name!r}; known graphs: {', '.join(sorted(GRAPHS))}"
        ) from None
