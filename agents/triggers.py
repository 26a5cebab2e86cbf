"""Declared handoff triggers, checked before the active agent's model runs.

Cheapest first: a rule on the user's message or the case file costs nothing; a
semantic trigger embeds the message once (about 0.1 ms with the offline
embeddings, one embeddings request with a real server); a classifier costs
whatever the callable costs. A trigger that fires makes a HandoffRequest, so no
model call is spent on the wrong agent; the gate validates it like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from handoff.agents.semantic_router import (
    SEMANTIC_MARGIN,
    SEMANTIC_THRESHOLD,
    SemanticRouter,
    current_routing,
    semantic_routing,
)
from handoff.state import HandoffRequest, TriggerKind

if TYPE_CHECKING:
    from handoff.agents.spec import AgentSpec

__all__ = [
    "COST", "CaseFileTrigger", "ClassifierTrigger", "KeywordTrigger", "PayloadBuilder", "SemanticTrigger", "Trigger",
    "TriggerContext", "bind_semantic_routes", "first_firing", "semantic_routing",
]


class TriggerContext(BaseModel):
    """What a trigger may look at."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    source: str
    message: str
    case_file: dict[str, Any]
    context: Any = Field(default=None, description="The run's context (the graph's context_schema), if any.")


PayloadBuilder = Callable[[TriggerContext], dict[str, Any]]


class Trigger(BaseModel):
    """Base trigger: a name, a target and a reason; subclasses decide when it fires."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    target: str
    reason: str
    payload: PayloadBuilder | None = Field(
        default=None, description="Builds the receiver's payload fields from the context."
    )
    kind: TriggerKind = "rule"

    def fires(self, ctx: TriggerContext) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def request(self, ctx: TriggerContext) -> HandoffRequest | None:
        """The handoff this trigger asks for, or None when it does not fire."""
        if not self.fires(ctx):
            return None
        return self.handoff(ctx)

    def handoff(self, ctx: TriggerContext, score: float | None = None) -> HandoffRequest:
        """The request this trigger makes once it has fired, with its score if it has one."""
        fields = self.payload(ctx) if self.payload else {}
        summary = fields.pop("summary", None) or f"User said: {ctx.message[:300]}"
        return HandoffRequest(
            source=ctx.source,
            target=self.target,
            reason=self.reason,
            summary=summary,
            payload={"reason": self.reason, "summary": summary, **fields},
            trigger=self.kind,
            trigger_name=self.name,
            score=None if score is None else round(min(1.0, max(-1.0, score)), 4),
        )


class KeywordTrigger(Trigger):
    """Fires when the user's message contains one of the words or matches a pattern."""

    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def fires(self, ctx: TriggerContext) -> bool:
        text = ctx.message.lower()
        if any(re.search(rf"\b{re.escape(k.lower())}\b", text) for k in self.keywords):
            return True
        return any(re.search(p, ctx.message, re.IGNORECASE) for p in self.patterns)


class CaseFileTrigger(Trigger):
    """Fires when a predicate on the case file holds (e.g. 'two failed fixes')."""

    predicate: Callable[[dict[str, Any]], bool]

    def fires(self, ctx: TriggerContext) -> bool:
        return bool(self.predicate(ctx.case_file))


class ClassifierTrigger(Trigger):
    """Fires when a classifier names this trigger's target with enough confidence.

    ``classifier`` is any callable returning ``(target, confidence)``; the confidence is the
    request's ``score``.
    """

    classifier: Callable[[str], tuple[str, float]]
    threshold: float = Field(default=0.7, ge=0, le=1)
    kind: TriggerKind = "classifier"

    def fires(self, ctx: TriggerContext) -> bool:
        return self.request(ctx) is not None

    def request(self, ctx: TriggerContext) -> HandoffRequest | None:
        target, confidence = self.classifier(ctx.message)
        if target != self.target or confidence < self.threshold:
            return None
        return self.handoff(ctx, confidence)


