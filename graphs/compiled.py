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

from collections.abc import AsyncIterator, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from handoff.graphs.boundary import admit, admit_context
from handoff.graphs.masking import Sensitivity
from handoff.graphs.telemetry import run_config

SYNC_WORKERS = 2
"""Worker threads of a synchronous run that streams nothing as it happens, unless its config sets
``max_concurrency``. LangGraph runs such a step's only task in the caller's thread and hands the
checkpoint and write saves to a thread pool it makes anew for every run, starting a thread for each
save that finds none idle (up to ``min(32, CPUs + 4)``). A handoff graph runs one node at a time, so
two workers keep the saves in the background and make the turn about 0.9 ms cheaper
(``python -m benchmarks.ablation``). Two, not one: a task that waits on work it submitted itself
(LangGraph's functional API) still has a second worker. A run that streams as it happens (``custom``
or ``messages`` modes, subgraphs) runs its tasks beside a waiter that holds a worker until the stream
ends, so it keeps LangGraph's default; async runs start no threads."""

EAGER_MODES = frozenset({"custom", "messages"})
"""Stream modes for which LangGraph runs a step beside a waiting thread (see ``SYNC_WORKERS``)."""


class MissingStoreError(ValueError):
    """A handoff graph compiled with a persistent checkpointer but no store."""


class HandoffStateGraph(StateGraph):
    """A ``StateGraph`` whose ``compile()`` keeps the handoff guarantees on every entry point."""

    handoff_name: str = "handoff"
    """Graph name for traces, reports and checkpoint metadata."""
    sensitivity: Sensitivity | None = None
    """What the domain declares sensitive, masked in traces and logs; None declares nothing."""
    agent_specs: Mapping[str, Any] = MappingProxyType({})
    """The agents the graph was built from, by name (``AgentSpec``s), for drawings and reports."""
    extra_input_keys: frozenset[str] = frozenset()
    """The application's own state keys a turn's input may carry beside its messages."""

    def compile(self, checkpointer: Any = None, *, store: BaseStore | None = None,
                **kwargs: Any) -> CompiledHandoffGraph:  # type: ignore[override]
        """``StateGraph.compile``, with the handoff guarantees, and never without a transcript.

        The full transcript, the handoff log and the side-effect ledger live in a LangGraph
        store. Compiled the usual LangGraph way, with only a checkpointer, a graph would drop
        them silently; so an in-memory checkpointer (or none: Studio and the LangGraph server
        attach their own checkpointer and store to every run) gets an in-memory store that
        lives as long as it does, and a persistent checkpointer without a store is refused.

        Raises:
            MissingStoreError: a persistent checkpointer and no store.
        """
        if store is None:
            if checkpointer is None or checkpointer is True or checkpointer is False \
                    or isinstance(checkpointer, InMemorySaver):
                store = InMemoryStore()
            else:
                raise MissingStoreError(
                    f"{self.handoff_name}: a {type(checkpointer).__name__} keeps the conversation's state, "
                    "but its full transcript, handoff log and side-effect ledger need a LangGraph store "
                    "that lasts as long: compile(checkpointer=..., store=...); "
                    "handoff.graphs.persistence.open_persistence(url) opens both for one URL"
                )
        compiled = super().compile(checkpointer, store=store, **kwargs)
        # LangGraph builds the compiled class itself; the subclass adds behaviour only, no state,
        # so copies (``with_config``, ``copy``) made through ``self.__class__`` keep it.
        compiled.__class__ = CompiledHandoffGraph
        return compiled  # type: ignore[return-value]


class CompiledHandoffGraph(CompiledStateGraph):
    """A compiled handoff graph: input admitted at the boundary, every run traced the same way."""

    @property
    def handoff_name(self) -> str:
        return getattr(self.builder, "handoff_name", self.name)

    def _prepare(self, input: Any, config: RunnableConfig | None,
                 kwargs: dict[str, Any]) -> tuple[Any, RunnableConfig]:
        if kwargs.get("context") is not None:
            kwargs["context"] = admit_context(kwargs["context"], getattr(self.builder, "context_schema", None))
        return admit(input, getattr(self.builder, "extra_input_keys", frozenset())), run_config(self, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        input, config = self._prepare(input, config, kwargs)
        if config.get("max_concurrency") is None and not self._streams_eagerly(kwargs):
            config["max_concurrency"] = SYNC_WORKERS
        return super().stream(input, config, **kwargs)

    def _streams_eagerly(self, kwargs: Mapping[str, Any]) -> bool:
        """Whether LangGraph runs this stream's steps beside a waiter thread (its ``get_waiter``)."""
        named: set[str] = set()
        for modes in (kwargs.get("stream_mode") or self.stream_mode, kwargs.get("print_mode") or ()):
            named.update({modes} if isinstance(modes, str) else modes)
        return bool(self.stream_eager or kwargs.get("subgraphs") or named & EAGER_MODES)

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        input, config = self._prepare(input, config, kwargs)
        return super().astream(input, config, **kwargs)
