"""Handoffs in LangSmith, however the graph is run: every run findable by graph, thread, agent and
handoff; what the domain declares sensitive masked before it leaves the process.

- ``run_config`` is applied by the compiled graph itself to every run it starts
  (``invoke``/``stream``/``astream``/``batch``/``astream_events``, a session,
  the service, Studio and ``langgraph dev``; see graphs/compiled.py). It merges
  into the caller's config the graph name and thread id as metadata and tags
  and a run name, adds the graph's ``Sensitivity`` to the masking of the
  process's logs (graphs/log_safety.py, installed when this module is first
  imported), and, when LangSmith tracing is on *at that moment* (a notebook
  may turn it on after compiling), puts exactly one ``HandoffTracer`` among
  the run's callbacks: a caller's plain LangChain tracer is replaced by one
  with its project and parent run, a caller's ``HandoffTracer`` is kept, and
  otherwise one is added. LangChain adds its own (unmasked) environment
  tracer only when no LangChain tracer is among the handlers, so none is
  added then.
- ``HandoffTracer`` is LangChain's LangSmith tracer with one more job: it reads
  the state each node receives and returns, and puts the active agent, the
  handoff id and the handoff's outcome on that node's run as metadata and
  tags; model and tool runs inherit them from their node. A rejected or failed
  handoff is a value in the state, never an exception, so it is never an error
  run; a run paused by ``interrupt()`` (a person was asked) is closed as
  ``paused``, not as an error.
- Masking: the tracer's ``langsmith.Client`` has the domain's ``Masker`` as its
  anonymizer (inputs, outputs, errors, metadata) and the tracer masks the
  model's serialized form. The graph builder's ``sensitivity``
  (``handoff.graphs.masking.Sensitivity``) says what is sensitive; a graph that
  declares one, or is in ``MASKED_BY_DEFAULT``, is masked unless the run's
  ``TraceOptions`` (``configurable["handoff_trace"]``, or ``HANDOFF_TRACE_MASK``
  / ``HANDOFF_TRACE_HIDE_IO``) turn it off.
- ``tracing_config`` is a conversation's run config as plain JSON data (thread
  id, options, metadata, tags, run name): the tracer is made at run time, so
  a config can be printed, stored or sent anywhere.

LangChain's ``wait_for_all_tracers()`` flushes only the global LangSmith
client; ``flush_traces()`` flushes that and every masking client made here.

A handoff graph run inside someone else's traced run (a node or tool of
another traced graph, or a graph bound with ``with_config(callbacks=...)``)
is traced by that run's tracer: LangChain would merge a second one in beside
it, so it is left alone.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import _get_tracer_kwargs, _tracing_v2_is_enabled, tracing_v2_callback_var
from langchain_core.tracers.langchain import LangChainTracer, wait_for_all_tracers
from langchain_core.tracers.schemas import Run
from langgraph.errors import GraphBubbleUp
from langsmith import Client
from langsmith import utils as ls_utils
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from handoff.graphs import log_safety
from handoff.graphs.gate import GATE
from handoff.graphs.intake import INTAKE
from handoff.graphs.masking import Masker, Sensitivity, masker_for

log_safety.protect()  # from the first import of a graph, since persistence is opened before the first run

MASKED_BY_DEFAULT = frozenset({"customer-service"})
"""Graphs whose traces are masked unless masking is turned off explicitly (besides every graph
that declares a ``Sensitivity``)."""

GRAPH_KEY = "handoff_graph"
THREAD_KEY = "thread_id"
AGENT_KEY = "active_agent"
HANDOFF_KEY = "handoff_id"
TRACE_KEY = "handoff_trace"
"""``configurable`` entry holding a run's ``TraceOptions`` as JSON data."""
INHERITED_KEYS = (AGENT_KEY, HANDOFF_KEY)
"""Metadata a model or tool run takes from the node run it belongs to."""
INHERITED_TAG_PREFIXES = ("agent:", "handoff:")


