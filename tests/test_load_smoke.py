"""The load benchmark (benchmarks/load.py) at a tiny scale, and its checker catching what it must catch."""

from __future__ import annotations

import copy
import dataclasses
import uuid

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from psycopg.types.json import Jsonb

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
    verify_floor,
)
from benchmarks.load import main as load_main
from benchmarks.load_floor import NAMESPACE
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


# the floor (benchmarks/load_floor.py) and its checker ------------------------------------------------------


@pytest.mark.timeout(90)
def test_the_floor_serves_the_same_lines_and_its_threads_check_clean() -> None:
    """Bare LangGraph behind the same client: every turn acknowledged, each line stored in order with
    its answer, and the threads deleted afterwards."""
    report = run_load(LoadConfig(conversations=3, turns=2, workers=2, db=POSTGRES_URL, floor=True,
                                 request_timeout=30, deadline=60, startup_timeout=60))
    assert report.served == "floor" and report.problems == [] and report.clean
    assert report.turns_planned == report.turns_acked == 6
    assert report.worker_cpu_ms_per_turn > 0 and report.probe_turns == 0 and report.handoffs == 0
    assert "| floor | 3 x 2 |" in report.table()
    with psycopg.connect(POSTGRES_URL) as conn:
        left = conn.execute("SELECT count(*) FROM store WHERE prefix LIKE %s", (f"{NAMESPACE}.%",)).fetchone()
    assert left is not None and left[0] == 0


def test_the_floor_checker_finds_lost_and_corrupted_lines() -> None:
    """A line missing from a floor thread's transcript is lost; a line stored with other text is corrupted."""
    convs = [conversation(i, CUSTOMER_SERVICE, 3, "r654321") for i in range(2)]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for conv in convs:
            conv.thread_id = f"floor-check-{uuid.uuid4().hex}"
            for k, text in enumerate(conv.texts):
                conv.outcomes.append(TurnOutcome(200, 0.01, result={"reply": "ok"}))
                stored = text if (conv.index, k) != (1, 1) else "something else"
                if (conv.index, k) == (0, 2):
                    continue  # acknowledged, never stored
                for i, (kind, content) in enumerate((("human", stored), ("ai", "ok"))):
                    conn.execute("INSERT INTO store (prefix, key, value) VALUES (%s, %s, %s)",
                                 (f"{NAMESPACE}.{conv.thread_id}", f"{2 * k + i:09d}",
                                  Jsonb({"type": kind, "data": {"content": content}})))
    verdict = verify_floor(POSTGRES_URL, convs, keep=False)
    assert (verdict.lost, verdict.corrupted) == ({(0, 2)}, {(1, 1)})
    with psycopg.connect(POSTGRES_URL) as conn:
        left = conn.execute("SELECT count(*) FROM store WHERE prefix = ANY(%s)",
                            ([f"{NAMESPACE}.{c.thread_id}" for c in convs],)).fetchone()
    assert left is not None and left[0] == 0


def test_the_floor_comparison_refuses_streamed_turns(capsys: pytest.CaptureFixture[str]) -> None:
    """The floor answers in JSON only, so comparing it with streamed service turns would measure two things."""
    with pytest.raises(SystemExit) as exited:
        load_main(["--vs-floor", "1", "--stream"])
    assert exited.value.code == 2 and "does not stream" in capsys.readouterr().err
