"""Which tool or which colleague a message is for: by its words, then by its meaning.

Words: a message's phrases are first put into plain words (agents/offline_lexicon.py), then matched
against the hint words a tool or an agent is described with ("Use when:", "Topics:").

Meaning: the same offline embedder the semantic triggers use (agents/embeddings.py) compares the
message with what each colleague handles (its description and topics) and with what this agent
handles itself. A colleague wins by meaning only when it is close enough (a threshold) and clearly
closer than this agent (a margin); otherwise the agent keeps the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handoff.agents.embeddings import offline_embeddings
from handoff.agents.offline_cache import DESCRIPTIONS, memo
from handoff.agents.offline_lexicon import expanded, matched_groups
from handoff.agents.offline_reading import Reading, description_of, hint, target_of

HUMAN = "human"
"""The escalation target every agent of a graph with human escalation may hand to."""
MEANING_THRESHOLD = 0.2
"""Least cosine between a message and a colleague's profile for a handoff by meaning."""
MEANING_MARGIN = 0.08
"""How much closer than this agent's own profile the colleague must be."""
READ_ONLY = frozenset({"look", "check", "list", "read", "find", "verify", "run", "answer", "recommend",
                       "correlate", "choose", "outline", "query", "search", "get", "show", "review", "diagnose",
                       "compare", "explain", "describe", "summarise", "summarize", "estimate", "calculate"})
"""First words of tool descriptions that only look things up. Only such tools are called on a closeness
of meaning; a tool that changes something (a refund, a ticket, a quote) waits for words that ask for it."""


def similarity(a: str, b: str) -> float:
    vector = offline_embeddings().vector
    return float(np.dot(vector(a), vector(b)))


def words_of(line: str) -> list[str]:
    return list(hint_words(line))


@memo(DESCRIPTIONS)
def hint_words(line: str) -> tuple[str, ...]:
    """``words_of(line)``, cached: a hint line is read on every call of every turn."""
    return tuple(w.strip().lower() for w in line.split(",") if w.strip())


@memo(DESCRIPTIONS)
def _word_start(word: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(word)}")


def hits(words: Sequence[str], text: str) -> list[str]:
    """The hint words found in ``text`` (a word matches at a word start: "drop" finds "dropping")."""
    lowered = text.lower()
    return [w for w in words if _word_start(w).search(lowered)]


def evidence(words: Sequence[str], text: str) -> list[str]:
    """The hint words ``text`` gives evidence for: each one it says, and for each phrase group it
    matches (agents/offline_lexicon.py) the first hint word of the group, so that one phrase counts
    once however many plain words it stands for ("hi" is one greeting, not hello + hours + address)."""
    found = hits(words, text)
    for group in matched_groups(text):
        if any(w in found for w in group):
            continue
        # A hint word that begins the group's word (a literal prefix, as a pattern anchored at the start).
        extra = next((w for g in group for w in words if g.startswith(w)), None)
        if extra is not None and extra not in found:
            found.append(extra)
    return found


@dataclass(frozen=True)
class Choice:
    """A colleague chosen for a message, and why."""

    tool: dict[str, Any]
    words: tuple[str, ...]
    closeness: float
    by: str
    """"words" or "meaning"."""

    @property
    def reason(self) -> str:
        if self.words:
            return f"The request is about {', '.join(self.words[:3])}."
        return f"The request fits what {description_of(self.tool).rstrip('.').lower()} covers."


def own_tools_for(reading: Reading, text: str) -> list[dict[str, Any]]:
    """This agent's tools whose "Use when:" words the message's plain words include."""
    plain = expanded(text)
    return [t for t in reading.own if t["name"] not in reading.called
            and hits(hint_words(hint(t, "Use when:")), plain)]


def own_tool_by_meaning(reading: Reading, text: str, *, floor: float) -> dict[str, Any] | None:
    """This agent's closest look-up tool, when the message is close enough to what it does (and closer
    than ``floor``, the best colleague's closeness)."""
    plain = expanded(text)
    best: tuple[float, dict[str, Any]] | None = None
    for tool in reading.own:
        first = description_of(tool).split(" ", 1)[0].lower()
        if tool["name"] in reading.called or first not in READ_ONLY:
            continue
        profile = f"{description_of(tool)} {hint(tool, 'Use when:').replace(',', '')}"
        closeness = similarity(plain, profile)
        if best is None or closeness > best[0]:
            best = (closeness, tool)
    if best is None or best[0] < max(MEANING_THRESHOLD, floor):
        return None
    return best[1]


def colleague_for(
    reading: Reading, text: str, *, exclude: frozenset[str] = frozenset(), by_meaning: bool = True
) -> Choice | None:
    """The colleague ``text`` is for, or None when this agent should keep it.

    By words when a colleague's topics match more plain words than this agent's own topics; else, if
    ``by_meaning``, by meaning when the colleague is close enough and clearly closer than this agent.
    """
    candidates = [t for t in reading.transfers if target_of(t) != HUMAN and target_of(t) not in exclude]
    if not candidates or not text.strip():
        return None
    plain = expanded(text)
    own_words = evidence(hint_words(reading.topics), text)
    scored = [(evidence(hint_words(hint(t, "Topics:")), text), _closeness(plain, t), t) for t in candidates]
    best_words, closeness, tool = max(scored, key=lambda s: (len(s[0]), s[1]))
    if len(best_words) > len(own_words):
        return Choice(tool=tool, words=tuple(best_words), closeness=closeness, by="words")
    if len(best_words) < len(own_words) or not by_meaning:
        return None
    nearest = max(scored, key=lambda s: s[1])
    own = similarity(plain, _own_profile(reading))
    if nearest[1] >= MEANING_THRESHOLD and nearest[1] - own >= MEANING_MARGIN:
        return Choice(tool=nearest[2], words=tuple(nearest[0]), closeness=nearest[1], by="meaning")
    return None


def _closeness(plain: str, tool: dict[str, Any]) -> float:
    return similarity(plain, _profile(tool))


def _profile(tool: dict[str, Any]) -> str:
    topics = hint(tool, "Topics:")
    return f"{description_of(tool)} {topics.replace(',', '')}".strip()


def _own_profile(reading: Reading) -> str:
    parts = [reading.topics.replace(",", "")]
    for tool in reading.own:
        parts.append(description_of(tool))
        parts.append(hint(tool, "Use when:").replace(",", ""))
    return " ".join(p for p in parts if p) or reading.instructions
