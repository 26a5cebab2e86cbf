"""Handoffs in LangSmith: every run findable by graph, thread, agent and handoff; sensitive text masked.

- ``tracing_config`` is what a session adds to the config of each run: the
  graph name and thread id as metadata and tags, a run name, and (only when
  LangSmith tracing is on) a ``HandoffTracer``.
- ``HandoffTracer`` is LangChain's LangSmith tracer with one more job: it reads
  the state each node receives and returns, and puts the active agent, the
  handoff id and the handoff's outcome on that node's run as metadata and
  tags; model and tool runs inherit them from their node. A rejected or failed
  handoff is a value in the state, never an exception, so it is never an error
  run; a run paused by ``interrupt()`` (a person was asked) is closed as
  ``paused``, not as an error.
- ``make_masking_client`` builds a ``langsmith.Client`` whose anonymizer (the
  ``Masker`` of graphs/masking.py) masks account numbers, card data, e-mail
  addresses and API keys in inputs, outputs, errors and metadata before
  anything leaves the process. Masking is on by default for the graphs in
  ``MASKED_BY_DEFAULT``; ``TraceOptions`` (or ``HANDOFF_TRACE_MASK`` /
  ``HANDOFF_TRACE_HIDE_IO``) turns it on or off.

LangChain's ``wait_for_all_tracers()`` flushes only the global LangSmith
client; ``flush_traces()`` flushes that and every masking client made here.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.tracers.langchain import LangChainTracer, wait_for_all_tracers
from langchain_core.tracers.schemas import Run
from langgraph.errors import GraphBubbleUp
from langsmith import Client
from langsmith import utils as ls_utils
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from graphs.gate import GATE
from graphs.intake import INTAKE
from graphs.masking import Masker

MASKED_BY_DEFAULT = frozenset({"customer-service"})
"""Graphs whose traces are masked unless masking is turned off explicitly."""

GRAPH_KEY = "handoff_graph"
THREAD_KEY = "thread_id"
AGENT_KEY = "active_agent"
HANDOFF_KEY = "handoff_id"
INHERITED_KEYS = (AGENT_KEY, HANDOFF_KEY)
"""Metadata a model or tool run takes from the node run it belongs to."""
INHERITED_TAG_PREFIXES = ("agent:", "handoff:")


class TraceOptions(BaseModel):
    """How a session's runs appear in LangSmith (only when LangSmith tracing is on)."""

    model_config = ConfigDict(frozen=True)

    mask: bool | None = Field(
        default=None, description="Mask sensitive text; None means the graph's default (MASKED_BY_DEFAULT)."
    )
    hide_io: bool = Field(
        default=False, description="Send no inputs or outputs at all: names, timings, metadata only."
    )
    project: str | None = Field(default=None, description="LangSmith project; LANGSMITH_PROJECT otherwise.")
    tags: tuple[str, ...] = Field(default=(), description="Extra tags on every run.")
    metadata: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Extra metadata on every run."
    )

    @classmethod
    def from_env(cls) -> TraceOptions:
        """Options from ``HANDOFF_TRACE_MASK`` (true/false) and ``HANDOFF_TRACE_HIDE_IO`` (true/false)."""
        flag = TypeAdapter(bool)
        mask = os.environ.get("HANDOFF_TRACE_MASK", "").strip()
        hide = os.environ.get("HANDOFF_TRACE_HIDE_IO", "").strip()
        return cls(mask=flag.validate_python(mask) if mask else None,
                   hide_io=flag.validate_python(hide) if hide else False)

    def masks(self, graph_name: str) -> bool:
        """Whether runs of ``graph_name`` are masked under these options."""
        if self.hide_io:
            return True
        return graph_name in MASKED_BY_DEFAULT if self.mask is None else self.mask


_clients: dict[tuple[str, str | None, bool], Client] = {}
_clients_lock = threading.Lock()


