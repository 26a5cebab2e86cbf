"""The content desk's in-repo data: research notes, the house style guide, drafting rules.

Small and fixed, so the researcher, writer and editor tools give the same
answers every run. ``compose_draft`` and ``review_draft`` are pure functions
over this data: the writer's and the editor's craft, reduced to rules.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class Source(BaseModel):
    """One research note with the fact it supports."""

    model_config = ConfigDict(frozen=True)

    source_id: str
    topic: str
    title: str
    fact: str
    weight: int
    """Higher is more important; a revision that must cut keeps the heaviest facts."""


class StyleGuide(BaseModel):
    """The house rules the editor checks every draft against."""

    model_config = ConfigDict(frozen=True)

    max_words: int = 70
    min_sources: int = 2
    max_headline_chars: int = 60
    banned_words: tuple[str, ...] = ("game-changer", "revolutionary", "very")


STYLE = StyleGuide()

TOPIC_AUDIENCE = {"heat pumps": "homeowners", "remote work": "team leads", "urban gardening": "city renters"}

SOURCES = {
    s.source_id: s
    for s in (
        Source(source_id="SRC-101", topic="heat pumps", title="Energy agency field trial, 2024", weight=5,
               fact="A heat pump delivers about three units of heat for every unit of electricity it uses"),
        Source(source_id="SRC-102", topic="heat pumps", title="Installer survey, 2025", weight=4,
               fact="Most homes need no new radiators if they are insulated and the flow temperature is lowered"),
        Source(source_id="SRC-103", topic="heat pumps", title="Cold-climate performance study", weight=3,
               fact="Modern units keep heating efficiently down to minus 15 degrees Celsius"),
        Source(source_id="SRC-104", topic="heat pumps", title="Household bill analysis", weight=2,
               fact="Running costs fall most when a heat pump replaces oil or direct electric heating"),
        Source(source_id="SRC-105", topic="heat pumps", title="Noise measurement report", weight=1,
               fact="A typical outdoor unit is about as loud as a fridge at one metre"),
        Source(source_id="SRC-201", topic="remote work", title="Team productivity panel, 2025", weight=5,
               fact="Teams that write decisions down lose less time to meetings"),
        Source(source_id="SRC-202", topic="remote work", title="Wellbeing survey", weight=3,
               fact="Fixed core hours reduce after-hours messages by a third"),
        Source(source_id="SRC-301", topic="urban gardening", title="Balcony yield trial", weight=4,
               fact="A one square metre balcony bed can grow herbs and salad from April to October"),
        Source(source_id="SRC-302", topic="urban gardening", title="Container soil guide", weight=3,
               fact="Containers dry out fast, so self-watering pots halve the watering"),
    )
}


def topic_in(text: str) -> str | None:
    """The known topic named in ``text``, or None.

    Args:
        text: Free text, e.g. the user's request.
    """
    lowered = text.lower()
    return next((t for t in TOPIC_AUDIENCE if t in lowered or t.rstrip("s") in lowered), None)


def sources_on(topic: str) -> list[Source]:
    """The topic's sources, most important first.

    Args:
        topic: A key of TOPIC_AUDIENCE.
    """
    return sorted((s for s in SOURCES.values() if s.topic == topic), key=lambda s: -s.weight)


def word_count(text: str) -> int:
    """Words in a draft, not counting citation marks.

    Args:
        text: A draft or a part of one.
    """
    return len(re.findall(r"[A-Za-z0-9'-]+", re.sub(r"\[SRC-\d+\]", "", text)))


def compose_draft(topic: str, source_ids: list[str], notes: str = "") -> str:
    """A draft from the cited sources; a revision applies the editor's notes.

    The first draft uses every source. When the notes ask for cuts, facts are
    dropped lightest first until the draft fits the word limit; when they
    name the banned word "very", the intro loses it.

    Args:
        topic: The topic, as found by the researcher.
        source_ids: The sources to cite.
        notes: The editor's revision notes; empty for a first draft.
    """
    audience = TOPIC_AUDIENCE.get(topic, "readers")
    sources = sorted((SOURCES[i] for i in source_ids if i in SOURCES), key=lambda s: -s.weight)
    lowered = notes.lower()
    intro = (f"{topic.capitalize()} are worth a look for {audience}." if "very" in lowered
             else f"{topic.capitalize()} are very much worth a look for {audience}.")
    headline = f"{topic.title()}: what {audience} should know"

    def render(kept: list[Source]) -> str:
        body = " ".join(f"{s.fact} [{s.source_id}]." for s in kept)
        return f"{headline}\n\n{intro} {body}"

    kept = list(sources)
    if "cut" in lowered or "words" in lowered:
        while len(kept) > STYLE.min_sources and word_count(_body(render(kept))) > STYLE.max_words:
            kept.pop()
    return render(kept)


def _body(draft: str) -> str:
    return draft.partition("\n\n")[2]


def review_draft(draft: str) -> list[str]:
    """The house-style issues in ``draft``; an empty list means it can be published.

    Args:
        draft: Headline, blank line, body.
    """
    issues: list[str] = []
    headline, _, body = draft.partition("\n\n")
    words = word_count(body)
    if words > STYLE.max_words:
        issues.append(f"cut at least {words - STYLE.max_words} words: {words} words, the limit is {STYLE.max_words}")
    cited = set(re.findall(r"\[(SRC-\d+)\]", body))
    if len(cited) < STYLE.min_sources:
        issues.append(f"cite at least {STYLE.min_sources} sources (found {len(cited)})")
    if len(headline) > STYLE.max_headline_chars:
        issues.append(f"shorten the headline to {STYLE.max_headline_chars} characters")
    for banned in STYLE.banned_words:
        if re.search(rf"\b{re.escape(banned)}\b", draft, re.IGNORECASE):
            issues.append(f"remove the word {banned!r}")
    return issues
