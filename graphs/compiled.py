"""The graph's own boundary: what every entry point goes through, whoever calls it.

Studio, ``langgraph dev``, ``graph.invoke`` in a notebook, an app, the CLI and
the service all run the compiled graph itself, so the guarantees cannot live
in a wrapper around it. ``HandoffStateGraph.compile()`` returns a
``CompiledHandoffGraph`` whose ``stream``/``astream`` (which ``invoke``,
``ainvoke``, ``batch`` and ``astream_events`` all go through):

- admit only what a turn may carry: the user's message(s), or a
  ``Command(resume=...)`` for a paused escalation; every trusted key (active
  agent, case file, records, counters, briefing, notices, usage) is written
  by the graph's own nodes only (``graphs/boundary.py``);
- attach the run's tracing metadata, tags and masking (``graphs/telemetry.py``),
  so a run from Studio is traced like a run from the CLI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from handoff.graphs.boundary import admit
from handoff.graphs.masking import Sensitivity
from handoff.graphs.telemetry import run_config


class HandoffStateGraph(StateGraph):
    """A ``StateGraph`` whose ``compile()`` keeps the handoff guarantees on every entry point."""

    handoff_name: str = "handoff"
    """Graph name for traces, reports and checkpoint metadata."""
    sensitivity: Sensitivity | None = None
    """What the domain declares sensitive, masked in traces and logs; None declares nothing."""

    def compile(self, *args: Any, **kwargs: Any) -> CompiledHandoffGraph:  # type: ignore[override]
        compiled = super().compile(*args, **kwargs)
        # LangGraph builds the compiled class itself; the subclass adds behaviour only, no state,
        # so copies (``with_config``, ``copy``) made through ``self.__class__`` keep it.
        compiled.__class__ = CompiledHandoffGraph
        return compiled  # type: ignore[return-value]


class CompiledHandoffGraph(CompiledStateGraph):
    """A compiled handoff graph: input admitted at the boundary, every run traced the same way."""

    @property
    def handoff_name(self) -> str:
        return getattr(self.builder, "handoff_name", self.name)

    def _prepare(self, input: Any, config: RunnableConfig | None) -> tuple[Any, RunnableConfig]:
        return admit(input), run_config(self, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        input, config = self._prepare(input, config)
        return super().stream(input, config, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        input, config = self._prepare(input, config)
        return super().astream(input, config, **kwargs)