def make_masking_client(
    *,
    masker: Masker | None = None,
    hide_io: bool = False,
    api_url: str | None = None,
    api_key: str | None = None,
    **client_kwargs: Any,
) -> Client:
    """A langsmith Client that masks inputs, outputs, errors and metadata before sending them.

    Args:
        masker: What to mask; ``Masker()`` (the default rules and keys) otherwise.
        hide_io: Drop inputs and outputs entirely (``hide_inputs``/``hide_outputs``).
        api_url: LangSmith endpoint; ``LANGSMITH_ENDPOINT`` otherwise.
        api_key: LangSmith key; ``LANGSMITH_API_KEY`` otherwise.
        client_kwargs: Passed to ``langsmith.Client``.
    """
    return Client(api_url=api_url, api_key=api_key, anonymizer=masker or Masker(),
                  hide_inputs=True if hide_io else None, hide_outputs=True if hide_io else None,
                  **client_kwargs)


def shared_masking_client(*, hide_io: bool = False) -> Client:
    """One masking client per endpoint and key in the environment, reused by every session."""
    key = (ls_utils.get_api_url(None), ls_utils.get_api_key(None), hide_io)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_masking_client(hide_io=hide_io, api_url=key[0], api_key=key[1])
        return client


def flush_traces() -> None:
    """Send every queued run: LangChain's global client and the masking clients made here."""
    wait_for_all_tracers()
    with _clients_lock:
        clients = list(_clients.values())
    for client in clients:
        client.flush()


def forget_masking_clients() -> None:
    """Flush, stop and drop the cached masking clients (e.g. after the endpoint changed)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.cleanup()  # drains what is queued, then stops the background threads


def tracing_enabled() -> bool:
    """Whether LangSmith tracing is on (``LANGSMITH_TRACING=true`` or a tracing context)."""
    return bool(ls_utils.tracing_is_enabled())


def tracing_config(*, graph_name: str, thread_id: str, options: TraceOptions | None = None) -> dict[str, Any]:
    """The run-config entries every run of one conversation carries.

    Args:
        graph_name: The graph's registry name, e.g. ``customer-service``.
        thread_id: The conversation's thread id.
        options: Masking and extra tags/metadata; ``TraceOptions()`` otherwise.

    Returns:
        ``run_name``, ``metadata`` (graph, thread), ``tags`` (``graph:<name>``,
        ``thread:<id>``) and, when tracing is on, ``callbacks`` with a HandoffTracer.
    """
    options = options or TraceOptions()
    config: dict[str, Any] = {
        "run_name": graph_name,
        "metadata": {**options.metadata, GRAPH_KEY: graph_name, THREAD_KEY: thread_id},
        "tags": [*options.tags, f"graph:{graph_name}", f"thread:{thread_id}"],
    }
    if tracing_enabled():
        masked = options.masks(graph_name)
        config["callbacks"] = [HandoffTracer(
            project_name=options.project,
            client=shared_masking_client(hide_io=options.hide_io) if masked else None,
            masker=Masker() if masked else None,
        )]
    return config


class HandoffTracer(LangChainTracer):
    """LangChain's LangSmith tracer, plus handoff metadata and tags on every node run."""

    def __init__(self, *args: Any, masker: Masker | None = None, **kwargs: Any) -> None:
        """Args:
        masker: Also masks what the client's anonymizer does not see (a model's serialized form).
        """
        super().__init__(*args, **kwargs)
        self.masker = masker

    def copy_with_metadata_defaults(
        self, *, metadata: Mapping[str, str] | None = None, tags: list[str] | None = None
    ) -> LangChainTracer:
        tracer = super().copy_with_metadata_defaults(metadata=metadata, tags=tags)
        if isinstance(tracer, HandoffTracer):
            tracer.masker = self.masker
        return tracer

    def _start_trace(self, run: Run) -> None:
        super()._start_trace(run)
        parent = self.run_map.get(str(run.parent_run_id)) if run.parent_run_id else None
        if parent is not None and parent is not run:
            annotate(run, {k: v for k, v in parent.metadata.items() if k in INHERITED_KEYS},
                     [t for t in parent.tags or [] if t.startswith(INHERITED_TAG_PREFIXES)])
        node = _node_of(run)
        if node is not None:
            annotate(run, *node_start_metadata(node, run.inputs))
        if self.masker is not None and run.serialized:
            run.serialized = self.masker(copy.deepcopy(run.serialized))

    def _on_chain_end(self, run: Run) -> None:
        node = _node_of(run)
        if node is not None:
            annotate(run, *node_end_metadata(node, run.outputs))
        super()._on_chain_end(run)

    def on_chain_error(
        self, error: BaseException, *, inputs: dict[str, Any] | None = None, run_id: UUID, **kwargs: Any
    ) -> Run:
        """A pause (``interrupt()``) or a jump to a parent graph ends the run; it is not an error."""
        if isinstance(error, GraphBubbleUp):
            annotate(self._get_run(run_id), {"paused": type(error).__name__}, ["paused"])
            return self.on_chain_end({}, run_id=run_id, inputs=inputs)
        return super().on_chain_error(error, inputs=inputs, run_id=run_id, **kwargs)


