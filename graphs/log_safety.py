"""No sensitive text in any log record, whoever writes it: our code, LangGraph, a DEBUG database driver.

A filter cannot guarantee that for a whole process: a filter on a logger sees
only that logger's own records, not its children's, and a handler added later
(a notebook's ``basicConfig``, pytest's capture, ``langgraph dev``'s own
set-up) would have none. So ``protect`` wraps logging's record factory, which
every record passes through once, when it is made (only for enabled levels):

- the message is formatted there with binary arguments elided (``<N bytes>``:
  aiosqlite logs every statement with its parameters at DEBUG, checkpoint
  blobs and the store's JSON included) and masked. A record with nothing to
  mask keeps its message and arguments; otherwise each argument is masked
  on its own where that masks the whole line (formatters such as uvicorn's
  access log unpack the arguments), and else the masked line becomes the
  message with no arguments left for a handler to format again;
- a structlog event (a dict message, as ``langgraph dev`` logs) stays a dict
  with its values masked;
- an exception's traceback is masked into ``exc_text`` and the exception
  object dropped, so no formatter renders its raw message.

Importing a handoff graph installs it (graphs/telemetry.py, before any
persistence is opened), and every run calls ``protect`` with its domain's
``Sensitivity``; each declaration seen joins the masking of all records,
since a record does not say which conversation it came from.
Known gap: ``extra={...}`` fields are set on a record after the factory made
it, so they are not masked; nothing in this project logs sensitive ``extra``.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from handoff.graphs.masking import MASKED, Masker, Sensitivity, masker_for

WITHHELD = "[log record withheld: it could not be masked]"

_lock = threading.Lock()
_previous: Callable[..., logging.LogRecord] | None = None
_seen: set[Sensitivity] = set()
_declared = Sensitivity()
_masker: Masker = masker_for(_declared)

_BINARY_ESCAPE = re.compile(r"(\\x[0-9a-fA-F]{2})(?=\w)")
"""A byte escape glued to the next word (msgpack's length byte before a string): split them, so
``\\xa8ACC-1001`` reads as a word the masker's patterns see."""
_PLAIN = (bool, int, float, type(None), uuid.UUID, datetime, date, time, timedelta, enum.Enum)


def protect(sensitivity: Sensitivity | None = None) -> None:
    """Mask every log record of this process from now on; ``sensitivity`` joins what is masked."""
    global _previous, _declared, _masker
    if _previous is not None and (sensitivity is None or sensitivity in _seen):
        return
    with _lock:
        if _previous is None:
            _previous = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_safe_record)
        if sensitivity is not None and sensitivity not in _seen:
            _seen.add(sensitivity)
            _declared = _declared | sensitivity
            _masker = masker_for(_declared)


def _safe_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous is not None
    record = _previous(*args, **kwargs)
    try:
        scrub(record, _masker)
    except Exception:  # a log call must never fail because of masking: drop the text instead
        record.msg, record.args = WITHHELD, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record


def scrub(record: logging.LogRecord, masker: Masker) -> None:
    """Mask ``record`` in place: its message and arguments, traceback and stack.

    A record with nothing to mask is left as it is. Otherwise its arguments keep their
    shape where masking each one masks the whole line (uvicorn's access formatter unpacks
    them); where it does not (the sensitive part spans template and argument), the masked
    line becomes the message, with no arguments.
    """
    if isinstance(record.msg, Mapping):
        record.msg = _masked_event(record.msg, masker)
    elif record.args:
        record.msg, record.args = _masked_message(record.msg, record.args, masker)
    else:
        text = _unglued(str(record.msg))
        masked = masker.text(text)
        if masked != text:
            record.msg = masked
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = masker.text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = masker.text(record.exc_text)
    if record.stack_info:
        record.stack_info = masker.text(record.stack_info)


def _masked_event(event: Mapping[Any, Any], masker: Masker) -> dict[Any, Any]:
    """A structlog event dict with its values masked; its exception rendered now, masked, as
    ``exception`` (structlog would render ``exc_info`` later, from the raw exception)."""
    masked = {k: MASKED if str(k).lower() in masker.keys else _masked_data(v, masker)
              for k, v in event.items() if k != "exc_info"}
    exc_info = event.get("exc_info")
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info and exc_info[0] is not None:
        masked["exception"] = masker.text("".join(traceback.format_exception(*exc_info)).rstrip("\n"))
    return masked


def _masked_message(msg: Any, args: Any, masker: Masker) -> tuple[Any, Any]:
    """``(msg, args)`` of a record, masked; binary arguments elided."""
    safe = _elided(args)
    text = _format(msg, safe)
    if text is None:  # a bad format string: logging reports it, from the masked parts only
        return masker.text(_unglued(f"{msg} {safe!r}")), ()
    masked = masker.text(_unglued(text))
    if masked == _unglued(text):
        return msg, safe
    template = masker.text(str(msg))
    shaped = {k: _masked_arg(v, masker) for k, v in safe.items()} if isinstance(safe, Mapping) \
        else tuple(_masked_arg(v, masker) for v in safe)
    again = _format(template, shaped)
    if again is not None and masker.text(_unglued(again)) == _unglued(again):
        return template, shaped
    return masked, ()


def _format(msg: Any, args: Any) -> str | None:
    try:
        return str(msg) % args
    except (TypeError, ValueError, KeyError):
        return None


def _unglued(text: str) -> str:
    return _BINARY_ESCAPE.sub(r"\1 ", text)


class _Shown:
    """Stands in for a value in a log message: prints as the given texts under %s and %r."""

    def __init__(self, text: str, representation: str | None = None) -> None:
        self.text = text
        self.representation = text if representation is None else representation

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.representation


def _masked_arg(value: Any, masker: Masker) -> Any:
    """One format argument, masked on its own: text stays text, plain values stay as they are."""
    if isinstance(value, str):
        return masker.text(_unglued(value))
    if isinstance(value, _PLAIN):
        return value
    text, representation = _unglued(str(value)), _unglued(repr(value))
    masked_text, masked_representation = masker.text(text), masker.text(representation)
    if (masked_text, masked_representation) == (text, representation):
        return value
    return _Shown(masked_text, masked_representation)


def _elided(value: Any) -> Any:
    """``value`` as it may be formatted into a message: bytes elided, also inside a call's arguments
    (the same object when there are none)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _Shown(f"<{len(value)} bytes>")
    if isinstance(value, functools.partial):  # aiosqlite: "executing %s" % partial(execute, sql, params)
        name = getattr(value.func, "__qualname__", None) or repr(value.func)
        parts = [repr(_elided(a)) for a in value.args]
        parts += [f"{k}={_elided(v)!r}" for k, v in value.keywords.items()]
        return _Shown(f"{name}({', '.join(parts)})")
    if type(value) in (tuple, list):
        items = [_elided(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
    if type(value) is dict:
        elided = {k: _elided(v) for k, v in value.items()}
        return value if all(elided[k] is v for k, v in value.items()) else elided
    return value


def _masked_data(value: Any, masker: Masker) -> Any:
    """A structured log value with its text masked; what is neither text nor plain becomes masked text."""
    if isinstance(value, str):
        return masker.text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: MASKED if str(k).lower() in masker.keys else _masked_data(v, masker) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_data(v, masker) for v in value]
    if isinstance(value, BaseException):
        return masker.text("".join(traceback.format_exception(value)).rstrip("\n"))
    return masker.text(_unglued(repr(_elided(value))))
