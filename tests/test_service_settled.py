"""The service's quick read of whether a thread's last run ended (``service.transcript.settled``).

A turn starts by asking whether the thread's last run ended; ``settled`` answers it from the
checkpoint row alone and must never call a thread settled that ``aget_state`` shows with tasks
to run or a person awaited. It must also answer "settled" for an ordinary thread between turns,
or the full read it saves is never saved. Both on memory and on PostgreSQL, at every point a
turn can stop.
"""

from __future__ import annotations

import os
import uuid

import pytest
from langgraph.graph.state import CompiledStateGraph

from handoff.agents.offline import OfflineChatModel
from handoff.service.blocking import BlockingHandoffService
from handoff.service.transcript import Settled, settled, unfinished
from tests.support.stopped_turns import stop_after_steps

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210."
TECHNICAL = "My internet keeps dropping every evening."
BILLING = "Also I was charged twice on my last bill, I want a refund."
WANTS_A_PERSON = "This is useless, I want to speak to a manager."


def quick(service: BlockingHandoffService, graph: CompiledStateGraph, thread_id: str) -> Settled | None:
    return service.portal.call(settled, graph, thread_id)


def agrees(service: BlockingHandoffService, graph: CompiledStateGraph, thread_id: str) -> Settled | None:
    """``settled`` for the thread, checked against the full state: settled means no task left,
    no person awaited, and the journal length the state holds."""
    answer = quick(service, graph, thread_id)
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    if answer is not None:
        assert not snapshot.tasks and not snapshot.next, "a thread with work left was called settled"
        assert answer.transcript_len == (snapshot.values or {}).get("transcript_len", 0)
    return answer


@pytest.fixture(params=["memory", POSTGRES_URL], ids=["memory", "postgres"])
def service(request: pytest.FixtureRequest):
    with BlockingHandoffService.open(request.param, model=OfflineChatModel()) as opened:
        yield opened


def test_a_new_thread_and_a_thread_between_turns_are_settled(service: BlockingHandoffService) -> None:
    graph = service.graph("customer-service")
    thread_id = service.start_thread().thread_id
    assert agrees(service, graph, thread_id) == Settled(transcript_len=0)
    lengths = []
    for text in (HELLO, TECHNICAL, BILLING):  # a reply, a transfer, a rule-fired handoff
        service.result(service.send(thread_id, text, message_id=uuid.uuid4().hex))
        answer = agrees(service, graph, thread_id)
        assert answer is not None, "an ordinary thread between turns must take the quick path"
        lengths.append(answer.transcript_len)
    assert lengths == sorted(lengths) and lengths[0] > 0


def test_a_thread_stopped_after_any_step_is_not_settled(service: BlockingHandoffService) -> None:
    graph = service.graph("customer-service")
    stops = 0
    for stop_at in range(1, 6):
        thread_id = service.start_thread().thread_id
        service.result(service.send(thread_id, HELLO, message_id="m1"))
        stop_after_steps(service.send(thread_id, TECHNICAL, message_id="m2"), stop_at)
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
        answer = agrees(service, graph, thread_id)
        if unfinished(snapshot):
            stops += 1
            assert answer is None
            # and the next request still completes the run first, then takes the new message
            result = service.result(service.send(thread_id, "Thanks, what happens next?", message_id="m3"))
            assert not result.duplicate
            assert agrees(service, graph, thread_id) is not None
    assert stops >= 2, "the transfer turn has at least two steps after which it can stop"


def test_a_thread_waiting_for_a_person_is_not_settled(service: BlockingHandoffService) -> None:
    graph = service.graph("customer-service")
    thread_id = service.start_thread().thread_id
    service.result(service.send(thread_id, HELLO, message_id="m1"))
    result = service.result(service.send(thread_id, WANTS_A_PERSON, message_id="m2"))
    assert result.escalation is not None
    assert agrees(service, graph, thread_id) is None


def test_a_resend_is_found_on_the_quick_path(service: BlockingHandoffService) -> None:
    graph = service.graph("customer-service")
    thread_id = service.start_thread().thread_id
    first = service.result(service.send(thread_id, HELLO, message_id="m1"))
    assert agrees(service, graph, thread_id) is not None
    again = service.result(service.send(thread_id, HELLO, message_id="m1"))
    assert again.duplicate and again.reply == first.reply


@pytest.mark.parametrize("pause", ["before", "after"])
def test_a_thread_whose_last_checkpoint_has_a_next_step_is_not_settled(
    service: BlockingHandoffService, pause: str
) -> None:
    """A worker that died between a step's checkpoint and the next step's writes leaves no pending
    write to see: only the next step's trigger tells. ``interrupt_before``/``interrupt_after`` stop
    a run exactly there."""
    graph = service.graph("customer-service")
    thread_id = service.start_thread().thread_id
    service.result(service.send(thread_id, HELLO, message_id="m1"))
    config = {"configurable": {"thread_id": thread_id}}
    stop = {"interrupt_before": ["general_support"]} if pause == "before" else {
        "interrupt_after": ["general_support"]}
    service.portal.call(lambda: graph.ainvoke({"messages": [{"role": "user", "content": TECHNICAL, "id": "m2"}]},
                                              config, durability="sync", **stop))
    snapshot = graph.get_state(config)
    assert unfinished(snapshot) and snapshot.next
    assert agrees(service, graph, thread_id) is None
    result = service.result(service.send(thread_id, TECHNICAL, message_id="m2"))
    assert result.duplicate
    assert agrees(service, graph, thread_id) is not None