class SemanticTrigger(Trigger):
    """Fires when the user's message means what this trigger's target handles.

    The message is embedded and compared (cosine) with the target's description and a few example
    utterances; a route's score is its best match. Every semantic trigger of the same source competes,
    and so does staying: the source's own description is a route too. This trigger fires when its
    route wins with at least ``threshold`` and leads the runner-up by ``margin``; otherwise it does
    nothing and the active agent's model decides. The request records the score.

    ``bind_semantic_routes`` (called when a graph's agents are made) fills ``description`` from the
    target's spec and gives the source's semantic triggers one shared router, whose route vectors
    are computed once, on first use.
    """

    kind: TriggerKind = "semantic"
    examples: tuple[str, ...] = Field(default=(), description="A few utterances that mean the target.")
    description: str = Field(default="", description="What the target handles; its AgentSpec's by default.")
    threshold: float = Field(default=SEMANTIC_THRESHOLD, ge=-1, le=1)
    margin: float = Field(default=SEMANTIC_MARGIN, ge=0, le=2)
    embeddings: Embeddings | None = Field(
        default=None, description="Any LangChain Embeddings; agents.embeddings.make_embeddings() by default.")
    _router: SemanticRouter | None = PrivateAttr(default=None)

    def texts(self) -> tuple[str, ...]:
        """What the route is compared with: the description, then the examples."""
        return tuple(t for t in (self.description, *self.examples) if t.strip())

    @property
    def router(self) -> SemanticRouter:
        """The router this trigger competes in; a router of its own when it was never bound."""
        if self._router is None:
            self._router = SemanticRouter([self])
        return self._router

    def fires(self, ctx: TriggerContext) -> bool:
        return self.request(ctx) is not None

    def request(self, ctx: TriggerContext) -> HandoffRequest | None:
        decision = self.router.decide(ctx.message)
        if decision is None or decision.trigger.name != self.name:
            return None
        return self.handoff(ctx, decision.score)


S = TypeVar("S", bound="AgentSpec")


def bind_semantic_routes(agents: Sequence[S], *,
                         utterances: Mapping[str, Sequence[str]] | None = None) -> list[S]:
    """The agents with their semantic triggers ready, sharing one router per source.

    Each agent has a profile: its description, the examples of every semantic trigger that targets it
    and any ``utterances`` given for it (what users say to it, for an agent no trigger targets). A
    trigger's route is its target's profile; staying is the source's own profile, so a message that
    sounds like the agent already answering stays with it.

    Call it where a graph's agents are made, so routes are computed once per graph build. Inside
    ``semantic_routing(enabled=False)`` the semantic triggers are removed instead.

    Args:
        agents: The graph's agent specs.
        utterances: Extra example messages per agent name.
    """
    routing = current_routing()
    examples: dict[str, list[str]] = {spec.name: list((utterances or {}).get(spec.name, ())) for spec in agents}
    for spec in agents:
        for trigger in spec.triggers:
            if isinstance(trigger, SemanticTrigger):
                examples.setdefault(trigger.target, []).extend(trigger.examples)
    profiles = {spec.name: (spec.description, *dict.fromkeys(examples[spec.name])) for spec in agents}
    bound: list[S] = []
    for spec in agents:
        semantic = [t for t in spec.triggers if isinstance(t, SemanticTrigger)]
        if not semantic:
            bound.append(spec)
            continue
        if not routing.enabled:
            bound.append(spec.model_copy(update={
                "triggers": tuple(t for t in spec.triggers if not isinstance(t, SemanticTrigger))}))
            continue
        ready = {id(t): _with_profile(t, profiles.get(t.target, ())) for t in semantic}
        router = SemanticRouter(list(ready.values()), stay=profiles[spec.name], embeddings=routing.embeddings)
        for trigger in ready.values():
            trigger._router = router
        bound.append(spec.model_copy(update={"triggers": tuple(ready.get(id(t), t) for t in spec.triggers)}))
    return bound


def _with_profile(trigger: SemanticTrigger, profile: Sequence[str]) -> SemanticTrigger:
    """The trigger with its target's description (unless it declares one) and every known example."""
    description, *known = profile or ("",)
    return trigger.model_copy(update={"description": trigger.description or description,
                                      "examples": tuple(dict.fromkeys((*trigger.examples, *known)))})


COST: dict[str, int] = {"rule": 0, "semantic": 1, "classifier": 2}
"""Order in which trigger kinds are checked: cheapest first."""


def first_firing(triggers: Sequence[Trigger], ctx: TriggerContext) -> HandoffRequest | None:
    """Rules, then semantic triggers, then classifiers, each in declared order; the first that
    fires wins. A router's semantic triggers are decided together, on one embedding of the message."""
    ordered = sorted(triggers, key=lambda t: COST.get(t.kind, len(COST)))
    routers = _routers([t for t in ordered if isinstance(t, SemanticTrigger)])
    decided: set[int] = set()
    for trigger in ordered:
        router = routers.get(id(trigger))
        if router is None:
            request = trigger.request(ctx)
        elif id(router) in decided:
            continue
        else:
            decided.add(id(router))
            decision = router.decide(ctx.message)
            request = decision.trigger.handoff(ctx, decision.score) if decision else None
        if request is not None:
            return request
    return None


def _routers(semantic: Sequence[SemanticTrigger]) -> dict[int, SemanticRouter]:
    """Each trigger's router; triggers never bound (declared outside ``bind_semantic_routes``) get one
    router together, so they still compete with each other."""
    unbound = [t for t in semantic if t._router is None]
    if unbound:
        router = SemanticRouter(unbound)
        for trigger in unbound:
            trigger._router = router
    return {id(t): t.router for t in semantic}
