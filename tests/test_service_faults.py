"""Faults under load: a worker killed mid-turn, PostgreSQL restarted mid-turn, a model that times out.

Whatever happens, every conversation either completes on retry or ends with an
honest message, and every thread's stored transcript (PostgreSQL's journal)
holds each accepted user message exactly once, in order, answered. Clients
retry like ``send_with_retries``: the same text with the same ``message_id``,
on the other worker, after a connection error, a 503 or a 409 ``thread_busy``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import HumanMessage

from handoff.agents.offline import OfflineChatModel
from handoff.service.app import create_app
from handoff.service.blocking import BlockingHandoffService
from handoff.service.models import StepEvent
from handoff.service.transcript import unfinished
from tests.support.service_worker import (
    Sent,
    Worker,
    check_exactly_once_in_order,
    release,
    running_workers,
    send_with_retries,
    stored_thread,
    wait_entered,
)

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210 ({tag})."
TECHNICAL = "My internet keeps dropping every evening ({tag})."
AFTER = "Thanks, what happens next? ({tag})"
CONVERSATION_LIMIT = 180.0


@pytest.fixture
def signals(tmp_path: Path) -> Path:
    path = tmp_path / "signals"
    path.mkdir()
    return path


@pytest.fixture
def workers(signals: Path, tmp_path: Path) -> Iterator[list[Worker]]:
    """Two fresh service processes on PostgreSQL (a test may kill one)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with running_workers(2, POSTGRES_URL, signals, logs) as started:
        yield started


@pytest.fixture
def reader() -> Iterator[BlockingHandoffService]:
    with BlockingHandoffService.open(POSTGRES_URL, model=OfflineChatModel()) as service:
        yield service


def new_thread(service: BlockingHandoffService) -> str:
    """A thread registered straight in the database (any worker can take it)."""
    return service.start_thread().thread_id


def conversation(
    urls: list[str], thread_id: str, texts: list[str], first: int
) -> list[Sent]:
    """Send each text in turn (retrying as a client does); the turns alternate between workers."""
    return [send_with_retries(urls, thread_id, Sent(text, uuid.uuid4().hex), first=first + k,
                              limit=CONVERSATION_LIMIT)
            for k, text in enumerate(texts)]


def test_a_worker_killed_mid_turn_leaves_every_conversation_whole(
    workers: list[Worker], reader: BlockingHandoffService, signals: Path
) -> None:
    doomed, survivor = workers
    urls = [doomed.url, survivor.url]
    threads = [new_thread(reader) for _ in range(7)]
    blocks = [f"kill-{n}" for n in range(len(threads))]
    # Thread n's second turn is held inside its model call on worker n % 2; even threads
    # (thread 0 is "the victim") are then on the worker that gets killed.
    scripts = [[HELLO.format(tag=n), f"[block:{blocks[n]}] " + TECHNICAL.format(tag=n), AFTER.format(tag=n)]
               for n in range(len(threads))]

    with ThreadPoolExecutor(max_workers=len(threads)) as pool:
        futures: list[Future[list[Sent]]] = [
            # turn k of thread n goes to worker (n + 1 + k) % 2: its held second turn to worker n % 2
            pool.submit(conversation, urls, thread_id, scripts[n], (n + 1) % 2)
            for n, thread_id in enumerate(threads)
        ]
        try:
            for block in blocks:
                wait_entered(signals, block)
            doomed.kill()
            on_doomed = [thread_id for n, thread_id in enumerate(threads) if n % 2 == 0]
            assert all(stored_thread(reader, t).unfinished for t in on_doomed), "the kill was not mid-turn"
        finally:
            for block in blocks:
                release(signals, block)
        results = [f.result(timeout=CONVERSATION_LIMIT) for f in futures]

    for n, (thread_id, sent) in enumerate(zip(threads, results, strict=True)):
        check_exactly_once_in_order(stored_thread(reader, thread_id), sent)
        held = sent[1]
        assert held.result is not None
        if n % 2 == 0:  # its worker died under it: completed on the survivor, not sent twice
            assert held.attempts[0].startswith("connection error") and held.attempts[-1] == "ok"
            assert held.result["duplicate"] is True
        else:  # the survivor's own turns never noticed
            assert held.attempts == ["ok"] and held.result["duplicate"] is False
        assert held.result["active_agent"] == "technical_specialist"
        assert "[offline model]" in held.result["reply"]


