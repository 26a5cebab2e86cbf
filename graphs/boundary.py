"""What may enter the graph, checked on every entry point; and the one validation layer for values.

A caller gives the user's message(s), or ``Command(resume=...)`` to continue a
paused escalation, and nothing else: the active agent, the case file, the
handoff records, the counters, the briefing, notices and usage are trusted
state that only the graph's own nodes write (``state.TRUSTED_KEYS``). The
input schema (``state.HandoffInput``) already drops unknown keys silently;
refusing them here instead tells a caller who tried that it did not work, and
``Command(update=...)``/``Command(goto=...)``, which LangGraph writes to the
channels without any input schema, are refused too.

Whatever is stored must be storable by every store: PostgreSQL's JSON refuses
``\\u0000`` and NaN, msgpack refuses integers wider than 64 bits, and deep
nesting overflows the serializers' recursion limits. So every value that
crosses a boundary (a user's message, an escalation answer, a model's text and
tool arguments, tool results, case-file updates, initialisation results, text
about to be embedded) passes one of three checks here, bounded in characters,
size and depth:

- ``check_text`` / ``check_value`` refuse (``InputRefused``, naming the field
  and the limit): for what people and callers send, before anything runs;
- ``sanitize_value`` replaces what cannot be stored (control characters,
  non-finite numbers) but refuses what is too deep or too large: for a model's
  tool arguments, which become a refused tool call;
- ``clean_text`` / ``clean_value`` never refuse: they replace and cut, for
  text a model or a tool produced and metadata.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import HumanMessage, convert_to_messages
from langgraph.types import Command
from pydantic import BaseModel, TypeAdapter, ValidationError

from handoff.agents.ledger import store_label as store_label  # the thread-id encoding, shared with the ledger
from handoff.state import TRUSTED_KEYS

MAX_MESSAGE_CHARS = 20_000
"""Longest user message the graph takes."""
MAX_MESSAGES_PER_TURN = 20
"""Most user messages one input may carry."""
MAX_DEPTH = 32
"""Deepest nesting of a structured value (tool arguments, case-file updates, an escalation answer):
far beyond any schema here, far below where serializers and PostgreSQL's JSON give up."""
MAX_VALUE_CHARS = 20_000
"""Largest structured value (tool arguments, case-file updates, message metadata), as JSON characters."""
MAX_RESUME_CHARS = MAX_MESSAGE_CHARS + MAX_VALUE_CHARS
"""Largest escalation answer: a reply of at most ``MAX_MESSAGE_CHARS`` plus its case-file updates."""
MAX_MODEL_TEXT_CHARS = 100_000
"""Longest text kept from one model message or tool result; the rest is cut with ``CUT``."""
MAX_NOTE_CHARS = 2_000
"""Longest error text passed on (a tool's exception, a failed initialisation)."""
MAX_EMBEDDING_CHARS = 8_000
"""Longest text sent to an embedding model (``for_embedding``)."""
MAX_ID_CHARS = 128
"""Longest message id or name."""
INPUT_KEYS = ("messages",)

CUT = " [...cut]"
"""Ends a text that ``clean_text`` shortened."""
REPLACEMENT = "\ufffd"
"""Stands in for a character that cannot be stored."""
TOO_DEEP = "[nested too deep]"
"""Stands in for a part of a value nested deeper than its limit (``clean_value``)."""

_FREE_TEXT_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters other than tab, newline and carriage return, and unpaired surrogates (not text)."""
_NAME_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""The same plus tab and line breaks: for keys, ids and names."""
_CHAR_NAMES = {0: "NUL", 8: "backspace", 0x1B: "escape", 0x7F: "delete"}
_STORABLE_INTS = range(-(2**63), 2**64)
"""Integers msgpack (checkpoints) can hold."""


class InputRefused(ValueError):
    """A turn's input that the graph does not take; the message names what was wrong and the limit."""


# ------------------------------------------------------------------------------------------ input


