"""Routers that ``handoff eval --router`` compares on the same dataset.

A router is which layers may decide a handoff. Declared rules (keywords, patterns, case-file
predicates, escalation) always run; the semantic triggers and the model's transfer tools are
switched on or off:

| router | semantic triggers | model routes by its transfer tools |
|---|---|---|
| ``keywords`` | no | no |
| ``semantic`` | yes (offline embeddings) | no |
| ``offline`` | no | the offline model |
| ``offline+semantic`` | yes (offline embeddings) | the offline model (the shipped offline default) |
| ``model`` | no | the configured real model |
| ``model+semantic`` | yes (the real server's embeddings) | the configured real model |

"The model does not route" means the offline model without its transfer tools: every agent still
answers and uses its own tools (so the case file fills up as usual), but only the triggers hand over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel, ConfigDict, Field

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.embeddings import OfflineEmbeddings, label_of, make_embeddings
from handoff.agents.models import make_chat_model
from handoff.agents.offline import TRANSFER_PREFIX, OfflineChatModel
from handoff.agents.settings import ModelSettings
from handoff.agents.triggers import semantic_routing
from handoff.graphs.persistence import serializer
from handoff.graphs.registry import GraphEntry
from handoff.monitoring.evaluation import EvaluationReport, LabelledConversation, evaluate

ModelKind = Literal["none", "offline", "real"]


class Router(BaseModel):
    """Which layers decide handoffs."""

    model_config = ConfigDict(frozen=True)

    name: str
    semantic: bool = Field(description="The graph keeps its semantic triggers.")
    model: ModelKind = Field(description="Who answers: 'none' is the offline model without transfer tools.")
    description: str


ROUTERS: dict[str, Router] = {r.name: r for r in (
    Router(name="keywords", semantic=False, model="none", description="declared rules alone"),
    Router(name="semantic", semantic=True, model="none", description="rules and semantic triggers"),
    Router(name="offline", semantic=False, model="offline", description="rules, then the offline model"),
    Router(name="offline+semantic", semantic=True, model="offline",
           description="rules, semantic triggers, then the offline model"),
    Router(name="model", semantic=False, model="real", description="rules, then the real model"),
    Router(name="model+semantic", semantic=True, model="real",
           description="rules, semantic triggers (real embeddings), then the real model"),
)}
ALL = "all"


class RouterUnavailable(ValueError):
    """A router name that is unknown, or needs a real model that is not configured."""


def routers_named(names: Sequence[str], *, real_model: bool) -> list[Router]:
    """The routers to compare, in the order given; ``all`` is every router that can run here.

    Raises:
        RouterUnavailable: an unknown name, or a real-model router without a real model configured.
    """
    chosen: list[Router] = []
    for name in names:
        if name == ALL:
            chosen.extend(r for r in ROUTERS.values() if real_model or r.model != "real")
            continue
        router = ROUTERS.get(name)
        if router is None:
            raise RouterUnavailable(f"unknown router {name!r}; routers: {', '.join([*ROUTERS, ALL])}")
        if router.model == "real" and not real_model:
            raise RouterUnavailable(f"router {name!r} needs a real model: set OPENAI_API_KEY or OPENAI_BASE_URL")
        chosen.append(router)
    return list({r.name: r for r in chosen}.values())


class RulesOnlyModel(OfflineChatModel):
    """The offline model without its transfer tools: it answers and uses its own tools, never hands over."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:  # type: ignore[override]
        own = [t for t in tools if not _tool_name(t).startswith(TRANSFER_PREFIX)]
        return super().bind_tools(own, **kwargs)


def _tool_name(tool: Any) -> str:
    return str(getattr(tool, "name", None) or convert_to_openai_tool(tool)["function"]["name"])


def model_for(router: Router, settings: ModelSettings) -> BaseChatModel:
    """The chat model a router's graphs run on."""
    if router.model == "none":
        return RulesOnlyModel()
    if router.model == "offline":
        return OfflineChatModel()
    return make_chat_model(settings)


def embeddings_for(router: Router, settings: ModelSettings) -> Embeddings | None:
    """The embeddings a router's semantic triggers use: the real server's with a real model, else the
    offline model's; one instance for all conversations, so its cache stays warm."""
    if not router.semantic:
        return None
    return make_embeddings(settings) if router.model == "real" else OfflineEmbeddings()


def graph_factory(entry: GraphEntry, router: Router, model: BaseChatModel,
                  embeddings: Embeddings | None) -> Callable[[], CompiledStateGraph]:
    """A new in-memory compiled graph per conversation, built with the router's layers."""

    def fresh() -> CompiledStateGraph:
        with semantic_routing(enabled=router.semantic, embeddings=embeddings):
            builder = entry.build(model=model, office=BackOffice())
        return builder.compile(checkpointer=InMemorySaver(serde=serializer()), store=InMemoryStore())

    return fresh


class RouterComparison(BaseModel):
    """One evaluation report per router, on the same conversations."""

    graph: str
    split: str | None = None
    conversations: int
    reports: list[EvaluationReport]
    embeddings: dict[str, str] = Field(default_factory=dict, description="router -> embedder used")


def compare_routers(
    entry: GraphEntry, conversations: Sequence[LabelledConversation], routers: Sequence[Router],
    settings: ModelSettings, *, split: str | None = None,
) -> RouterComparison:
    """Play the same conversations once per router."""
    reports, embedders = [], {}
    for router in routers:
        embeddings = embeddings_for(router, settings)
        make_graph = graph_factory(entry, router, model_for(router, settings), embeddings)
        reports.append(evaluate(entry.name, make_graph, conversations, router=router.name))
        if embeddings is not None:
            embedders[router.name] = label_of(embeddings)
    return RouterComparison(graph=entry.name, split=split, conversations=len(conversations), reports=reports,
                            embeddings=embedders)
