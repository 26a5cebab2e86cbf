"""How a domain graph module exposes its compiled graph to LangGraph Studio and ``module:graph`` loaders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph


def studio_factory(build: Callable[[], StateGraph]) -> Callable[..., CompiledStateGraph]:
    """``make_graph(config=None)``: ``build()`` compiled without a checkpointer, for LangGraph Studio
    (which brings its own); Studio's run configuration is not used."""

    def make_graph(config: dict[str, Any] | None = None) -> CompiledStateGraph:
        return build().compile()

    make_graph.__doc__ = f"The graph of ``{build.__name__}()``, compiled for LangGraph Studio."
    return make_graph


def lazy_graph(make_graph: Callable[[], CompiledStateGraph]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds ``graph`` on first use, so importing the module reads
    no environment."""

    def module_getattr(name: str) -> Any:
        if name == "graph":
            return make_graph()
        raise AttributeError(name)

    return module_getattr