FLAG = TypeAdapter(bool)
"""Reads a true/false setting as pydantic does; built once (a ``TypeAdapter`` costs more to build than
every turn's read of the environment)."""


class TraceOptions(BaseModel):
    """How a run appears in LangSmith (only when LangSmith tracing is on)."""

    model_config = ConfigDict(frozen=True)

    mask: bool | None = Field(
        default=None,
        description="Mask sensitive text; None means the graph's default (it declares a Sensitivity, or "
                    "is in MASKED_BY_DEFAULT).",
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
        mask = os.environ.get("HANDOFF_TRACE_MASK", "").strip()
        hide = os.environ.get("HANDOFF_TRACE_HIDE_IO", "").strip()
        return cls(mask=FLAG.validate_python(mask) if mask else None,
                   hide_io=FLAG.validate_python(hide) if hide else False)

    @classmethod
    def of_run(cls, configurable: Mapping[str, Any] | None) -> TraceOptions:
        """A run's options: its ``configurable["handoff_trace"]`` (a dict or options), else the environment's."""
        raw = (configurable or {}).get(TRACE_KEY)
        if raw is None:
            return cls.from_env()
        return raw if isinstance(raw, TraceOptions) else cls.model_validate(raw)

    def masks(self, graph_name: str, *, declared: bool = False) -> bool:
        """Whether runs of ``graph_name`` are masked; ``declared``: the graph declares a Sensitivity."""
        if self.hide_io:
            return True
        if self.mask is None:
            return declared or graph_name in MASKED_BY_DEFAULT
        return self.mask


_clients: dict[tuple[str, str | None, bool, Sensitivity | None], Client] = {}
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


def shared_masking_client(
    *,
    hide_io: bool = False,
    sensitivity: Sensitivity | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
) -> Client:
    """One masking client per endpoint, key, ``hide_io`` and declaration, reused by every run.

    ``api_url``/``api_key`` default to the environment's (``LANGSMITH_ENDPOINT``/``LANGSMITH_API_KEY``).
    """
    url = api_url or ls_utils.get_api_url(None)
    key = (url, api_key or ls_utils.get_api_key(None), hide_io, sensitivity)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_masking_client(
                masker=masker_for(sensitivity), hide_io=hide_io, api_url=url, api_key=key[1])
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
    """Whether LangSmith tracing is on: exactly when LangChain would add its own tracer to a run."""
    return bool(_tracing_v2_is_enabled())


def tracing_config(*, graph_name: str, thread_id: str, options: TraceOptions | None = None) -> dict[str, Any]:
    """A conversation's run config, as plain JSON data (the graph makes its tracer when a run starts).

    Args:
        graph_name: The graph's registry name, e.g. ``customer-service``.
        thread_id: The conversation's thread id.
        options: Masking and extra tags/metadata; the environment's at run time otherwise.

    Returns:
        ``configurable`` (the thread id and, if given, the options under ``handoff_trace``),
        ``run_name``, ``metadata`` (graph, thread) and ``tags`` (``graph:<name>``, ``thread:<id>``).
    """
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if options is not None:
        configurable[TRACE_KEY] = options.model_dump(mode="json")
    options = options or TraceOptions()
    return {
        "configurable": configurable,
        "run_name": graph_name,
        "metadata": {**options.metadata, GRAPH_KEY: graph_name, THREAD_KEY: thread_id},
        "tags": list(dict.fromkeys([*options.tags, f"graph:{graph_name}", f"thread:{thread_id}"])),
    }


def run_config(graph: Any, config: Any) -> dict[str, Any]:
    """The run config with this graph's tracing metadata, tags, run name and (tracing on) tracer.

    ``graph`` is the ``CompiledHandoffGraph`` being run (``graph.handoff_name``,
    ``graph.builder.sensitivity``); ``config`` is the caller's config, possibly None,
    and is not changed.
    """
    builder = getattr(graph, "builder", None)
    sensitivity: Sensitivity | None = getattr(builder, "sensitivity", None)
    log_safety.protect(sensitivity)
    name = str(getattr(graph, "handoff_name", None) or graph.name)
    config = dict(config or {})
    configurable = config.get("configurable") or {}
    options = TraceOptions.of_run(configurable)
    thread_id = configurable.get("thread_id")
    metadata = {**options.metadata, GRAPH_KEY: name, **(config.get("metadata") or {})}
    if thread_id is not None:
        metadata.setdefault(THREAD_KEY, str(thread_id))
    tags = [*(config.get("tags") or []), *options.tags, f"graph:{metadata[GRAPH_KEY]}"]
    if THREAD_KEY in metadata:
        tags.append(f"thread:{metadata[THREAD_KEY]}")
    config.update(metadata=metadata, tags=list(dict.fromkeys(tags)), run_name=config.get("run_name") or name)
    if tracing_enabled():
        graph_config = getattr(graph, "config", None) or {}
        inherited = ((var_child_runnable_config.get() or {}).get("callbacks"), graph_config.get("callbacks"))
        if not any(_tracers(c) for c in inherited):
            tracer = _TracerFactory(name, options, sensitivity)
            config["callbacks"] = _with_one_handoff_tracer(config.get("callbacks"), tracer)
    return config


def _tracers(callbacks: Any) -> list[LangChainTracer]:
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else (callbacks or [])
    return [h for h in handlers if isinstance(h, LangChainTracer)]


class _TracerFactory:
    """Makes the run's HandoffTracer, from a caller's tracer or from the tracing context."""

    def __init__(self, graph_name: str, options: TraceOptions, sensitivity: Sensitivity | None) -> None:
        self.options = options
        self.sensitivity = sensitivity
        self.masked = options.masks(graph_name, declared=sensitivity is not None)

    def __call__(self, base: LangChainTracer | None = None) -> HandoffTracer:
        if base is None:
            # What LangChain's own tracer would take: the tracing context's project, parent and client.
            kwargs = _get_tracer_kwargs(self.options.project)
            client: Client | None = kwargs.pop("client", None)
        else:
            # Same destination and parent run as the caller's tracer: it is replaced, not joined.
            kwargs = {"example_id": base.example_id, "project_name": self.options.project or base.project_name,
                      "address": base.address, "tags": list(base.tags or []), "metadata": base.tracing_metadata,
                      "run_map": base.run_map, "order_map": base.order_map,
                      "_external_run_ids": base._external_run_ids}
            client = base.client
        if self.masked:
            client = shared_masking_client(
                hide_io=self.options.hide_io, sensitivity=self.sensitivity,
                api_url=client.api_url if client is not None else None,
                api_key=client.api_key if client is not None else None)
        return HandoffTracer(**kwargs, client=client,
                             masker=masker_for(self.sensitivity) if self.masked else None)


def _with_one_handoff_tracer(callbacks: Any, make: _TracerFactory) -> Any:
    """The caller's callbacks with exactly one HandoffTracer per destination, and no other tracer."""
    if isinstance(callbacks, BaseCallbackManager):
        if _tracers(callbacks):
            return callbacks  # a manager comes from an enclosing run, whose tracer covers this one
        manager = callbacks.copy()
        manager.add_handler(make(), inherit=True)
        return manager
    handlers = list(callbacks or [])
    given = _tracers(handlers)
    if any(isinstance(t, HandoffTracer) for t in given):
        return handlers  # the caller chose its own handoff tracer (and its masking)
    if not given:
        context = tracing_v2_callback_var.get()  # ``with tracing_v2_enabled(project_name=...)``
        return [*handlers, make(context)]
    return [h if not isinstance(h, LangChainTracer) else make(h) for h in handlers]


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
        if self.masker is not None:
            # The client's anonymizer sees neither the serialized model nor the name and tags
            # (a thread id in a tag is whatever the caller chose).
            if run.serialized:
                run.serialized = self.masker(copy.deepcopy(run.serialized))
            run.name = self.masker.text(run.name)
            run.tags = [self.masker.text(t) for t in run.tags or []]

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
