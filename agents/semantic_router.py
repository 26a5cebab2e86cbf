"""Routing by meaning: one agent's semantic routes, scored against a message.

A route is a target agent's profile (its description and example utterances); staying with the
agent already answering is a route too. A message goes to the route that wins with at least a
threshold and leads the runner-up (another target, or staying) by a margin; otherwise nowhere, and
the agent's model decides. ``agents.triggers.SemanticTrigger`` declares routes; this module scores them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict

from handoff.agents.embeddings import OfflineEmbeddings, SemanticSettings, bounded, make_embeddings

if TYPE_CHECKING:
    from handoff.agents.triggers import SemanticTrigger

logger = logging.getLogger(__name__)

SEMANTIC_THRESHOLD = 0.2
"""Least cosine similarity a semantic route must reach, calibrated on the offline embeddings: paraphrases
of a route score about 0.25-0.5 there, unrelated messages below 0.2."""
SEMANTIC_MARGIN = 0.06
"""How far a semantic route must lead the runner-up (another target, or staying with the source)."""


@dataclass(frozen=True)
class SemanticDecision:
    """The winning semantic route for one message."""

    trigger: SemanticTrigger
    score: float


STAY = ""
"""Route name of staying with the source."""

SMALL_TALK = ("thanks, that is all", "alright then", "got it", "really?", "hmm, let me think")
"""Replies that carry no request compete on staying's side, wherever the conversation is."""

NO_TOPIC_WORDS = frozenset((
    # acknowledgements
    "ok", "okay", "yes", "yeah", "yep", "yup", "no", "nope", "nah", "sure", "thanks", "thank", "please",
    "alright", "all", "right", "fine", "great", "good", "cool", "perfect", "got", "hmm", "sounds", "looks",
    "bye", "goodbye", "go", "well", "oh", "wait", "nice", "understood", "noted", "lovely", "awesome",
    "excellent", "brilliant", "indeed", "course", "much", "lot",
    # function words
    "a", "an", "the", "to", "of", "in", "on", "at", "by", "for", "with", "from", "about", "into", "over", "up",
    "out", "as", "if", "or", "and", "but", "not", "just", "now", "so", "then", "than", "do", "does", "did",
    "done", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "be", "is", "are",
    "was", "were", "been", "am", "have", "has", "had", "i", "me", "my", "mine", "we", "us", "our", "ours",
    "you", "your", "yours", "it", "its", "this", "that", "these", "those", "there", "here", "they", "them",
    "their", "he", "she", "his", "her", "how", "when", "where", "which", "who", "whom", "what", "why", "some",
    "any", "more", "most", "one", "also", "too", "very", "really",
))
"""Words that say nothing about what a message is about. A static embedding of a short message is
mostly these words' vectors ("ok, do it", "what is it now?"), which sit by chance near some route."""

TERSE_THRESHOLD = 0.4
"""Least score for a message with a single topic word ("write it", "how do we fix that?"): its vector
is mostly function words, so only a close match to a route is taken. With none, it is never routed."""

WORD = re.compile(r"[^\W\d_]{2,}")
WITH_DIGITS = re.compile(r"\S*\d\S*")
"""Ids, amounts and dates (ACC-1001, INV-2002, 40, 3rd): they say who or how much, not what about, and
in a static embedding an id's pieces would pull every message that carries one toward the same route."""


def routing_text(text: str) -> str:
    """What is compared: the text, bounded, without its ids and numbers."""
    return " ".join(WITH_DIGITS.sub(" ", bounded(text)).split())


