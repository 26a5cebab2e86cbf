"""langgraph.json's custom auth under a real `langgraph dev`: bearer tokens, threads filtered by owner."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.langgraph_dev import LangGraphDevError, langgraph_dev

GRAPH = "customer-service"
ALICE_TOKEN, BOB_TOKEN = "alice-token-7f3e", "bob-token-91c2"
TOKENS = f"{ALICE_TOKEN}:alice,{BOB_TOKEN}:bob"
TECHNICAL_TURN = "Hi, this is Dana, account ACC-1001. My internet keeps dropping every evening."


def client(url: str, token: str | None = None) -> SyncLangGraphClient:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return get_sync_client(url=url, api_key=None, headers=headers)


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status ``call`` is refused with (it must be refused)."""
    with pytest.raises(httpx.HTTPStatusError) as refused:
        call()
    return refused.value.response.status_code


def user_turn(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    """`langgraph dev` with alice's and bob's tokens; yields its URL."""
    with langgraph_dev({"HANDOFF_API_TOKENS": TOKENS}, graphs=[GRAPH]) as url:
        yield url


@pytest.fixture
def alice(guarded: str) -> SyncLangGraphClient:
    return client(guarded, ALICE_TOKEN)


@pytest.fixture
def bob(guarded: str) -> SyncLangGraphClient:
    return client(guarded, BOB_TOKEN)


def alice_thread(alice: SyncLangGraphClient) -> tuple[str, str]:
    """A thread of alice's with one customer-service turn run on it: (thread id, run id)."""
    thread = alice.threads.create()
    run = alice.runs.create(thread["thread_id"], GRAPH, input=user_turn(TECHNICAL_TURN))
    alice.runs.join(thread["thread_id"], run["run_id"])
    assert alice.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"
    return thread["thread_id"], run["run_id"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": f"Bearer {ALICE_TOKEN}x"},
    {"Authorization": ALICE_TOKEN},
    {"Authorization": f"Basic {ALICE_TOKEN}"},
    # `langgraph dev` lets this header stand in for a Studio login; langgraph.json turns that off.
    {"x-auth-scheme": "langsmith"},
], ids=["none", "unknown", "near-miss", "no-scheme", "basic", "studio-header"])
def test_a_request_without_a_valid_token_is_refused_401_without_hints(
    guarded: str, headers: dict[str, str]
) -> None:
    for method, path, body in [("POST", "/threads/search", {}), ("POST", "/threads", {}),
                               ("POST", "/assistants/search", {}), ("GET", f"/threads/{uuid.uuid4()}", None)]:
        response = httpx.request(method, guarded + path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        for secret in (ALICE_TOKEN, BOB_TOKEN, "alice", "bob"):
            assert secret not in response.text


def test_the_sdk_without_a_token_gets_401(guarded: str) -> None:
    assert status_of(lambda: client(guarded).threads.search()) == 401


def test_alice_runs_a_customer_service_turn_on_a_thread_stamped_as_hers(alice: SyncLangGraphClient) -> None:
    thread = alice.threads.create(metadata={"owner": "bob", "topic": "internet"})
    assert thread["metadata"] == {"owner": "alice", "topic": "internet"}, "the owner is the caller's, not claimed"

    result = alice.runs.wait(thread["thread_id"], GRAPH, input=user_turn(TECHNICAL_TURN))
    assert result["active_agent"] == "technical_specialist"
    assert result["case_file"]["account_id"] == "ACC-1001"

    assert thread["thread_id"] in {t["thread_id"] for t in alice.threads.search(limit=100)}
    state = alice.threads.get_state(thread["thread_id"])["values"]
    assert state["handoffs"][-1]["outcome"] == "accepted"


def test_bob_cannot_read_list_run_on_update_or_delete_alices_thread(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    thread_id, run_id = alice_thread(alice)
    before = alice.threads.get_state(thread_id)["values"]

    # Another client's thread answers exactly like a thread that does not exist: 404, not 403.
    assert status_of(lambda: bob.threads.get(thread_id)) == 404
    assert status_of(lambda: bob.threads.get_state(thread_id)) == 404
    assert status_of(lambda: bob.threads.get_history(thread_id)) == 404
    assert status_of(lambda: bob.runs.list(thread_id)) == 404
    assert status_of(lambda: bob.runs.get(thread_id, run_id)) == 404
    assert status_of(lambda: bob.runs.wait(thread_id, GRAPH, input=user_turn("Refund me."))) == 404
    assert status_of(lambda: bob.runs.create(thread_id, GRAPH, input=user_turn("Refund me."))) == 404
    assert status_of(lambda: bob.threads.update(thread_id, metadata={"owner": "bob"})) == 404
    assert status_of(lambda: bob.threads.update_state(thread_id, {"active_agent": "billing_expert"})) == 404
    assert status_of(lambda: bob.threads.delete(thread_id)) == 404

    listed = {t["thread_id"] for t in bob.threads.search(limit=100)}
    listed |= {t["thread_id"] for t in bob.threads.search(metadata={"owner": "alice"}, limit=100)}
    listed |= {t["thread_id"] for t in bob.threads.search(ids=[thread_id])}
    assert thread_id not in listed
    assert bob.threads.count(metadata={"owner": "alice"}) == 0

    after = alice.threads.get(thread_id)
    assert after["metadata"]["owner"] == "alice"
    assert alice.threads.get_state(thread_id)["values"] == before, "bob's attempts changed nothing"


def test_a_thread_a_run_creates_belongs_to_whoever_ran_it(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    thread_id = str(uuid.uuid4())
    alice.runs.wait(thread_id, GRAPH, input=user_turn(TECHNICAL_TURN), if_not_exists="create",
                    metadata={"owner": "bob"})
    assert alice.threads.get(thread_id)["metadata"]["owner"] == "alice"
    assert status_of(lambda: bob.threads.get_state(thread_id)) == 404


def test_the_graphs_assistants_are_shared_read_only_and_a_clients_own_are_private(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    shared = {a["graph_id"]: a for a in bob.assistants.search(limit=100)}
    assert shared[GRAPH]["metadata"].get("created_by") == "system"
    shared_id = shared[GRAPH]["assistant_id"]
    assert bob.assistants.get(shared_id)["graph_id"] == GRAPH
    assert status_of(lambda: bob.assistants.update(shared_id, metadata={"owner": "bob"})) == 404
    assert status_of(lambda: bob.assistants.delete(shared_id)) == 404

    # Claiming the server's mark does not make alice's assistant everyone's.
    own = alice.assistants.create(GRAPH, metadata={"created_by": "system"}, name="alice-customer-service")
    assert own["metadata"] == {"owner": "alice"}
    assert own["assistant_id"] not in {a["assistant_id"] for a in bob.assistants.search(limit=100)}
    assert status_of(lambda: bob.assistants.get(own["assistant_id"])) == 404
    assert status_of(lambda: bob.runs.wait(None, own["assistant_id"], input=user_turn("hi"))) == 404
    assert alice.assistants.get(own["assistant_id"])["name"] == "alice-customer-service"


def test_the_store_api_keeps_each_client_under_its_own_namespace(
    alice: SyncLangGraphClient, bob: SyncLangGraphClient
) -> None:
    alice.store.put_item(("notes",), "dana", {"note": "prefers email"})
    assert alice.store.get_item(("notes",), "dana")["value"] == {"note": "prefers email"}
    assert bob.store.search_items(("notes",))["items"] == []
    assert bob.store.search_items(("alice", "notes"))["items"] == []


def test_malformed_tokens_stop_the_server_without_logging_them(tmp_path: Path) -> None:
    log = tmp_path / "langgraph-dev.log"
    with pytest.raises(LangGraphDevError, match="exited"), \
            langgraph_dev({"HANDOFF_API_TOKENS": f"{ALICE_TOKEN}:alice,broken-entry"}, graphs=[GRAPH],
                          log_path=log):
        pass
    text = log.read_text()
    assert "TokenConfigError" in text and "entry 2 is not 'token:name'" in text
    assert ALICE_TOKEN not in text and "broken-entry" not in text


def test_without_tokens_a_client_with_no_header_can_do_everything() -> None:
    with langgraph_dev(graphs=[GRAPH]) as url:
        anyone = client(url)
        thread = anyone.threads.create(metadata={"topic": "internet"})
        assert thread["metadata"] == {"topic": "internet"}, "nothing is stamped while access is open"
        result = anyone.runs.wait(thread["thread_id"], GRAPH, input=user_turn(TECHNICAL_TURN))
        assert result["active_agent"] == "technical_specialist"
        assert thread["thread_id"] in {t["thread_id"] for t in anyone.threads.search(limit=100)}
        # A token nobody configured is no key to anything, but no lock either.
        stranger = client(url, "whatever")
        assert stranger.threads.get_state(thread["thread_id"])["values"]["active_agent"] == "technical_specialist"
        anyone.threads.delete(thread["thread_id"])
        assert status_of(lambda: anyone.threads.get(thread["thread_id"])) == 404
