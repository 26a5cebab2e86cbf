"""JSON on the service's PostgreSQL connections through orjson, with the standard library's answers.

Every checkpoint row carries its checkpoint and metadata as ``jsonb``, and every store item its
value: psycopg turns them into JSON with ``json.dumps`` and back with ``json.loads``, pure-Python
work on every statement of a turn. orjson (already installed: LangGraph uses it) does the same in C.
It is set on the pool's connections only (``configure``), so an application that embeds the service
keeps its own psycopg settings.

The answers stay the standard library's: keys that are not strings become strings as ``json.dumps``
makes them, and whatever orjson refuses or would write differently (integers past 64 bits, subclasses
of ``str``, ``int`` or ``dict``, datetimes and dataclasses, which ``json.dumps`` refuses) goes to the
standard library, which writes it or raises as before. Reading, a number of 19 digits or more (orjson
would read an integer past 64 bits as a float) sends the text to the standard library.

Where the JSON differs: values ``json.dumps`` refuses that orjson writes (UUIDs as their string, enums
that are not ``str`` or ``int`` as their value), and NaN and infinities, which ``json.dumps`` wrote as
``NaN``/``Infinity`` for PostgreSQL to refuse the whole statement, and which are now ``null``. The
checkpointer keeps such floats out of the checkpoint's JSON (service/postgres_saver.py), so a channel's
value never changes; elsewhere (a store item, run metadata) the write now succeeds with ``null``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS \
    | orjson.OPT_PASSTHROUGH_SUBCLASS


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")  # the standard library decides


def dumps(value: Any) -> bytes | str:
    """``json.dumps(value)``'s JSON (as UTF-8 bytes where orjson writes it)."""
    try:
        return orjson.dumps(value, default=_refuse, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError too
        return json.dumps(value)


_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``json.loads(data)``."""
    if isinstance(data, memoryview):
        data = bytes(data)
    if (_LONG_NUMBER.search(data) if isinstance(data, str) else _LONG_NUMBER_BYTES.search(data)) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library's error, or its reading of what orjson refuses
    return json.loads(data)


async def configure(conn: Any) -> None:
    """A pool's ``configure`` callback: this module's ``dumps`` and ``loads`` on ``conn``."""
    from psycopg.types.json import set_json_dumps, set_json_loads

    set_json_dumps(dumps, conn)
    set_json_loads(loads, conn)