def _node_of(run: Run) -> str | None:
    """The graph node this run is (not a router or model inside it), or None."""
    node = run.metadata.get("langgraph_node")
    return node if run.run_type == "chain" and node and run.name == node else None


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def node_start_metadata(node: str, state: Any) -> tuple[dict[str, Any], list[str]]:
    """Metadata and tags for a node run, from the state the node receives."""
    if not isinstance(state, Mapping):
        return {}, []
    active = state.get("active_agent")
    if node == GATE:
        request = state.get("pending_handoff")
        if request is None:
            return {}, []
        handoff_id, source = _get(request, "id"), _get(request, "source")
        return (
            {AGENT_KEY: active or source, HANDOFF_KEY: handoff_id, "handoff_source": source,
             "handoff_target": _get(request, "target"), "handoff_trigger": _get(request, "trigger")},
            ["handoff", f"handoff:{handoff_id}", f"agent:{active or source}"],
        )
    if node == INTAKE:
        return ({AGENT_KEY: active}, [f"agent:{active}"]) if active else ({}, [])
    receiving = state.get("receiving")
    if receiving:
        return {AGENT_KEY: node, HANDOFF_KEY: receiving}, [f"agent:{node}", f"handoff:{receiving}"]
    return {AGENT_KEY: node}, [f"agent:{node}"]


def node_end_metadata(node: str, update: Any) -> tuple[dict[str, Any], list[str]]:
    """Metadata and tags for a node run, from the update the node returns."""
    if not isinstance(update, Mapping):
        return {}, []
    metadata: dict[str, Any] = {}
    tags: list[str] = []
    if node == INTAKE and update.get("active_agent"):
        metadata[AGENT_KEY] = update["active_agent"]
        tags.append(f"agent:{update['active_agent']}")
    records = update.get("handoffs") or []
    record = records[-1] if isinstance(records, list) and records else None
    if record is not None:
        request = _get(record, "request")
        handoff_id, outcome = _get(request, "id"), _get(record, "outcome")
        rejection = _get(record, "rejection")
        metadata.update({
            HANDOFF_KEY: handoff_id, "handoff_source": _get(request, "source"),
            "handoff_target": _get(request, "target"), "handoff_trigger": _get(request, "trigger"),
            "handoff_outcome": outcome, "handoff_routed_to": _get(record, "routed_to"),
            "handoff_latency_ms": _get(record, "latency_ms"),
        })
        if rejection is not None:
            metadata["handoff_rejection"] = _get(rejection, "code")
        tags += ["handoff", f"handoff:{handoff_id}", f"outcome:{outcome}"]
    request = update.get("pending_handoff")
    if request is not None:
        metadata.update({"handoff_requested": _get(request, "id"),
                         "handoff_requested_target": _get(request, "target")})
        tags += ["handoff", "handoff:requested"]
    return metadata, tags


def annotate(run: Run, metadata: Mapping[str, Any], tags: Iterable[str] = ()) -> None:
    """Add metadata and tags to a run without touching dicts it shares with other runs."""
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if metadata:
        run.extra["metadata"] = {**run.metadata, **metadata}
    tags = list(tags)
    if tags:
        run.tags = sorted({*(run.tags or []), *tags})


def run_config(graph: Any, config: Any) -> Any:
    """The run config with this graph's tracing metadata, tags and masking added (every entry point).

    ``graph`` is the ``CompiledHandoffGraph`` being run (``graph.handoff_name``,
    ``graph.builder.sensitivity``); ``config`` is the caller's config, possibly None.
    """
    return config
