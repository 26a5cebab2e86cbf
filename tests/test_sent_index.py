"""Telling a resent message from a new one with one keyed read (graphs/journal.py ``SENT``).

Every turn asks whether its ``message_id`` was sent before. The journal keeps each user message's
position by id, so a thread registered with that index answers with one keyed read instead of
reading its last 50 stored messages; a new message (almost every turn) reads no message at all.
The answers must be those of the scan, which threads registered before the index still take.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.store.base import GetOp, PutOp
from langgraph.store.memory import InMemoryStore

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.journal import SENT, TRANSCRIPT, Journal, sent_key
from handoff.service.blocking import BlockingHandoffService
from handoff.service.embedding import SENT_INDEX, THREADS_NAMESPACE
from handoff.service.transcript import LOOKBACK, find_sent

HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210."


class CountingStore(InMemoryStore):
    """Counts the items each batch reads, by the namespace's kind (``transcript``, ``sent``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    async def abatch(self, ops: Any) -> Any:
        ops = list(ops)
        for op in ops:
            if isinstance(op, GetOp):
                self.reads[op.namespace[1]] += 1
        return await super().abatch(ops)


def turns(journal: Journal, count: int) -> list[str]:
    """``count`` turns archived as nodes archive them (a user message, a tool call and its result, a
    reply); returns the user messages' ids, oldest first."""
    ids, at = [], 0
    for n in range(count):
        user = HumanMessage(f"message {n}", id=f"user-{n}")
        call = AIMessage("", id=f"call-{n}", tool_calls=[{"name": "lookup", "args": {}, "id": f"tc-{n}"}])
        result = ToolMessage("found", tool_call_id=f"tc-{n}", id=f"tool-{n}")
        at = journal.append_messages(at, [user, call, result, AIMessage(f"reply {n}", id=f"reply-{n}")])
        ids.append(user.id)
    return ids


def test_each_user_message_is_kept_by_id_in_the_batch_that_stores_it() -> None:
    store = InMemoryStore()
    journal = Journal(store, "t1", deferred=True)
    no_id = HumanMessage("no id yet")
    end = journal.append_messages(3, [AIMessage("before", id="a"), no_id, HumanMessage("second", id="h2")])
    pending: list[PutOp] = journal._pending
    assert end == 6 and no_id.id  # given an id, as add_messages would
    assert {(op.namespace[1], op.key) for op in pending} == {
        (TRANSCRIPT, "000000003"), (TRANSCRIPT, "000000004"), (TRANSCRIPT, "000000005"),
        (SENT, sent_key(no_id.id)), (SENT, sent_key("h2"))}
    assert asyncio.run(journal.asent_at("h2")) is None, "a deferred journal writes nothing before its flush"
    journal.flush()
    assert asyncio.run(journal.asent_at(no_id.id)) == 4
    assert asyncio.run(journal.asent_at("h2")) == 5
    assert asyncio.run(journal.asent_at("a")) is None, "an agent's message is not a sent message"
    assert asyncio.run(Journal(store, "t2").asent_at("h2")) is None, "the index is the thread's own"


def test_a_new_message_is_known_new_without_reading_any_stored_message() -> None:
    store = CountingStore()
    journal = Journal(store, "t1")
    turns(journal, 20)
    values = {"transcript_len": 80}
    assert asyncio.run(find_sent(journal, values, "never-sent", indexed=True)) is None
    assert store.reads == Counter({SENT: 1})
    store.reads.clear()
    assert asyncio.run(find_sent(journal, values, "never-sent")) is None
    assert store.reads == Counter({TRANSCRIPT: LOOKBACK}), "without the index the last 50 positions are read"


@pytest.mark.parametrize("turn", [19, 15, 8])
def test_a_resent_message_is_found_with_what_followed_it_as_the_scan_finds_it(turn: int) -> None:
    store = CountingStore()
    journal = Journal(store, "t1")
    ids = turns(journal, 20)
    values = {"transcript_len": 80}
    indexed = asyncio.run(find_sent(journal, values, ids[turn], indexed=True))
    reads = dict(store.reads)
    scanned = asyncio.run(find_sent(journal, values, ids[turn]))
    assert indexed is not None and indexed == scanned
    assert indexed.message.content == f"message {turn}" and indexed.latest == (turn == 19)
    assert [m.id for m in indexed.after] == [f"call-{turn}", f"tool-{turn}", f"reply-{turn}"]
    assert reads == {SENT: 1, TRANSCRIPT: 80 - 4 * turn}, "only the positions from the message on are read"