def pg_ctlcluster(action: str) -> subprocess.CompletedProcess[bytes]:
    """``pg_ctlcluster VERSION main ACTION`` on the local cluster (the tests run as root, like CI)."""
    versions = sorted(os.listdir("/etc/postgresql"))
    assert versions, "no PostgreSQL cluster in /etc/postgresql"
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action],
                          timeout=120, capture_output=True)


def restart_postgres() -> None:
    """Restart the local cluster (fast shutdown: every session is cut) and wait until it answers."""
    done = pg_ctlcluster("restart")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    wait_for_postgres()


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], timeout=10).returncode == 0


def wait_for_postgres(limit: float = 60.0) -> None:
    """Wait until PostgreSQL answers; start it if it stays down (it must outlive the test)."""
    deadline = time.monotonic() + limit
    while not postgres_ready():
        if time.monotonic() > deadline:
            pg_ctlcluster("start")
            if not postgres_ready():
                raise TimeoutError("PostgreSQL did not come back")
            return
        time.sleep(0.2)


def test_postgresql_restarted_mid_turn_leaves_every_conversation_whole(
    workers: list[Worker], reader: BlockingHandoffService, signals: Path
) -> None:
    urls = [w.url for w in workers]
    held_threads = [new_thread(reader) for _ in range(6)]
    busy_threads = [new_thread(reader) for _ in range(4)]
    blocks = [f"pg-{n}" for n in range(len(held_threads))]
    held_scripts = [[HELLO.format(tag=f"h{n}"), f"[block:{blocks[n]}] " + TECHNICAL.format(tag=f"h{n}"),
                     AFTER.format(tag=f"h{n}")] for n in range(len(held_threads))]
    busy_scripts = [[template.format(tag=f"b{n}-{k}") for k in range(3) for template in (HELLO, TECHNICAL)]
                    for n in range(len(busy_threads))]

    with ThreadPoolExecutor(max_workers=len(held_threads) + len(busy_threads)) as pool:
        held: list[Future[list[Sent]]] = [
            pool.submit(conversation, urls, t, held_scripts[n], n) for n, t in enumerate(held_threads)]
        try:
            for block in blocks:
                wait_entered(signals, block)
            busy: list[Future[list[Sent]]] = [  # these keep sending while the database goes away
                pool.submit(conversation, urls, t, busy_scripts[n], n) for n, t in enumerate(busy_threads)]
            restart_postgres()
        finally:
            wait_for_postgres()
            for block in blocks:
                release(signals, block)
        held_results = [f.result(timeout=CONVERSATION_LIMIT) for f in held]
        busy_results = [f.result(timeout=CONVERSATION_LIMIT) for f in busy]

    for thread_id, sent in zip(held_threads, held_results, strict=True):
        check_exactly_once_in_order(stored_thread(reader, thread_id), sent)
        interrupted = sent[1]
        # the restart took the turn's lock session: it stopped at a checkpoint, told the client,
        # and the retry completed it without adding the message again
        assert interrupted.attempts[0] in ("turn_interrupted", "persistence_unavailable"), interrupted.attempts
        assert interrupted.attempts[-1] == "ok"
        assert interrupted.result and interrupted.result["duplicate"] is True
        assert interrupted.result["active_agent"] == "technical_specialist"
    for thread_id, sent in zip(busy_threads, busy_results, strict=True):
        check_exactly_once_in_order(stored_thread(reader, thread_id), sent)


def test_a_model_that_times_out_for_some_threads_ends_their_turn_honestly(
    workers: list[Worker], reader: BlockingHandoffService
) -> None:
    urls = [w.url for w in workers]
    threads = [new_thread(reader) for _ in range(6)]
    times_out = {n for n in range(len(threads)) if n % 2 == 0}
    scripts = [[HELLO.format(tag=n),
                ("[timeout] " if n in times_out else "") + TECHNICAL.format(tag=n),
                AFTER.format(tag=n)] for n in range(len(threads))]

    with ThreadPoolExecutor(max_workers=len(threads)) as pool:
        results = list(pool.map(lambda n: conversation(urls, threads[n], scripts[n], n), range(len(threads)),
                                timeout=CONVERSATION_LIMIT))

    for n, (thread_id, sent) in enumerate(zip(threads, results, strict=True)):
        check_exactly_once_in_order(stored_thread(reader, thread_id), sent)
        assert all(s.attempts == ["ok"] for s in sent)
        second = sent[1].result
        assert second is not None
        if n in times_out:
            assert second["reply"].startswith("(system) General Support could not answer")
            assert "APITimeoutError" in second["reply"] and "please try again" in second["reply"]
            assert second["active_agent"] == "general_support" and second["events"] == []
        else:
            assert "[offline model]" in second["reply"]
            assert second["active_agent"] == "technical_specialist"
        third = sent[2].result
        assert third is not None and "[offline model]" in third["reply"]


