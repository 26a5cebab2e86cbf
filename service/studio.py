"""Graph factories for ``langgraph dev`` and LangGraph Studio (see ``langgraph.json``).

Each domain module's ``make_graph`` is synchronous and may do blocking I/O
(reading settings, building models), and ``langgraph dev`` calls a factory on its
event loop for every run, where blocking calls are refused. So each factory
here builds its graph once, in a worker thread, and hands the same compiled
graph to every run; the server attaches its own checkpointer and store.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

STUDIO_GRAPHS: dict[str, str] = {
    "customer-service": "handoff.graphs.customer_service:make_graph",
    "content-creation": "handoff.graphs.content_creation:make_graph",
    "problem-solving": "handoff.graphs.problem_solving:make_graph",
    "sales": "handoff.graphs.sales:make_graph",
}
"""Graph name -> ``module:function`` that makes its compiled graph."""

_built: dict[str, CompiledStateGraph] = {}
_locks: dict[str, asyncio.Lock] = {}


def load_factory(target: str) -> Callable[..., Any]:
    """Import ``module:function`` and return the function."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def build(name: str) -> CompiledStateGraph:
    """Build graph ``name`` synchronously (what each factory runs in a thread)."""
    return load_factory(STUDIO_GRAPHS[name])()


def _factory(name: str) -> Callable[[dict[str, Any] | None], Awaitable[CompiledStateGraph]]:
    async def make(config: dict[str, Any] | None = None) -> CompiledStateGraph:
        lock = _locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in _built:
                _built[name] = await asyncio.to_thread(build, name)
        return _built[name]

    make.__name__ = make.__qualname__ = name.replace("-", "_")
    make.__doc__ = f"The compiled {name!r} graph for LangGraph Studio (built once, off the event loop)."
    return make


customer_service = _factory("customer-service")
content_creation = _factory("content-creation")
problem_solving = _factory("problem-solving")
sales = _factory("sales")
