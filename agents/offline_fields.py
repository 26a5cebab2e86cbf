"""Filling a tool's arguments from the case file and the conversation, and naming what is missing.

A value comes from, in order: the case file, a pattern the schema declares (an id such as
``ACC-1001``, found whatever its case), an id token of the field's kind, a number, or the user's
words (only for required free-text fields). A field that cannot be filled is reported by its human
name, taken from the schema's own description, so the model can ask for exactly that.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

ID_TOKEN = re.compile(r"\b([A-Za-z]{2,5})-(\d{2,})\b")
NUMBER = re.compile(r"(?<![\w-])\$?(\d+(?:[.,]\d+)?)")
NOT_FOUND = re.compile(r"^error:\s*no\s+(?P<what>[\w ]+?)\s+'(?P<value>[^']+)'", re.I)
"""A tool's answer that an id does not exist ("error: no account 'ACC-9999'")."""
OWNER_WORDS = re.compile(r"^(?:the\s+)?(?:customer|user|lead|caller|client|contact)'s\s+", re.I)
OWNER_VERB = re.compile(r"\bthe\s+(?:customer|user|lead|caller|client|contact)\s+(\w+?)(?:e?s)\b", re.I)
"""The owner as the subject ("how many seats the lead needs") -> "you need"."""


@dataclass(frozen=True)
class Filled:
    """A tool call with every argument that could be filled, and the required ones that could not."""

    name: str
    args: dict[str, Any]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    def call(self, salt: str) -> dict[str, Any]:
        digest = hashlib.sha1(f"{self.name}|{salt}|{sorted(self.args.items())}".encode()).hexdigest()
        return {"name": self.name, "args": self.args, "id": f"offline_{digest[:12]}", "type": "tool_call"}


@dataclass(frozen=True)
class Sources:
    """Where argument values come from."""

    case: dict[str, Any]
    user: str
    """The text the request is about: this message, or the earlier one a pending request came from."""
    history: str
    current: str = ""
    """This turn's message, searched first for ids (the customer may just have given one)."""
    found: str = ""
    """What this agent's tools returned this turn (a plan id it just chose), searched next."""
    reason: str | None = None
    summary: str | None = None
    refused_ids: frozenset[str] = frozenset()
    """Ids a tool said do not exist: never passed on."""


def fill(tool: dict[str, Any], sources: Sources) -> Filled:
    """Fill ``tool``'s arguments; ``missing`` names the required ones left empty."""
    params = tool.get("parameters", {})
    required = set(params.get("required", []))
    args: dict[str, Any] = {}
    for name, schema in params.get("properties", {}).items():
        value = _value(name, schema, sources, free_text=name in required)
        if value is not None:
            args[name] = value
    missing = tuple(r for r in params.get("required", []) if r not in args)
    return Filled(name=tool["name"], args=args, missing=missing)


def human_name(tool: dict[str, Any], field: str) -> str:
    """What to call ``field`` when asking the customer for it: its description, made conversational
    ("The customer's account id." -> "your account id"), else its name in words."""
    schema = tool.get("parameters", {}).get("properties", {}).get(field, {})
    text = str(schema.get("description") or schema.get("title") or "").strip().rstrip(".")
    if not text or len(text) > 80:
        return field.replace("_", " ")
    if OWNER_WORDS.match(text):
        return OWNER_WORDS.sub("your ", text)
    text = OWNER_VERB.sub(lambda m: f"you {_base(m.group(0).split()[-1])}", text)
    return text[0].lower() + text[1:]


def _base(verb: str) -> str:
    """The verb after "you": needs -> need, has -> have, experiences -> experience."""
    irregular = {"has": "have", "is": "are", "does": "do"}
    if verb.lower() in irregular:
        return irregular[verb.lower()]
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("sses", "shes", "ches", "xes")):
        return verb[:-2]
    return verb[:-1] if verb.endswith("s") else verb


def stems(field: str) -> set[str]:
    """The words a field's name is made of, for finding the tool that produces it ("plan_id" -> plan)."""
    return {part for part in field.lower().split("_") if len(part) >= 4}


def not_found(results: list[str]) -> list[tuple[str, str]]:
    """(what, value) for every tool answer saying an id does not exist."""
    return [(m.group("what"), m.group("value")) for text in results if (m := NOT_FOUND.match(text.strip()))]


def _kind(schema: dict[str, Any]) -> str:
    return schema.get("type") or next(
        (s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), "string")


def _pattern(schema: dict[str, Any]) -> str | None:
    return schema.get("pattern") or next((s["pattern"] for s in schema.get("anyOf", []) if s.get("pattern")), None)


def _value(name: str, schema: dict[str, Any], sources: Sources, *, free_text: bool) -> Any:
    kind = _kind(schema)
    if name == "reason" and sources.reason:
        return sources.reason
    if name == "summary":
        return sources.summary or f"User said: {sources.user[:300]}"
    if sources.case.get(name) not in (None, "", []):
        return sources.case[name]
    pattern = _pattern(schema)
    if pattern:
        return _by_pattern(pattern.lstrip("^").rstrip("$"), sources)
    if name.endswith("_id"):
        return _id_token(name[:3].upper(), sources)
    if not free_text:
        return None
    if kind in ("number", "integer"):
        found = NUMBER.search(sources.user)
        if not found:
            return None
        number = float(found.group(1).replace(",", ""))
        return number if kind == "number" else int(number)
    if kind == "string" and "enum" not in schema:
        return sources.user[:300]
    if kind == "array":
        return [sources.user[:200]]
    return None


def _by_pattern(pattern: str, sources: Sources) -> str | None:
    """The latest text's match of an id pattern, in the pattern's own case ("acc-1001" -> "ACC-1001")."""
    try:
        rule = re.compile(rf"\b{pattern}\b", re.IGNORECASE)
    except re.error:
        return None
    for text in (sources.current, sources.found, sources.user, sources.history):
        for found in reversed([m.group(0) for m in rule.finditer(text)]):
            value = _as_pattern_case(found, pattern)
            if value not in sources.refused_ids and re.fullmatch(pattern, value):
                return value
    return None


def _as_pattern_case(value: str, pattern: str) -> str:
    letters = re.match(r"[A-Za-z]+", pattern)
    if letters and letters.group(0).isupper():
        return value.upper()
    return value


def _id_token(prefix: str, sources: Sources) -> str | None:
    for text in (sources.current, sources.found, sources.user, sources.history):
        for token_prefix, digits in reversed(ID_TOKEN.findall(text)):
            value = f"{token_prefix.upper()}-{digits}"
            if token_prefix.upper().startswith(prefix) and value not in sources.refused_ids:
                return value
    return None
