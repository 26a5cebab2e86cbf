"""Access: bearer tokens, threads that belong to their client, unguessable ids, nothing secret in logs."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from handoff.agents.offline import OfflineChatModel
from handoff.service.app import create_app
from handoff.service.auth import TokenConfigError, parse_tokens
from tests.support.service_worker import free_port
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS

ALICE_TOKEN = "tok-alice-5f0c2e9b7d4a"
BOB_TOKEN = "tok-bob-a81d33c6e2f7"
WRONG_TOKEN = "tok-mallory-000000000000"
TOKENS = {ALICE_TOKEN: "alice", BOB_TOKEN: "bob"}
HELLO = "Hi, this is Dana Reyes, account ACC-1001, postcode 90210, dana.reyes@example.com."
CARD = "My card 4111 1111 1111 1111 with CVV 123 was charged twice on invoice INV-2002, refund please."
WANTS_A_PERSON = "This is useless, I want to speak to a manager."
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}
BOB = {"Authorization": f"Bearer {BOB_TOKEN}"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The service with tokens for alice and bob."""
    with TestClient(create_app("memory", model=OfflineChatModel(), tokens=TOKENS)) as test_client:
        yield test_client


def start(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/threads", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["thread_id"]


def say(client: TestClient, thread_id: str, text: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(f"/threads/{thread_id}/messages", json={"text": text, "stream": False},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


THREAD_CALLS = [
    ("GET", "", None),
    ("GET", "/handoffs", None),
    ("POST", "/messages", {"text": "What do you have on file for me?", "stream": False}),
    ("POST", "/escalation", {"reply": "A person here: all settled.", "stream": False}),
]


@pytest.mark.parametrize(("method", "suffix", "body"), THREAD_CALLS)
def test_another_clients_thread_is_404_like_a_missing_one(
    client: TestClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    thread_id = start(client, ALICE)
    say(client, thread_id, WANTS_A_PERSON, ALICE)  # alice's thread now waits for a person

    theirs = client.request(method, f"/threads/{thread_id}{suffix}", json=body, headers=BOB)
    missing_id = uuid.uuid4().hex
    missing = client.request(method, f"/threads/{missing_id}{suffix}", json=body, headers=BOB)

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "thread_not_found"
    assert theirs.json()["error"]["message"].replace(thread_id, "ID") == \
        missing.json()["error"]["message"].replace(missing_id, "ID")
    state = client.get(f"/threads/{thread_id}", headers=ALICE).json()
    assert [m["text"] for m in state["messages"] if m["role"] == "user"] == [WANTS_A_PERSON]
    assert state["escalation"] is not None, "bob's request changed nothing"


def test_the_owner_reads_posts_and_answers_the_escalation(client: TestClient) -> None:
    thread_id = start(client, ALICE)
    pending = say(client, thread_id, WANTS_A_PERSON, ALICE)["escalation"]
    answered = client.post(f"/threads/{thread_id}/escalation", headers=ALICE, json={
        "reply": "A person here: all settled.", "escalation_id": pending["id"], "stream": False})
    assert answered.status_code == 200, answered.text
    assert client.get(f"/threads/{thread_id}/handoffs", headers=ALICE).status_code == 200
    assert client.get(f"/threads/{thread_id}", headers=ALICE).json()["escalation"] is None


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": f"Bearer {WRONG_TOKEN}"},
    {"Authorization": f"Basic {ALICE_TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {ALICE_TOKEN}x"},
], ids=["missing", "unknown", "not bearer", "empty", "extended"])
def test_a_missing_or_bad_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    thread_id = start(client, ALICE)
    for method, path, body in [("GET", "/graphs", None), ("POST", "/threads", {}),
                               *[(m, f"/threads/{thread_id}{s}", b) for m, s, b in THREAD_CALLS]]:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert ALICE_TOKEN not in response.text and WRONG_TOKEN not in response.text


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_the_api_documents_follow_the_token_rule(client: TestClient, path: str) -> None:
    refused = client.get(path)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert "paths" not in refused.text
    assert client.get(path, headers=ALICE).status_code == 200


def test_health_and_the_web_page_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="token"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_openapi_declares_the_bearer_scheme_only_when_tokens_are_on(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=ALICE).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "401" in spec["paths"]["/threads/{thread_id}/messages"]["post"]["responses"]
    with TestClient(create_app("memory", model=OfflineChatModel())) as open_client:
        open_spec = open_client.get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert "401" not in open_spec["paths"]["/threads/{thread_id}/messages"]["post"]["responses"]


def test_tokens_off_means_open_access(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANDOFF_API_TOKENS", raising=False)
    with TestClient(create_app("memory", model=OfflineChatModel())) as open_client:
        thread_id = start(open_client, {})
        assert say(open_client, thread_id, HELLO, {})["reply"]
        # any header, or none, reads any thread
        assert open_client.get(f"/threads/{thread_id}", headers=BOB).status_code == 200
        assert open_client.get(f"/threads/{thread_id}").status_code == 200


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_API_TOKENS", f"{ALICE_TOKEN}:alice, {BOB_TOKEN}:bob")
    with TestClient(create_app("memory", model=OfflineChatModel())) as env_client:
        assert env_client.post("/threads", json={}).status_code == 401
        thread_id = start(env_client, ALICE)
        assert env_client.get(f"/threads/{thread_id}", headers=BOB).status_code == 404


@pytest.mark.parametrize("spec", ["tok-secret-1", f"{ALICE_TOKEN}:", f":alice,{BOB_TOKEN}:bob",
                                  f"{ALICE_TOKEN}:alice,{ALICE_TOKEN}:bob"])
def test_a_malformed_token_setting_is_refused_without_echoing_tokens(spec: str) -> None:
    with pytest.raises(TokenConfigError) as refused:
        parse_tokens(spec)
    assert "tok-" not in str(refused.value)
    assert "entry" in str(refused.value)


def test_parse_tokens_reads_names() -> None:
    assert parse_tokens(" a:alice , b:bob ,") == {"a": "alice", "b": "bob"}
    assert parse_tokens("") == {}


def test_thread_ids_are_random_uuid4(client: TestClient) -> None:
    ids = [start(client, ALICE) for _ in range(20)]
    assert len(set(ids)) == len(ids)
    for thread_id in ids:
        parsed = uuid.UUID(hex=thread_id)
        assert parsed.version == 4 and parsed.hex == thread_id


def test_no_token_message_or_case_file_reaches_the_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    thread_id = start(client, ALICE)
    say(client, thread_id, HELLO, ALICE)
    say(client, thread_id, CARD, ALICE)
    client.post(f"/threads/{thread_id}/messages", json={"text": "hello"},
                headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
    client.get(f"/threads/{thread_id}", headers=BOB)
    client.post(f"/threads/{thread_id}/messages", json={"text": CARD, "colour": "red"}, headers=ALICE)
    pending = say(client, thread_id, WANTS_A_PERSON, ALICE)["escalation"]
    client.post(f"/threads/{thread_id}/escalation", headers=ALICE, json={
        "reply": "Refunded to card 4111 1111 1111 1111.", "escalation_id": pending["id"], "stream": False})
    case_file = client.get(f"/threads/{thread_id}", headers=ALICE).json()["case_file"]

    logged = "\n".join(
        record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records)
    assert "turn done" in logged and "refused a request with an unknown bearer token" in logged
    secrets = [ALICE_TOKEN, BOB_TOKEN, WRONG_TOKEN, "ACC-1001", "4111", "dana.reyes@example.com",
               "Dana Reyes", "90210", "INV-2002", "charged twice", "speak to a manager", "Refunded to card"]
    secrets += [str(value) for value in case_file.values() if isinstance(value, str) and len(value) > 3]
    leaked = [secret for secret in secrets if secret in logged]
    assert leaked == []


def test_the_web_page_asks_for_a_token_and_then_chats(tmp_path: Path) -> None:
    """Headless Chromium: the first 401 shows the token field; with the token the chat works and
    a reload keeps it (localStorage)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-browser.sh`")
    port = free_port()
    app = create_app("memory", model=OfflineChatModel(), tokens={ALICE_TOKEN: "alice"})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="token-page-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
            time.sleep(0.05)
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
            context.set_default_timeout(15_000)
            try:
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{port}/")
                expect(page.get_by_test_id("token-form")).to_be_visible()
                expect(page.get_by_test_id("error")).to_contain_text("needs an access token")

                page.get_by_test_id("token-input").fill(ALICE_TOKEN)
                page.get_by_test_id("token-save").click()
                expect(page.locator("body")).to_have_attribute("data-ready", "true")
                page.get_by_test_id("message-input").fill(HELLO + " My internet keeps dropping every evening.")
                page.get_by_test_id("message-input").press("Enter")
                expect(page.get_by_test_id("active-agent")).to_have_text("Technical Specialist")

                page.reload()
                expect(page.locator("body")).to_have_attribute("data-ready", "true")
                expect(page.get_by_test_id("token-form")).to_be_hidden()
                expect(page.locator(".msg.user")).to_have_count(1)
                assert errors == []
            finally:
                context.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