def admit(graph_input: Any, extra_keys: frozenset[str] = frozenset()) -> Any:
    """The input as the graph takes it: ``None`` (continue from the checkpoint), a resume
    ``Command``, or ``{"messages": [HumanMessage, ...]}`` (plus the application's own ``extra_keys``,
    which the graph's input schema declares, each checked storable and within the limits).

    Raises:
        InputRefused: trusted keys or unknown keys in the input, a ``Command`` that updates state or
            jumps to a node, a message that is not the user's, one that is empty, too long or holds a
            control character, or a resume value that is too large, too deep or not storable.
    """
    if graph_input is None:
        return None
    if isinstance(graph_input, Command):
        return _admit_command(graph_input)
    if not isinstance(graph_input, Mapping):
        raise InputRefused(
            f"a turn's input is {{'messages': [the user's message]}}, not {type(graph_input).__name__}"
        )
    extra = [str(k) for k in graph_input if k not in INPUT_KEYS and k not in extra_keys]
    if extra:
        trusted = [k for k in extra if k in TRUSTED_KEYS]
        detail = (f"{', '.join(trusted)} {'is' if len(trusted) == 1 else 'are'} written only by the "
                  "graph's own nodes" if trusted else f"unknown key(s): {', '.join(extra)}")
        allowed = ", ".join(repr(k) for k in ("messages", *sorted(extra_keys)))
        raise InputRefused(f"a turn's input may carry only {allowed}; {detail}")
    own = {str(k): check_value(v, field=str(k)) for k, v in graph_input.items() if k in extra_keys}
    return {"messages": _user_messages(graph_input.get("messages")), **own}


def admit_context(context: Any, schema: type[Any] | None) -> Any:
    """The run's context as the graph's ``context_schema`` (a value of it, or a mapping of its fields).

    Raises:
        InputRefused: a context of another type, a mapping with fields the schema does not have, or
            one whose values do not fit it; the graph runs nothing.
    """
    if context is None or schema is None:
        return context
    if isinstance(schema, type) and not _is_typed_dict(schema) and isinstance(context, schema):
        return context
    name = getattr(schema, "__name__", "the context schema")
    if not isinstance(context, Mapping):
        raise InputRefused(f"context: a {type(context).__name__}; the graph takes a {name} "
                           "or a mapping of its fields")
    fields = _schema_fields(schema)
    unknown = sorted(str(k) for k in context if k not in fields)
    if unknown:
        raise InputRefused(f"context: unknown field(s) {', '.join(unknown)}; {name} has {', '.join(sorted(fields))}")
    try:
        return TypeAdapter(schema).validate_python(dict(context))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
        raise InputRefused(f"context: {clean_text(problems, max_chars=500)}") from None


def _is_typed_dict(schema: type[Any]) -> bool:
    return isinstance(schema, type) and issubclass(schema, dict) and hasattr(schema, "__annotations__")


def _schema_fields(schema: type[Any]) -> set[str]:
    if dataclasses.is_dataclass(schema):
        return {f.name for f in dataclasses.fields(schema)}
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return set(schema.model_fields)
    return set(getattr(schema, "__annotations__", {}))


def _admit_command(command: Command) -> Command:
    if command.update is not None or command.goto or command.graph is not None:
        raise InputRefused(
            "a Command given as input may only resume a paused escalation (Command(resume=...)); "
            "updating state or jumping to a node is reserved to the graph's own nodes"
        )
    if isinstance(command.resume, BaseModel):  # e.g. a HumanAnswer: stored as plain data, like any answer
        command = Command(resume=command.resume.model_dump(mode="json"))
    if command.resume is not None:
        # Refused before anything runs: the escalation stays pending and can be answered again.
        check_value(command.resume, field="resume", max_chars=MAX_RESUME_CHARS)
    return command


def _user_messages(raw: Any) -> list[HumanMessage]:
    if raw is None or (isinstance(raw, Sequence) and not isinstance(raw, str) and not raw):
        raise InputRefused("a turn's input needs the user's message in 'messages'")
    items = [raw] if isinstance(raw, str | Mapping | HumanMessage | tuple) else list(raw)
    if len(items) > MAX_MESSAGES_PER_TURN:
        raise InputRefused(f"messages: {len(items)} messages in one turn; the limit is {MAX_MESSAGES_PER_TURN}")
    try:
        messages = convert_to_messages(items)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InputRefused(f"messages: not a message: {clean_text(str(exc), max_chars=200)}") from None
    for position, message in enumerate(messages):
        field = f"messages[{position}]"
        if not isinstance(message, HumanMessage):
            raise InputRefused(
                f"{field}: a message of type {message.type!r}; a turn's input carries only the "
                "user's messages (agent, tool and system messages are written by the graph)"
            )
        text = message.text
        if not text.strip():
            raise InputRefused(f"{field}: the message is empty")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InputRefused(f"{field}: {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}")
        _check_message(message, field)
    return messages  # type: ignore[return-value]


