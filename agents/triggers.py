"""Declared handoff triggers, checked before the active agent's model runs.

Cheapest first: a rule on the user's message or the case file costs nothing;
a classifier costs whatever the callable costs. A trigger that fires makes a
HandoffRequest, so no model call is spent on the wrong agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from handoff.state import HandoffRequest, TriggerKind


class TriggerContext(BaseModel):
    """What a trigger may look at."""

    model_config = ConfigDict(frozen=True)

    source: str
    message: str
    case_file: dict[str, Any]


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

    ``classifier`` is any callable returning ``(target, confidence)``.
    """

    classifier: Callable[[str], tuple[str, float]]
    threshold: float = Field(default=0.7, ge=0, le=1)
    kind: TriggerKind = "classifier"

    def fires(self, ctx: TriggerContext) -> bool:
        target, confidence = self.classifier(ctx.message)
        return target == self.target and confidence >= self.threshold


def first_firing(triggers: Sequence[Trigger], ctx: TriggerContext) -> HandoffRequest | None:
    """Rules before classifiers, in declared order; the first that fires wins."""
    ordered = sorted(triggers, key=lambda t: t.kind == "classifier")
    for trigger in ordered:
        request = trigger.request(ctx)
        if request is not None:
            return request
    return None
