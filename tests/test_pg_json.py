"""JSON on the service's PostgreSQL connections (service/pg_json.py) gives the standard library's answers."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import math
import os
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from handoff.service import pg_json
from handoff.service.storage import open_service_persistence

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class Colour(enum.StrEnum):
    RED = "red"


class Level(int, enum.Enum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int


def as_text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_what_json_writes_is_written_to_the_same_value(value: Any) -> None:
    expected = json.dumps(value)
    written = pg_json.dumps(value)
    assert json.loads(as_text(written)) == json.loads(expected)
    assert pg_json.loads(written) == json.loads(expected)
    assert pg_json.loads(expected) == json.loads(expected)
    assert pg_json.loads(memoryview(expected.encode())) == json.loads(expected)


@pytest.mark.parametrize("value", [
    {"colour": Colour.RED, "level": Level.HIGH}, OrderedDict(b=1, a=2), {1: "one", None: "none", 2.5: True},
    [2**80, -(2**90)], "lone \ud800 surrogate", {"text": "naïve café ☕ \u0000"},
])
def test_values_orjson_would_write_differently_mean_what_json_writes(value: Any) -> None:
    assert json.loads(as_text(pg_json.dumps(value))) == json.loads(json.dumps(value))


def test_non_finite_floats_which_postgres_refused_are_written_as_null() -> None:
    assert json.loads(as_text(pg_json.dumps({"nan": math.nan, "inf": -math.inf}))) == {"nan": None, "inf": None}


@pytest.mark.parametrize("value", [datetime(2026, 12, 1, tzinfo=UTC), Point(1), {1, 2}, b"bytes", object()])
def test_what_json_refuses_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        pg_json.dumps({"nested": [value]})


@pytest.mark.parametrize("text", ["[123456789012345678901234567890]", "-9223372036854775809",
                                  '{"a": 9223372036854775808}', "[1e400]", "0.12345678901234567891"])
def test_numbers_past_64_bits_are_read_as_json_reads_them(text: str) -> None:
    for data in (text, text.encode(), memoryview(text.encode())):
        read = pg_json.loads(data)
        assert read == json.loads(text) and type(read) is type(json.loads(text))


def test_what_orjson_refuses_to_read_is_read_or_refused_as_json_does() -> None:
    assert math.isnan(pg_json.loads("[NaN]")[0])
    with pytest.raises(json.JSONDecodeError):
        pg_json.loads("{not json")


def test_the_services_postgres_connections_write_and_read_json_through_it() -> None:
    async def run() -> tuple[Any, Any, Any]:
        async with open_service_persistence(POSTGRES_URL) as persistence:
            pool = persistence.store.conn
            async with pool.connection() as conn:
                value = {"text": "naïve café ☕", 7: [1, 2.5, None], "id": str(uuid.uuid4())}
                row = await (await conn.execute("SELECT %s::jsonb AS v, %s::jsonb #>> '{}' AS t",
                                                (Jsonb(value), Jsonb("x")))).fetchone()
                dumper = conn.adapters.get_dumper(Jsonb, "b")
                return row, value, dumper

    row, value, dumper = asyncio.run(run())
    assert row["v"] == json.loads(json.dumps(value)) and row["t"] == "x"
    assert dumper._dumps is pg_json.dumps, "the pool's connections dump JSON through pg_json"


def test_a_channel_holding_nan_or_infinity_keeps_it_through_the_services_checkpointer() -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    async def run() -> dict[str, Any]:
        async with open_service_persistence(POSTGRES_URL) as persistence:
            saver = persistence.checkpointer
            thread_id = f"pg-json-{uuid.uuid4().hex}"
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"score": math.nan, "limit": -math.inf, "ratio": 0.5, "n": 3}
            checkpoint["channel_versions"] = dict.fromkeys(checkpoint["channel_values"], "1")
            config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
            await saver.aput(config, checkpoint, {"source": "loop", "step": 0}, checkpoint["channel_versions"])
            saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
            await saver.adelete_thread(thread_id)
            assert saved is not None
            return saved.checkpoint["channel_values"]

    values = asyncio.run(run())
    assert math.isnan(values["score"]) and values["limit"] == -math.inf
    assert values["ratio"] == 0.5 and values["n"] == 3
