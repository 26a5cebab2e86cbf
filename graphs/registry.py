"""The named graphs the CLI, Studio and the service know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from agents.back_office import BackOffice


@dataclass(frozen=True)
class GraphEntry:
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
    from graphs.customer_service import build_customer_service_graph

    return build_customer_service_graph(model=model, office=office)


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
}


def get_graph(name: str) -> GraphEntry:
    """The entry for ``name``; UnknownGraphError names the graphs that exist."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise UnknownGraphError(
            f"unknown graph {name!r}; known graphs: {', '.join(sorted(GRAPHS))}"
        ) from None