def _check_message(message: HumanMessage, field: str) -> None:
    """Everything of a user's message that is stored: its content, id, name and metadata."""
    check_value(message.content, field=field, max_chars=2 * MAX_MESSAGE_CHARS)
    for name in ("id", "name"):
        value = getattr(message, name)
        if value is not None:
            check_text(str(value), field=f"{field}.{name}", max_chars=MAX_ID_CHARS, free_text=False)
    for name in ("additional_kwargs", "response_metadata"):
        check_value(getattr(message, name), field=f"{field}.{name}")


THREAD_ID_MAX = 128
"""Longest thread id."""
THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")
"""A thread id: letters, digits and ``. _ : @ + -``, starting with a letter or digit (an e-mail or
``order.42`` is fine; spaces, newlines and control characters are not)."""


def check_thread_id(thread_id: str) -> str:
    """``thread_id`` if it is a valid thread id (the same rule in the CLI, the session and the service).

    Raises:
        InputRefused: it is empty, longer than ``THREAD_ID_MAX`` or has a character outside the pattern.
    """
    if not thread_id:
        raise InputRefused("thread id: empty")
    if len(thread_id) > THREAD_ID_MAX:
        raise InputRefused(f"thread id: {len(thread_id)} characters; the limit is {THREAD_ID_MAX}")
    if not THREAD_ID_PATTERN.fullmatch(thread_id):
        raise InputRefused(
            "thread id: use letters, digits and . _ : @ + - only, starting with a letter or digit "
            f"(at most {THREAD_ID_MAX} characters)"
        )
    return thread_id


# ------------------------------------------------------------------------------------------ text


def check_text(text: str, *, field: str, max_chars: int, free_text: bool = True) -> str:
    """``text`` if it is storable and at most ``max_chars`` long.

    Free text may hold tabs and line breaks; a name or id (``free_text=False``) may not.

    Raises:
        InputRefused: naming ``field`` and the character or the limit.
    """
    if len(text) > max_chars:
        raise InputRefused(f"{field}: {len(text)} characters; the limit is {max_chars}")
    bad = (_FREE_TEXT_BAD if free_text else _NAME_BAD).search(text)
    if bad is not None:
        raise InputRefused(f"{field}: {_describe(bad.group(), bad.start())}")
    return text


def clean_text(text: str, *, max_chars: int | None = None) -> str:
    """``text`` made storable: control characters (but tab and line breaks) and unpaired surrogates
    replaced by U+FFFD, and cut to ``max_chars`` (ending with ``CUT``)."""
    text = _FREE_TEXT_BAD.sub(REPLACEMENT, text)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max(0, max_chars - len(CUT))] + CUT
    return text


def for_embedding(text: str, *, max_chars: int = MAX_EMBEDDING_CHARS) -> str:
    """``text`` as it may be sent to an embedding model: storable characters, at most ``max_chars``
    (embedding models refuse or silently truncate longer input; this cut is ours and visible)."""
    return clean_text(text, max_chars=max_chars)


def _describe(char: str, position: int) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return f"an unpaired surrogate U+{code:04X} at position {position} is not valid text"
    name = _CHAR_NAMES.get(code)
    label = f"U+{code:04X}" + (f" ({name})" if name else "")
    return (f"the control character {label} at position {position} is not allowed "
            "(text may hold tabs and line breaks, no other control characters)")


# ------------------------------------------------------------------------------------------ values


def check_value(value: Any, *, field: str, max_depth: int = MAX_DEPTH, max_chars: int = MAX_VALUE_CHARS) -> Any:
    """``value`` as plain JSON data (any mapping a dict, any sequence a list) if it is JSON data every
    store takes: text without control characters (but tab and line breaks), finite numbers, integers
    msgpack holds, keys that are text, at most ``max_depth`` levels deep and about ``max_chars``
    characters as JSON.

    Raises:
        InputRefused: naming where in ``field`` the value breaks which rule or limit.
    """
    return _Walk(field, max_depth, max_chars, repair=False).visit(value, (), 0)


def sanitize_value(
    value: Any, *, field: str, max_depth: int = MAX_DEPTH, max_chars: int = MAX_VALUE_CHARS
) -> Any:
    """A storable copy of ``value``: characters that cannot be stored replaced by U+FFFD, non-finite
    numbers and integers too wide for msgpack written as text, other objects as their text.

    Raises:
        InputRefused: ``value`` is nested deeper than ``max_depth`` or larger than ``max_chars``;
            those are not repaired, since a cut value would mean something else.
    """
    return _Walk(field, max_depth, max_chars, repair=True).visit(value, (), 0)


