"""Many conversations at once on two service workers sharing PostgreSQL.

Two real worker processes (uvicorn, ``tests/support/service_worker.py``) run
on the offline model. Each stored transcript is read back from PostgreSQL's
journal: every user message exactly once, in order, and answered. Turns on
one thread never interleave (one wins, the other is told 409 ``thread_busy``),
and a model call that hangs on one thread does not hold up another thread.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from handoff.agents.offline import OfflineChatModel
from handoff.service.blocking import BlockingHandoffService
from tests.support.service_worker import (
    Sent,
    Worker,
    check_exactly_once_in_order,
    post_message,
    release,
    running_workers,
    send_with_retries,
    stored_thread,
    wait_entered,
)

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONVERSATIONS = 20
SCRIPT = (
    "Hi, this is Dana, account ACC-1001, postcode 90210 (conversation {n}).",
    "My internet keeps dropping every evening (conversation {n}).",
    "Thanks, what happens next? (conversation {n})",
    "Can you confirm what you have on file for me? (conversation {n})",
)
REQUEST_LIMIT = 60.0


@pytest.fixture(scope="module")
def signals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the workers' model calls announce themselves and wait to be released."""
    return tmp_path_factory.mktemp("signals")


@pytest.fixture(scope="module")
def workers(signals: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    """Two service processes on one PostgreSQL database."""
    with running_workers(2, POSTGRES_URL, signals, tmp_path_factory.mktemp("logs")) as started:
        yield started


@pytest.fixture(scope="module")
def reader() -> Iterator[BlockingHandoffService]:
    """Reads threads straight from PostgreSQL, beside the workers."""
    with BlockingHandoffService.open(POSTGRES_URL, model=OfflineChatModel()) as service:
        yield service


def start_thread(base: str) -> str:
    response = httpx.post(f"{base}/threads", json={}, timeout=REQUEST_LIMIT)
    assert response.status_code == 201, response.text
    return response.json()["thread_id"]


def test_twenty_conversations_on_two_workers_lose_and_duplicate_no_turn(
    workers: list[Worker], reader: BlockingHandoffService
) -> None:
    urls = [w.url for w in workers]

    def converse(n: int) -> tuple[str, list[Sent]]:
        thread_id = start_thread(urls[n % 2])
        sent: list[Sent] = []
        for k, template in enumerate(SCRIPT):
            message = Sent(template.format(n=n), uuid.uuid4().hex)
            # consecutive turns of one thread alternate between the workers
            sent.append(send_with_retries(urls, thread_id, message, first=n + k))
        return thread_id, sent

    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        conversations = list(pool.map(converse, range(CONVERSATIONS), timeout=240))

    assert len({thread_id for thread_id, _ in conversations}) == CONVERSATIONS
    for thread_id, sent in conversations:
        # sequential turns of one client never find their own thread busy: the lock is
        # released before the answer is sent
        assert [s.attempts for s in sent] == [["ok"]] * len(SCRIPT)
        assert all(s.result and not s.result["duplicate"] and s.result["reply"] for s in sent)
        check_exactly_once_in_order(stored_thread(reader, thread_id), sent)
        assert sent[1].result and sent[1].result["active_agent"] == "technical_specialist"


@pytest.mark.parametrize("spread", ["same worker", "two workers"])
def test_two_messages_racing_on_one_thread_have_one_winner_and_a_409(
    workers: list[Worker], reader: BlockingHandoffService, signals: Path, spread: str
) -> None:
    first = workers[0].url
    second = workers[1].url if spread == "two workers" else first
    thread_id = start_thread(first)
    opening = send_with_retries([first], thread_id, Sent(SCRIPT[0].format(n="race"), uuid.uuid4().hex))
    block = f"race-{uuid.uuid4().hex[:8]}"
    texts = [f"[block:{block}] First of two at once.", f"[block:{block}] Second of two at once."]
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    barrier = threading.Barrier(2, timeout=30)

    def post(base: str, text: str, message_id: str) -> httpx.Response:
        barrier.wait()
        return post_message(base, thread_id, text, message_id, timeout=REQUEST_LIMIT)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures: list[Future[httpx.Response]] = [
            pool.submit(post, base, text, message_id)
            for base, text, message_id in zip((first, second), texts, ids, strict=True)
        ]
        try:
            # The winner holds the thread inside its model call until released, so the
            # loser meets a busy thread whichever of the two came first.
            wait_entered(signals, block)
            loser = next(iter(_first_done(futures)))
            refused = loser.result(timeout=REQUEST_LIMIT)
        finally:
            release(signals, block)
        winner = next(f for f in futures if f is not loser).result(timeout=REQUEST_LIMIT)

    assert winner.status_code == 200, winner.text
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "thread_busy"
    assert "nothing was done" in error["message"] and thread_id in error["message"]
    assert refused.headers["Retry-After"] == "1"

    won = futures.index(next(f for f in futures if f is not loser))
    stored = stored_thread(reader, thread_id)
    accepted = [opening, Sent(texts[won], ids[won])]
    check_exactly_once_in_order(stored, accepted)
    assert texts[1 - won] not in [str(m.content) for m in stored.transcript]


def _first_done(futures: list[Future[httpx.Response]]) -> list[Future[httpx.Response]]:
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(futures, timeout=REQUEST_LIMIT, return_when=FIRST_COMPLETED)
    assert done, "neither request was answered"
    return list(done)


def test_a_slow_model_call_on_one_thread_does_not_hold_up_another_thread(
    workers: list[Worker], reader: BlockingHandoffService, signals: Path
) -> None:
    base = workers[0].url  # one process: the two turns share its event loop and its persistence
    slow_thread, quick_thread = start_thread(base), start_thread(base)
    block = f"slow-{uuid.uuid4().hex[:8]}"
    slow = Sent(f"[block:{block}] Hi, this is Dana, account ACC-1001.", uuid.uuid4().hex)
    quick = Sent("Hi, this is Sam, account ACC-1002.", uuid.uuid4().hex)
    finished: list[str] = []

    def run(thread_id: str, sent: Sent) -> Sent:
        send_with_retries([base], thread_id, sent, limit=REQUEST_LIMIT)
        finished.append(sent.text)
        return sent

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(run, slow_thread, slow)
        try:
            wait_entered(signals, block)  # the slow turn is inside its model call now
            run(quick_thread, quick)  # ... and this whole turn runs meanwhile
            still_waiting = not pending.done()
        finally:
            release(signals, block)
        pending.result(timeout=REQUEST_LIMIT)

    assert still_waiting, "the slow turn ended before it was released"
    assert finished == [quick.text, slow.text]
    assert quick.attempts == ["ok"] and slow.attempts == ["ok"]
    check_exactly_once_in_order(stored_thread(reader, quick_thread), [quick])
    check_exactly_once_in_order(stored_thread(reader, slow_thread), [slow])