def test_the_lookback_and_the_checkpoints_own_history_bound_the_index_as_they_bound_the_scan() -> None:
    journal = Journal(InMemoryStore(), "t1")
    ids = turns(journal, 20)  # 80 positions: the first user message at 0, the last at 76
    for upto in (80, 52, 51, 50, 4, 1):
        values = {"transcript_len": upto}
        for message_id in ids:
            indexed = asyncio.run(find_sent(journal, values, message_id, indexed=True))
            assert indexed == asyncio.run(find_sent(journal, values, message_id)), (upto, message_id)
    assert asyncio.run(find_sent(journal, {"transcript_len": 80}, ids[7], indexed=True)) is None  # at 28 < 30
    assert asyncio.run(find_sent(journal, {"transcript_len": 80}, ids[8], indexed=True)) is not None  # at 32
    assert asyncio.run(find_sent(journal, {"transcript_len": 40}, ids[12], indexed=True)) is None, \
        "a message past the checkpoint's history (another branch, an unsaved step) is not this one's"


def test_a_position_written_over_by_time_travel_falls_back_to_the_scan() -> None:
    store = CountingStore()
    journal = Journal(store, "t1")
    ids = turns(journal, 10)
    # time travel to before turn 6: the new branch stores its own turn 6 over positions 24-27 ...
    journal.append_messages(24, [HumanMessage("the other branch", id="branch-6"), AIMessage("ok", id="r")])
    # ... and, later, the abandoned turn 6's message again a turn further on
    journal.append_messages(26, [HumanMessage("message 6", id=ids[6]), AIMessage("again", id="r2")])
    store.reads.clear()
    values = {"transcript_len": 28}
    found = asyncio.run(find_sent(journal, values, ids[6], indexed=True))
    assert found is not None and found.message.content == "message 6" and found.after[0].content == "again"
    assert found == asyncio.run(find_sent(journal, values, ids[6]))
    store.reads.clear()
    values = {"transcript_len": 26}  # the checkpoint before the resend on the new branch
    assert asyncio.run(find_sent(journal, values, ids[7], indexed=True)) is None  # at 28, past it
    assert asyncio.run(find_sent(journal, values, ids[6], indexed=True)) is None  # at 26, past it
    store.reads.clear()
    journal.append_messages(24, [AIMessage("an agent's message now at 24", id="x")])
    values = {"transcript_len": 40}
    assert asyncio.run(find_sent(journal, values, "branch-6", indexed=True)) is None
    assert store.reads[TRANSCRIPT] > 16, "the position held another message: the scan decided"


def test_service_threads_use_the_index_and_older_registrations_the_scan() -> None:
    with BlockingHandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = service.start_thread().thread_id
        first = service.result(service.send(thread_id, HELLO, message_id="m-1"))
        for n in range(7):  # the first message falls out of the checkpoint's window
            service.result(service.send(thread_id, f"Thanks, noted {n}.", message_id=f"m-{n + 2}"))
        store = service.persistence.store
        registration = store.get(THREADS_NAMESPACE, thread_id)
        assert registration is not None and registration.value[SENT_INDEX] is True
        assert store.get(Journal(store, thread_id).namespace(SENT), sent_key("m-1")).value == {"at": 0}

        again = service.result(service.send(thread_id, HELLO, message_id="m-1"))
        assert again.duplicate and again.reply == first.reply and again.messages == first.messages

        # a thread registered by a service that kept no index: the same answers, from the scan
        store.put(THREADS_NAMESPACE, thread_id, {k: v for k, v in registration.value.items() if k != SENT_INDEX})
        service.service._registrations.clear()
        store.delete(Journal(store, thread_id).namespace(SENT), sent_key("m-1"))
        again = service.result(service.send(thread_id, HELLO, message_id="m-1"))
        assert again.duplicate and again.reply == first.reply
        new = service.result(service.send(thread_id, "One more question.", message_id="m-new"))
        assert not new.duplicate
