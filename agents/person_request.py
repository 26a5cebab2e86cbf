"""Does a message ask for a person? Judged by its wording and by meaning, never by one word.

A person is asked for when the customer wants to talk to, be put through to or get one of *our*
people ("Can I talk to someone please?", "get me your supervisor"), or wants a person instead of the
bot ("I need an agent, not this robot"). A person mentioned in passing is not a request: "send a copy
to my manager" names the customer's own manager, and "can someone check it over" asks for a review.

Two judges, either suffices:

1. wording: a request verb (talk, speak, get me, put me through, ...) followed within the same clause
   by a person word that is not the customer's own ("my manager"), or a refusal of the bot;
2. meaning: the message is close, by the offline embedder, to ways of asking for a person and clearly
   closer to them than to messages that only mention someone (a threshold and a margin).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

PERSON = (r"(?:human(?:\s+being)?|person|some\s?one|some\s?body|any\s?one|any\s?body|agent|rep|"
          r"representative|operator|supervisor|manager|boss|staff\s+member|employee|salesperson|"
          r"sales\s?rep|team\s+member|member\s+of\s+(?:your|the)\s+(?:staff|team)|live\s+(?:chat|support))")
OWN = r"(?:my|our|his|her|their|the\s+customer'?s)"
REQUEST = (r"(?:talk|speak|chat|connect|put\s+(?:me\s+)?through|transfer|escalate|get\s+me|give\s+me|"
           r"need|want|wanna|like|prefer|rather|let\s+me|can\s+i|could\s+i|may\s+i|is\s+there|are\s+there|"
           r"reach|call\s+me|ring\s+me|hand\s+me|pass\s+me|put\s+me\s+on|bring\s+in|get)")
BOT = r"(?:bot|robot|chat\s?bot|machine|ai|computer|automated\s+\w+|auto-?reply|script)"

_REAL_PERSON = re.compile(rf"\b(?:real|actual|live|living|proper|flesh)\b[\w\s,-]{{0,20}}?\b{PERSON}\b", re.I)
_NOT_THE_BOT = re.compile(
    rf"\b(?:not|no|stop|enough|instead\s+of|rather\s+than|done\s+with|tired\s+of|sick\s+of|hate|"
    rf"without)\b\s+(?:(?:talking|chatting|speaking)\s+(?:to|with)\s+)?(?:a|an|the|this|your|that)?\s*{BOT}\b", re.I)
_BOT_FAILS = re.compile(
    rf"\b{BOT}\b[\w\s']{{0,25}}\b(?:useless|not\s+helping|isn'?t\s+helping|doesn'?t\s+help|can'?t\s+help|"
    r"no\s+help|stupid|not\s+working|isn'?t\s+working|doesn'?t\s+understand)\b", re.I)
_ASK = re.compile(rf"\b{REQUEST}\b(?P<gap>[^.?!;]{{0,40}}?)\b(?P<person>{PERSON})\b", re.I)
_GAP_ENDS = re.compile(
    r"(?:^\s*|\b(?:a|an|the|your|some|any|one\s+of\s+your|real|actual|live|human|to|with|through|me)\s+)$", re.I)
"""What stands right before the person word when one is asked for: "talk to a", "get me your", "need an"."""
_TASK_AFTER = re.compile(
    r"^\s+(?:to\s+|who\s+(?:can|will|could)\s+|that\s+(?:can|will)\s+)?(?:come|fix|look|check|visit|repair|"
    r"install|send|review|edit|proofread|write|read|approve|sign|manage|set\s+up)\b", re.I)
"""A person asked to do a task ("someone to come and fix it"), which a specialist arranges."""
_OWN_BEFORE = re.compile(rf"\b{OWN}\s+(?:\w+\s+)?$", re.I)
_SEND_OUT = re.compile(r"\b(?:send|sending|dispatch)\s+(?:out\s+)?$", re.I)

ASKING = (
    "I want to talk to a person", "let me speak to a human", "connect me with a real agent",
    "can I talk to someone", "get me a representative", "I want a real person, not a bot",
    "transfer me to your supervisor", "is there a human I can chat with", "stop the bot, I need a person",
    "put me through to customer service staff",
)
"""Ways of asking for a person, for the judge by meaning."""
MENTIONING = (
    "send a copy to my manager", "my manager asked me to report this", "can someone check it over",
    "send someone out to fix it", "my boss wants the numbers", "forward the invoice to my colleague",
    "the technician should look at the router", "please email the quote to our team lead",
)
"""Messages that mention a person without asking for one."""
MEANING_THRESHOLD = 0.45
MEANING_MARGIN = 0.2
NEIGHBOURS = 2


def asks_for_a_person(text: str) -> bool:
    """Whether ``text`` asks to be put in touch with a person of ours (or refuses the bot)."""
    return by_wording(text) or by_meaning(text)


def by_wording(text: str) -> bool:
    """The wording judge: a request for one of our people, a real person, or a refusal of the bot."""
    if _NOT_THE_BOT.search(text) or _BOT_FAILS.search(text):
        return True
    for match in _REAL_PERSON.finditer(text):
        if not _OWN_BEFORE.search(text[: match.start()]):
            return True
    for match in _ASK.finditer(text):
        before, after = text[: match.start("person")], text[match.end("person"):]
        if _OWN_BEFORE.search(before) or _SEND_OUT.search(before) or _TASK_AFTER.search(after):
            continue  # "to my manager", "send someone out": a person mentioned, not asked for
        if _GAP_ENDS.search(match.group("gap")):
            return True
    return False


def by_meaning(text: str) -> bool:
    """The meaning judge: near the ways of asking for a person, and clearly nearer than to mentions."""
    from handoff.agents.embeddings import offline_embeddings
    from handoff.agents.semantic_router import routing_text

    # The semantic router's text (no ids or numbers, which say nothing of asking for a person): one
    # embedding of the message serves both judges.
    message = offline_embeddings().vector(routing_text(text))
    asking, mentioning = _banks()
    near = float(np.sort(asking @ message)[-NEIGHBOURS:].mean())
    other = float(np.sort(mentioning @ message)[-NEIGHBOURS:].mean())
    return near >= MEANING_THRESHOLD and near - other >= MEANING_MARGIN


@lru_cache(maxsize=1)
def _banks() -> tuple[np.ndarray, np.ndarray]:
    from handoff.agents.embeddings import offline_embeddings

    vector = offline_embeddings().vector
    return np.array([vector(t) for t in ASKING]), np.array([vector(t) for t in MENTIONING])
