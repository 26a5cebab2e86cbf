"""A turn's run starts from the checkpoint the turn read under its lock (service/primed.py).

The turn's first read (``settled``) and the run's first read fetched the same row; the run now takes the
first answer, once, and only for that thread's latest checkpoint. What the turns do must not change.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import CheckpointTuple

from handoff.agents.offline import OfflineChatModel
from handoff.service import primed
from handoff.service.blocking import BlockingHandoffService

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SCRIPT = ("Hi, this is Dana, account ACC-1001, postcode 90210.", "My internet keeps dropping every evening.",
          "Also I was charged twice on my last bill, I want a refund.", "Thanks, that is all.")
LATEST = "ORDER BY checkpoint_id DESC LIMIT 1"


def config(thread_id: str, **more: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, **more}}


def test_a_primed_checkpoint_answers_one_read_of_that_threads_latest_checkpoint() -> None:
    saved = CheckpointTuple(config("t1"), {"id": "c1"}, {}, None, [])  # type: ignore[typeddict-item]

    async def reads() -> list[tuple[bool, Any]]:
        primed.prime("t1", saved)
        return [primed.take(config("t2")), primed.take(config("t1", checkpoint_ns="inner")),
                primed.take(config("t1", checkpoint_id="c0")), primed.take(config("t1", checkpoint_ns="")),
                primed.take(config("t1"))]

    assert asyncio.run(reads()) == [(False, None)] * 3 + [(True, saved), (False, None)]

    async def forgotten() -> tuple[bool, Any]:
        primed.prime("t1", None)
        primed.unprime()
        return primed.take(config("t1"))

    assert asyncio.run(forgotten()) == (False, None)
    assert asyncio.run(asyncio.to_thread(primed.take, config("t1"))) == (False, None)


class Statements:
    """Counts the checkpoint reads of the latest row that psycopg's async cursors send."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        execute = psycopg.AsyncCursor.execute
        counts = self.counts

        async def counted(cur: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else str(query)
            if "from checkpoints" in text.lower() and LATEST in text:
                counts["latest checkpoint"] += 1
            return await execute(cur, query, params, **kwargs)

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)


def play(url: str, counter: Statements | None = None) -> list[tuple[Any, ...]]:
    outcomes = []
    with BlockingHandoffService.open(url, model=OfflineChatModel()) as service:
        thread_id = service.start_thread().thread_id
        for n, text in enumerate(SCRIPT):
            if counter is not None:
                counter.counts.clear()
            result = service.result(service.send(thread_id, text, message_id=f"m{n}"))
            if counter is not None:
                assert counter.counts["latest checkpoint"] == 1, f"turn {n} read the latest checkpoint twice"
            outcomes.append((result.reply, result.active_agent, len(result.handoffs), result.case_file))
        again = service.result(service.send(thread_id, SCRIPT[1], message_id="m1"))
        assert again.duplicate and again.reply == outcomes[1][0]
        graph = service.graph("customer-service")
        values = graph.get_state(config(thread_id)).values
        outcomes.append((values["transcript_len"], values["turn"], values["active_agent"]))
    return outcomes


def test_each_turn_on_postgres_reads_the_latest_checkpoint_once_and_does_what_it_did(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = play("memory")
    assert play(POSTGRES_URL, Statements(monkeypatch)) == expected


def test_a_turn_never_run_leaves_nothing_primed_for_later_reads() -> None:
    with BlockingHandoffService.open(POSTGRES_URL, model=OfflineChatModel()) as service:
        thread_id = service.start_thread().thread_id
        service.result(service.send(thread_id, SCRIPT[0], message_id="m0"))
        stream = service.send(thread_id, SCRIPT[1], message_id=f"m-{uuid.uuid4().hex}")
        stream.close()  # read the checkpoint, never ran
        graph = service.graph("customer-service")
        before = graph.get_state(config(thread_id))
        graph.update_state(config(thread_id), {"case_file": {"sentiment": "frustrated"}},
                           as_node="general_support")
        after = service.portal.call(graph.aget_state, config(thread_id))
        assert after.config != before.config and after.values["case_file"]["sentiment"] == "frustrated"
        result = service.result(service.send(thread_id, SCRIPT[1], message_id="m1"))
        assert not result.duplicate and result.case_file.get("sentiment") is not None