class SemanticRouter:
    """One source's semantic routes, with staying as a route, over one embedder.

    Route vectors are computed once, on first use (so building a graph never calls an embeddings
    server); a failed embedding call makes the router stand aside for that message.
    """

    def __init__(self, triggers: Sequence[SemanticTrigger], *, stay: Sequence[str] = (),
                 embeddings: Embeddings | None = None) -> None:
        names = [t.name for t in triggers]
        if len(set(names)) != len(names):
            raise ValueError(f"semantic triggers of one agent need distinct names, not {names}")
        empty = [t.name for t in triggers if not t.texts()]
        if empty:
            raise ValueError(f"semantic trigger(s) {', '.join(empty)} have no description and no examples")
        chosen = {id(t.embeddings): t.embeddings for t in triggers if t.embeddings is not None}
        if len(chosen) > 1:
            raise ValueError(f"semantic triggers {', '.join(names)} of one agent use different embeddings; "
                             "their scores would not compare")
        self.triggers = tuple(triggers)
        self.stay = tuple(t for t in (*stay, *SMALL_TALK) if t.strip())
        self.embeddings = embeddings or next(iter(chosen.values()), None) or _default_embeddings()
        self._routes: list[tuple[str, str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def routes(self) -> list[tuple[str, str, np.ndarray]]:
        """(name, target, unit vectors) of every route, staying included; computed once."""
        if self._routes is None:
            with self._lock:
                if self._routes is None:
                    groups = [(t.name, t.target, t.texts()) for t in self.triggers]
                    if self.stay:
                        groups.append((STAY, STAY, self.stay))
                    flat = [text for _, _, texts in groups for text in texts]
                    vectors = _unit(np.asarray(self.embeddings.embed_documents([routing_text(t) for t in flat]),
                                               dtype=np.float32))
                    routes, at = [], 0
                    for name, target, texts in groups:
                        routes.append((name, target, vectors[at:at + len(texts)]))
                        at += len(texts)
                    self._routes = routes
        return self._routes

    def scores(self, message: str) -> dict[str, float]:
        """Each route's score for ``message``: its best cosine similarity (``STAY`` is staying)."""
        return self._scores(routing_text(message))

    def _scores(self, text: str) -> dict[str, float]:
        query = _query_vector(self.embeddings, text)
        return {name: float((vectors @ query).max()) for name, _, vectors in self.routes()}

    def decide(self, message: str) -> SemanticDecision | None:
        """The route ``message`` goes to, or None: staying wins, or no route is sure enough."""
        text = routing_text(message)
        topic = [w for w in WORD.findall(text.lower()) if w not in NO_TOPIC_WORDS]
        if not topic:
            return None
        try:
            scores = self._scores(text)
        except Exception as exc:  # an embeddings server down must not fail the turn: the model decides
            logger.warning("semantic routing skipped: embeddings failed (%s)", type(exc).__name__)
            return None
        best = max(scores, key=scores.__getitem__)
        if best == STAY:
            return None
        trigger = next(t for t in self.triggers if t.name == best)
        runner_up = max((scores[name] for name, target, _ in self.routes() if target != trigger.target),
                        default=None)
        score = scores[best]
        threshold = trigger.threshold if len(topic) > 1 else max(trigger.threshold, TERSE_THRESHOLD)
        if score < threshold or (runner_up is not None and score - runner_up < trigger.margin):
            return None
        return SemanticDecision(trigger=trigger, score=score)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def _query_vector(embeddings: Embeddings, message: str) -> np.ndarray:
    if isinstance(embeddings, OfflineEmbeddings):
        return embeddings.vector(message)  # unit length and cached
    return _unit(np.asarray(embeddings.embed_query(message), dtype=np.float32))


def _default_embeddings() -> Embeddings:
    return current_routing().embeddings or make_embeddings()


class SemanticRouting(BaseModel):
    """How graphs built in this context route by meaning (``semantic_routing``)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    enabled: bool = True
    embeddings: Embeddings | None = None


_ROUTING: ContextVar[SemanticRouting | None] = ContextVar("handoff_semantic_routing", default=None)


def current_routing() -> SemanticRouting:
    """The semantic routing in force where graphs are being built: ``semantic_routing``'s, else the
    environment's (``HANDOFF_SEMANTIC_TRIGGERS``, on by default)."""
    return _ROUTING.get() or SemanticRouting(enabled=SemanticSettings().semantic_triggers)


@contextmanager
def semantic_routing(*, enabled: bool = True, embeddings: Embeddings | None = None) -> Iterator[None]:
    """Graphs built inside get (or, with ``enabled=False``, lose) their semantic triggers, over
    ``embeddings`` if given; ``handoff eval`` compares routers this way."""
    token = _ROUTING.set(SemanticRouting(enabled=enabled, embeddings=embeddings))
    try:
        yield
    finally:
        _ROUTING.reset(token)
