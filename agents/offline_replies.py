"""What the offline model says: what it found, what it needs, and what happens next.

It answers from this turn's tool results, asks for exactly the field a handoff still needs (by its
human name), turns an id the systems do not know into a question, and explains a refused handoff in
the customer's terms. It never repeats the customer's message back, and never shows internal error
text (exception names, rejection codes).

Asking is written in one fixed form, ``To take this further, <Title> needs <field>.``: the next turn
reads it back from the transcript to carry on with the request once the field arrives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from handoff.agents.offline_fields import human_name, not_found
from handoff.agents.offline_reading import (
    TRANSFER_PREFIX,
    Reading,
    description_of,
    target_of,
    title_of,
)

OFFLINE_LABEL = "[offline model]"
ASKED = re.compile(r"To take this further, (?P<title>.+?) needs (?P<fields>[^.]+)\.")
REJECTED = re.compile(r"^Handoff (?:rejected|failed) \[(?P<code>\w+)\]: (?P<message>.*)$", re.S)
UNKNOWN_ID = re.compile(r"\bno\s+(\w+(?:\s\w+)?)\s+'([^']+)'")
FIELD_ERROR = re.compile(r"(?:^|;\s*|invalid:\s*)(?P<field>[a-z_][a-z0-9_]*): (?P<error>[^;]+)")
THANKS = re.compile(r"\b(?:thanks?|thank\s+you|cheers|that'?s\s+(?:all|everything|it)|bye|goodbye|great|perfect|"
                    r"ok(?:ay)?|got\s+it)\b", re.I)


@dataclass
class Ask:
    """A handoff that waits for fields the conversation does not hold yet."""

    transfer: dict[str, Any]
    fields: tuple[str, ...]

    def sentence(self, *, question: bool = True) -> str:
        names = [human_name(self.transfer, f) for f in self.fields]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        asked = f"To take this further, {title_of(self.transfer)} needs {listed}."
        return f"{asked} Could you tell me {listed}?" if question else asked


@dataclass
class Reply:
    """The parts of an answer, in the order they are said."""

    reading: Reading
    found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    asks: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def text(self) -> str:
        r = self.reading
        parts = [f"{OFFLINE_LABEL} {r.title} here (deterministic offline model, no LLM was called)."]
        parts.extend(self.found + self.problems + self.asks + self.next_steps)
        return " ".join(p.strip() for p in parts if p.strip())


def answer(reading: Reading, *, ask: Ask | None = None) -> str:
    """The offline model's words for this turn."""
    reply = Reply(reading)
    if reading.just_received and reading.briefing:
        reply.found.append(_taken_over(reading.briefing))
    results = []
    for call in reading.my_calls:
        text = reading.result_of(call)
        if text is None:
            continue
        if call["name"].startswith(TRANSFER_PREFIX):
            reply.problems.append(_refused(reading, call, text))
            continue
        results.append(text)
        reply.found.append(_result(reading, call, text))
    for what, value in not_found(results):
        reply.problems.append(f"I can't find {what} {value} in our records. Could you check the number?")
    if ask is not None:
        reply.asks.append(ask.sentence(question=not reply.problems))
    if not reply.found and not reply.problems and not reply.asks:
        reply.found.append(_nothing_to_do(reading))
    if not reply.asks and not reply.problems:
        reply.next_steps.append(_next(reading))
    return reply.text()


def asked_before(reply: str) -> str | None:
    """The colleague title an earlier offline reply said it was waiting for fields for, if any."""
    found = ASKED.search(reply)
    return found.group("title") if found else None


def _taken_over(briefing: str) -> str:
    pieces = briefing.split(" | ")
    first = re.sub(r"^From (.+?) \((?:\w+) handoff\):\s*", r"\1 handed this to me: ", pieces[0])
    kept = [first, *(re.sub(r"^On arrival \([\w_]+\):\s*", "On arrival I checked: ", p)
                     for p in pieces[1:] if p.startswith("On arrival"))]
    return "I have taken over. " + " ".join(p.rstrip(".") + "." for p in kept)


def _result(reading: Reading, call: dict[str, Any], text: str) -> str:
    tool = next((t for t in reading.own if t["name"] == call["name"]), None)
    what = _plain(description_of(tool)) if tool else call["name"].replace("_", " ")
    if text.lower().startswith("refused:"):
        return f"I could not {what[0].lower() + what[1:]}: {text.split(':', 1)[1].strip()}."
    if text.lower().startswith("error:"):
        return ""  # reported as a question (an unknown id) or below
    return f"{what}: {text.rstrip('.')}."


def _refused(reading: Reading, call: dict[str, Any], text: str) -> str:
    """A refused handoff in the customer's terms, with what is needed to try again."""
    transfer = next((t for t in reading.transfers if t["name"] == call["name"]), None)
    title = title_of(transfer) if transfer else target_of(call).replace("_", " ").title()
    found = REJECTED.match(text.strip())
    if found is None:
        return f"{title} could not take this over just now, so I will keep helping you here."
    code, message = found.group("code"), found.group("message")
    unknown = UNKNOWN_ID.search(message)
    if unknown:  # e.g. the receiver's set-up could not find the account: a question, not the error text
        return f"I can't find {unknown.group(1)} {unknown.group(2)} in our records. Could you check the number?"
    if code == "invalid_payload" and transfer is not None:
        fields = [m.group("field") for m in FIELD_ERROR.finditer(message.split(" is invalid: ", 1)[-1])]
        known = [f for f in fields if f in transfer.get("parameters", {}).get("properties", {})]
        if known:
            return Ask(transfer, tuple(dict.fromkeys(known))).sentence()
    if code == "precondition_failed":
        why = message.split(": ", 1)[-1].split(";", 1)[0].strip().rstrip(".")
        return f"{title} can't take this yet: {why}. {_what_would_help(reading, why)}".strip()
    return f"{title} can't take this over right now, so I will keep helping you here."


def _what_would_help(reading: Reading, why: str) -> str:
    """Ask for what one of this agent's own tools needs to settle a precondition ("verify" -> postcode)."""
    lowered = why.lower()
    for tool in reading.own:
        words = re.findall(r"[a-z]{5,}", description_of(tool).lower())
        if any(w[:6] in lowered for w in words):
            props = tool.get("parameters", {}).get("properties", {})
            needed = [f for f in tool.get("parameters", {}).get("required", []) if f in props
                      and reading.case.get(f) in (None, "", [])]
            if needed:
                names = [human_name(tool, f) for f in needed]
                return f"Could you give me your {' and '.join(n.removeprefix('your ') for n in names)}?"
    return ""


def _nothing_to_do(reading: Reading) -> str:
    if THANKS.search(reading.user) and len(reading.user) < 80:
        return "You're welcome."
    return "How can I help?"


def _next(reading: Reading) -> str:
    """What this agent can do next, from its own unused tools and the colleagues it can bring in."""
    offers = [_lower_first(_plain(description_of(t))) for t in reading.own if t["name"] not in reading.called]
    colleagues = [f"{title_of(t)} ({_lower_first(_plain(description_of(t)))})" for t in reading.transfers
                  if target_of(t) != "human"]
    parts = []
    if offers:
        parts.append("Next I can " + "; or ".join(offers[:2]) + ".")
    if colleagues:
        parts.append("If it's about something else, I'll bring in " + " or ".join(colleagues[:2]) + ".")
    return " ".join(parts)


def _plain(description: str) -> str:
    """A description without its asides: "Refund an invoice (what is left of it ...)" -> "Refund an invoice"."""
    return re.sub(r"\s*\([^)]*\)", "", description).strip().rstrip(".")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
