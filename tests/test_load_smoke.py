"""The load benchmark (benchmarks/load.py) at a tiny scale, and its checker catching what it must catch."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from langchain_core.messages import HumanMessage

from benchmarks.load import (
    CUSTOMER_SERVICE,
    Conversation,
    LoadConfig,
    Reference,
    StoredThread,
    TurnOutcome,
    Verdict,
    conversation,
    read_thread,
    references,
    run_load,
    verify_conversation,
)
from handoff.agents.offline import OfflineChatModel
from handoff.service.blocking import BlockingHandoffService

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TURNS = 6


@pytest.mark.timeout(90)
def test_small_run_through_two_workers_on_postgresql_is_clean() -> None:
    """4 conversations x 3 turns through 2 service processes: every turn acknowledged and stored intact."""
    report = run_load(LoadConfig(conversations=4, turns=3, workers=2, db=POSTGRES_URL,
                                 request_timeout=30, deadline=60, startup_timeout=60))
    assert report.problems == []
    assert report.clean
    assert (report.lost, report.corrupted, report.errors, report.not_run) == (0, 0, 0, 0)
    assert (report.busy_409, report.retries, report.duplicates) == (0, 0, 0)
    assert report.turns_planned == report.turns_acked == 12
    assert report.graphs == {CUSTOMER_SERVICE: 3, "content-creation": 1}
    assert report.handoffs >= 3  # General -> Technical in every customer-service conversation
    assert report.throughput > 0 and 0 < report.p50_ms <= report.p95_ms <= report.max_ms
    assert report.worker_cpu_ms_per_turn > 0
    assert report.probe_turns == report.probe_streamed == 12  # the offline model streams every answer
    assert 0 < report.first_token_p50_ms <= report.first_token_p95_ms
    assert "time to first token" in report.first_token_line()
    assert {"nproc", "cpu", "python", "packages", "postgresql"} <= report.machine.keys()
    assert "langgraph" in report.machine["packages"]
    table = report.table()
    assert "turns/s" in table and "p95 ms" in table and "| 4 x 3 |" in table
    assert report.machine["python"] in report.machine_line()


# the checker, on a conversation played in memory and then damaged ---------------------------------------


@pytest.fixture(scope="module")
def played() -> tuple[Conversation, StoredThread, Reference]:
    """A customer-service conversation played in memory, as the client saw it and as it is stored."""
    ref = references({CUSTOMER_SERVICE}, TURNS)[CUSTOMER_SERVICE]
    conv = conversation(1, CUSTOMER_SERVICE, TURNS, "r123456")
    conv.ids_sent = True
    with BlockingHandoffService.open("memory", model=OfflineChatModel()) as svc:
        conv.thread_id = svc.start_thread(CUSTOMER_SERVICE).thread_id
        for text, message_id in zip(conv.texts, conv.message_ids, strict=True):
            result = svc.result(svc.send(conv.thread_id, text, message_id=message_id))
            conv.outcomes.append(TurnOutcome(200, 0.01, result=result.model_dump(mode="json")))
        stored = read_thread(svc.persistence.store, svc, conv.thread_id)
    return conv, stored, ref


def check(conv: Conversation, stored: StoredThread, ref: Reference) -> Verdict:
    verdict = Verdict()
    verify_conversation(conv, stored, ref, verdict)
    return verdict


def test_an_intact_conversation_passes(played: tuple[Conversation, StoredThread, Reference]) -> None:
    verdict = check(*played)
    assert (verdict.lost, verdict.corrupted, verdict.problems) == (set(), set(), [])
    assert verdict.handoffs == 2  # General -> Technical (tool), Technical -> Billing (rule)


def _user_at(stored: StoredThread, turn: int) -> int:
    return [i for i, m in enumerate(stored.messages) if isinstance(m, HumanMessage)][turn]


def test_a_missing_message_is_a_lost_turn(played: tuple[Conversation, StoredThread, Reference]) -> None:
    conv, stored, ref = copy.deepcopy(played)
    del stored.messages[_user_at(stored, 2)]
    assert (1, 2) in check(conv, stored, ref).lost


def test_a_duplicated_message_is_a_corrupted_turn(played: tuple[Conversation, StoredThread, Reference]) -> None:
    conv, stored, ref = copy.deepcopy(played)
    stored.messages.append(stored.messages[_user_at(stored, 3)])
    assert (1, 3) in check(conv, stored, ref).corrupted


def test_swapped_turns_are_corrupted(played: tuple[Conversation, StoredThread, Reference]) -> None:
    conv, stored, ref = copy.deepcopy(played)
    first, second = _user_at(stored, 3), _user_at(stored, 4)
    stored.messages[first], stored.messages[second] = stored.messages[second], stored.messages[first]
    assert {(1, 3), (1, 4)} <= check(conv, stored, ref).corrupted


def test_a_message_stored_under_another_id_is_corrupted(
    played: tuple[Conversation, StoredThread, Reference],
) -> None:
    conv, stored, ref = copy.deepcopy(played)
    stored.messages[_user_at(stored, 2)].id = "someone-else"
    assert check(conv, stored, ref).corrupted == {(1, 2)}


def test_a_reply_the_client_did_not_get_is_corrupted(played: tuple[Conversation, StoredThread, Reference]) -> None:
    conv, stored, ref = copy.deepcopy(played)
    assert conv.outcomes[1].result is not None
    conv.outcomes[1].result["reply"] = "something else"
    assert check(conv, stored, ref).corrupted == {(1, 1)}


def test_a_message_from_another_conversation_is_corrupted(
    played: tuple[Conversation, StoredThread, Reference],
) -> None:
    conv, stored, ref = copy.deepcopy(played)
    stored.messages.append(HumanMessage("Hi (ref r123456-c0002-t01)", id="foreign"))
    assert check(conv, stored, ref).corrupted


def test_journal_and_checkpoint_disagreeing_is_corrupted(
    played: tuple[Conversation, StoredThread, Reference],
) -> None:
    conv, stored, ref = played
    orphan = dataclasses.replace(stored, transcript_keys=[*stored.transcript_keys, f"{999:09d}"])
    assert check(copy.deepcopy(conv), orphan, ref).corrupted == {(1, TURNS - 1)}
    fewer = dataclasses.replace(stored, records=stored.records[1:], handoff_keys=stored.handoff_keys[1:])
    assert check(copy.deepcopy(conv), fewer, ref).corrupted


def test_a_lost_handoff_record_is_corrupted(played: tuple[Conversation, StoredThread, Reference]) -> None:
    conv, stored, ref = copy.deepcopy(played)
    del stored.records[0]
    assert check(conv, stored, ref).corrupted