def clean_value(value: Any, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_VALUE_CHARS) -> Any:
    """A storable copy of ``value`` that never refuses: like ``sanitize_value``, and what lies deeper
    than ``max_depth`` becomes ``TOO_DEEP`` and what lies beyond ``max_chars`` is cut. For metadata
    and text written by a model or a tool, which is kept rather than refused."""
    return _Walk("value", max_depth, max_chars, repair=True, cut=True).visit(value, (), 0)


class _Walk:
    """One pass over a value: depth first, bounded by ``max_depth`` (so it never recurses further),
    counting JSON characters against ``max_chars``."""

    def __init__(self, field: str, max_depth: int, max_chars: int, *, repair: bool, cut: bool = False) -> None:
        self.field, self.max_depth, self.max_chars = field, max_depth, max_chars
        self.repair, self.cut = repair, cut
        self.size = 0

    def visit(self, value: Any, path: tuple[Any, ...], depth: int) -> Any:
        if isinstance(value, str):
            return self._text(value, path, _FREE_TEXT_BAD)
        if value is None or isinstance(value, bool):
            self._count(5, path)
            return value
        if isinstance(value, int):
            return self._integer(value, path)
        if isinstance(value, float):
            return self._float(value, path)
        if isinstance(value, Mapping | list | tuple):
            if depth >= self.max_depth:
                if self.cut:
                    return self._text(TOO_DEEP, path, _FREE_TEXT_BAD)
                raise InputRefused(f"{self._where(path)}: nested more than {self.max_depth} levels deep; "
                                   f"the limit is {self.max_depth}")
            self._count(2, path)
            if isinstance(value, Mapping):
                return self._mapping(value, path, depth)
            out = []
            for index, item in enumerate(value):
                if self.cut and self.size >= self.max_chars:
                    break
                self._count(1, path)
                out.append(self.visit(item, (*path, index), depth + 1))
            return out
        if self.repair:
            return self._text(str(value), path, _FREE_TEXT_BAD)
        raise InputRefused(f"{self._where(path)}: a {type(value).__name__} is not JSON data")

    def _mapping(self, value: Mapping, path: tuple[Any, ...], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if self.cut and self.size >= self.max_chars:
                break
            if not isinstance(key, str):
                if not self.repair:
                    raise InputRefused(f"{self._where(path)}: the key {key!r} is not text")
                key = str(key)
            key = self._text(key, (*path, key), _NAME_BAD)
            self._count(2, path)
            out[key] = self.visit(item, (*path, key), depth + 1)
        return out

    def _text(self, text: str, path: tuple[Any, ...], bad: re.Pattern[str]) -> str:
        found = bad.search(text)
        if found is not None:
            if not self.repair:
                raise InputRefused(f"{self._where(path)}: {_describe(found.group(), found.start())}")
            text = bad.sub(REPLACEMENT, text)
        if self.cut and self.size + len(text) + 2 > self.max_chars:
            text = clean_text(text, max_chars=max(len(CUT), self.max_chars - self.size - 2))
        self._count(len(text) + 2, path)
        return text

    def _integer(self, value: int, path: tuple[Any, ...]) -> int | str:
        if value not in _STORABLE_INTS:
            if not self.repair:
                raise InputRefused(f"{self._where(path)}: the integer is wider than 64 bits")
            return self._text(str(value), path, _FREE_TEXT_BAD)
        self._count(len(str(value)), path)
        return value

    def _float(self, value: float, path: tuple[Any, ...]) -> float | str:
        if not math.isfinite(value):
            if not self.repair:
                raise InputRefused(f"{self._where(path)}: {value} is not a finite number")
            return self._text(str(value), path, _FREE_TEXT_BAD)
        self._count(len(repr(value)), path)
        return value

    def _count(self, chars: int, path: tuple[Any, ...]) -> None:
        self.size += chars
        if self.size > self.max_chars and not self.cut:
            raise InputRefused(f"{self.field}: more than {self.max_chars} characters as JSON; "
                               f"the limit is {self.max_chars}")

    def _where(self, path: tuple[Any, ...]) -> str:
        """``field`` and the path into it, shortened: a refused value may be nested hundreds deep."""
        parts = "".join(f"[{p}]" if isinstance(p, int) else f".{clean_text(str(p), max_chars=40)}"
                        for p in path[:6])
        return f"{self.field}{parts}{'...' if len(path) > 6 else ''}"