# ---------------------------------------------------------------- idempotent sends, in process


def test_a_message_sent_again_with_its_id_is_stored_once() -> None:
    with TestClient(create_app("memory", model=OfflineChatModel())) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        body = {"text": HELLO.format(tag="retry"), "message_id": "msg-1", "stream": False}
        first = client.post(f"/threads/{thread_id}/messages", json=body).json()
        again = client.post(f"/threads/{thread_id}/messages", json=body).json()
        assert first["duplicate"] is False and again["duplicate"] is True
        assert again["message_id"] == first["message_id"] == "msg-1"
        assert again["reply"] == first["reply"] and again["messages"] == first["messages"]

        reused = client.post(f"/threads/{thread_id}/messages", json={**body, "text": "Something else."})
        assert reused.status_code == 422 and reused.json()["error"]["code"] == "message_id_reused"
        users = [m for m in client.get(f"/threads/{thread_id}").json()["messages"] if m["role"] == "user"]
        assert [m["text"] for m in users] == [body["text"]]


def test_a_message_sent_again_after_it_left_the_window_is_found_in_the_journal_and_not_run_again() -> None:
    with TestClient(create_app("memory", model=OfflineChatModel())) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        url = f"/threads/{thread_id}/messages"
        first = client.post(url, json={"text": HELLO.format(tag="old"), "message_id": "old-1", "stream": False}).json()
        for n in range(8):  # two messages a turn: the first falls out of the 12-message window
            client.post(url, json={"text": HELLO.format(tag=f"n{n}"), "message_id": f"later-{n}", "stream": False})
        again = client.post(url, json={"text": HELLO.format(tag="old"), "message_id": "old-1", "stream": False}).json()
        assert again["duplicate"] is True
        assert again["reply"] == first["reply"] and again["messages"] == first["messages"]
        users = [m for m in client.get(url.rsplit("/", 1)[0]).json()["messages"] if m["role"] == "user"]
        assert len(users) == 9, "the message is stored once"


@pytest.mark.parametrize("stopped_after", ["general_support", "handoff_gate"])
@pytest.mark.parametrize("next_message", ["the same message again", "a new message"])
def test_a_turn_left_unfinished_is_completed_once_by_the_next_request(
    next_message: str, stopped_after: str
) -> None:
    with BlockingHandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = service.start_thread().thread_id
        service.result(service.send(thread_id, HELLO.format(tag="a"), message_id="m1"))
        stream = service.send(thread_id, TECHNICAL.format(tag="a"), message_id="m2")
        for event in stream:  # the worker "dies" right after this step
            if isinstance(event, StepEvent) and event.node == stopped_after:
                break
        stream.close()
        snapshot = service.graph("customer-service").get_state({"configurable": {"thread_id": thread_id}})
        assert unfinished(snapshot)

        if next_message == "the same message again":
            result = service.result(service.send(thread_id, TECHNICAL.format(tag="a"), message_id="m2"))
            assert result.duplicate and result.active_agent == "technical_specialist"
            sent = [Sent(HELLO.format(tag="a"), "m1"), Sent(TECHNICAL.format(tag="a"), "m2")]
        else:
            result = service.result(service.send(thread_id, AFTER.format(tag="a"), message_id="m3"))
            assert not result.duplicate and "[offline model]" in result.reply
            sent = [Sent(HELLO.format(tag="a"), "m1"), Sent(TECHNICAL.format(tag="a"), "m2"),
                    Sent(AFTER.format(tag="a"), "m3")]
        stored = stored_thread(service, thread_id)
        check_exactly_once_in_order(stored, sent)
        assert sum(isinstance(m, HumanMessage) for m in stored.transcript) == len(sent)
