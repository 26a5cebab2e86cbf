"""The HTTP service: every endpoint, its errors, SSE turns, escalations, shared PostgreSQL."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langgraph.graph import START, StateGraph

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.registry import GRAPHS, GraphEntry
from handoff.service.app import create_app
from handoff.service.blocking import BlockingHandoffService
from handoff.service.embedding import HandoffService
from handoff.service.errors import ThreadBusy
from handoff.service.models import DoneEvent
from handoff.state import HandoffState

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210."
TECHNICAL = "My internet keeps dropping every evening."
WANTS_A_PERSON = "This is useless, I want to speak to a manager."


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) for each server-sent event of ``body``."""
    events = []
    for frame in body.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        name = next(line[len("event: "):] for line in lines if line.startswith("event: "))
        data = "\n".join(line[len("data: "):] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def stream_turn(client: TestClient, path: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse("".join(response.iter_text()))


def start(client: TestClient) -> str:
    response = client.post("/threads", json={"graph": "customer-service"})
    assert response.status_code == 201
    return response.json()["thread_id"]


def say(client: TestClient, thread_id: str, text: str) -> dict[str, Any]:
    response = client.post(f"/threads/{thread_id}/messages", json={"text": text, "stream": False})
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app("memory", model=OfflineChatModel())) as test_client:
        yield test_client


def test_health_names_the_persistence(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True, "persistence": "memory"}


def test_graphs_lists_customer_service_with_its_agents(client: TestClient) -> None:
    graphs = {g["name"]: g for g in client.get("/graphs").json()}
    support = graphs["customer-service"]
    assert support["flow"].startswith("General Support")
    assert {"general_support", "technical_specialist", "billing_expert"} <= set(support["agents"])


def test_start_thread_registers_a_new_thread(client: TestClient) -> None:
    first = client.post("/threads", json={}).json()
    second = client.post("/threads").json()
    assert first["graph"] == "customer-service"
    assert first["thread_id"] != second["thread_id"]
    state = client.get(f"/threads/{first['thread_id']}").json()
    assert state["messages"] == [] and state["handoffs"] == [] and state["escalation"] is None


def test_start_thread_on_unknown_graph_is_422_naming_the_graphs(client: TestClient) -> None:
    error = assert_error(client.post("/threads", json={"graph": "nope"}), 422, "unknown_graph")
    assert "customer-service" in error["message"]


def test_message_streams_handoff_events_then_the_receivers_answer(client: TestClient) -> None:
    thread_id = start(client)
    say(client, thread_id, HELLO)
    events = stream_turn(client, f"/threads/{thread_id}/messages", {"text": TECHNICAL})

    names = [name for name, _ in events]
    handoffs = [(data["kind"], data["source"], data["target"]) for name, data in events if name == "handoff"]
    assert ("requested", "general_support", "technical_specialist") in handoffs
    assert ("accepted", "general_support", "technical_specialist") in handoffs
    said = [data["message"] for name, data in events if name == "message" and data["message"]["role"] == "agent"]
    assert said[-1]["agent"] == "technical_specialist"
    assert names.index("handoff") < names.index("message")
    assert names[-1] == "done"
    result = events[-1][1]["result"]
    assert result["active_agent"] == "technical_specialist"
    assert result["reply"] == said[-1]["text"]
    assert result["handoffs"][-1]["outcome"] == "accepted"


def test_message_with_stream_false_returns_the_turn_as_json(client: TestClient) -> None:
    thread_id = start(client)
    result = say(client, thread_id, HELLO)
    assert result["thread_id"] == thread_id
    assert result["active_agent"] == "general_support"
    assert "[offline model]" in result["reply"]
    assert result["case_file"]["account_id"] == "ACC-1001"
    assert result["events"] == [] and result["escalation"] is None


def test_thread_state_and_handoffs_read_back_what_happened(client: TestClient) -> None:
    thread_id = start(client)
    say(client, thread_id, HELLO)
    say(client, thread_id, TECHNICAL)

    state = client.get(f"/threads/{thread_id}").json()
    assert state["active_agent"] == "technical_specialist"
    assert state["turn"] == 2
    assert state["case_file"]["identity_verified"] is True
    roles = [(m["role"], m["agent"]) for m in state["messages"]]
    assert roles[0] == ("user", None)
    assert ("agent", "general_support") in roles and ("agent", "technical_specialist") in roles
    assert [m["text"] for m in state["messages"] if m["role"] == "user"] == [HELLO, TECHNICAL]

    records = client.get(f"/threads/{thread_id}/handoffs").json()
    assert records == state["handoffs"]
    assert [(r["request"]["source"], r["request"]["target"], r["outcome"]) for r in records] == [
        ("general_support", "technical_specialist", "accepted")
    ]
    assert records[0]["request"]["reason"]
    assert records[0]["init_result"]["action"] == "check_region_status"

    last_two = client.get(f"/threads/{thread_id}", params={"limit": 2}).json()["messages"]
    assert last_two == state["messages"][-2:]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/handoffs", None),
        ("POST", "/messages", {"text": "hello"}),
        ("POST", "/escalation", {"reply": "hello"}),
    ],
)
def test_unknown_thread_is_404(client: TestClient, method: str, suffix: str, body: dict | None) -> None:
    response = client.request(method, f"/threads/no-such-thread{suffix}", json=body)
    error = assert_error(response, 404, "thread_not_found")
    assert "no-such-thread" in error["message"]


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_message_is_422(client: TestClient, text: str) -> None:
    thread_id = start(client)
    response = client.post(f"/threads/{thread_id}/messages", json={"text": text})
    error = assert_error(response, 422, "invalid_request")
    assert error["message"].startswith("text:")
    assert error["fields"][0]["loc"] == ["body", "text"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"text": "hi"', "body"),  # not JSON
        (b'["hi"]', "body"),  # not an object
        (b"{}", "text"),  # missing field
        (b'{"text": 42}', "text"),  # wrong type
        (b'{"text": "hi", "colour": "red"}', "colour"),  # unknown field
    ],
)
def test_malformed_message_body_is_422(client: TestClient, content: bytes, field: str) -> None:
    thread_id = start(client)
    response = client.post(f"/threads/{thread_id}/messages", content=content,
                           headers={"Content-Type": "application/json"})
    error = assert_error(response, 422, "invalid_request")
    assert field in error["message"]


@pytest.mark.parametrize("path", ["/threads", "/threads/{thread_id}/messages", "/threads/{thread_id}/escalation"])
def test_a_body_that_is_not_json_is_415_and_changes_nothing(client: TestClient, path: str) -> None:
    thread_id = start(client)
    response = client.post(path.format(thread_id=thread_id), content=b"text=hello",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/x-www-form-urlencoded" in error["message"]
    assert client.get(f"/threads/{thread_id}").json()["messages"] == []
    charset = client.post(f"/threads/{thread_id}/messages", content=b'{"text": "hello"}',
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 200


def test_answering_when_no_escalation_is_pending_is_409(client: TestClient) -> None:
    thread_id = start(client)
    say(client, thread_id, HELLO)
    error = assert_error(client.post(f"/threads/{thread_id}/escalation", json={"reply": "Hello"}),
                         409, "no_pending_escalation")
    assert thread_id in error["message"]


def test_escalation_pauses_the_thread_and_a_persons_answer_resumes_it(client: TestClient) -> None:
    thread_id = start(client)
    say(client, thread_id, HELLO)
    events = stream_turn(client, f"/threads/{thread_id}/messages", {"text": WANTS_A_PERSON})
    escalation = next(data["escalation"] for name, data in events if name == "escalation")
    assert escalation["node"] == "human"
    assert escalation["source"] == "general_support"
    assert escalation["question"] == WANTS_A_PERSON
    assert escalation["reason"] and escalation["briefing"]
    assert events[-1][1]["result"]["escalation"] == escalation

    state = client.get(f"/threads/{thread_id}").json()
    assert state["escalation"]["id"] == escalation["id"]
    assert_error(client.post(f"/threads/{thread_id}/messages", json={"text": "Hello?"}),
                 409, "escalation_pending")

    events = stream_turn(client, f"/threads/{thread_id}/escalation", {
        "reply": "Jo from the support team here; I have credited your account.",
        "hand_back_to": "billing_expert", "escalation_id": escalation["id"],
    })
    said = [data["message"] for name, data in events if name == "message"]
    assert said == [{"role": "agent", "agent": "human",
                     "text": "Jo from the support team here; I have credited your account."}]
    result = events[-1][1]["result"]
    assert result["escalation"] is None
    assert result["active_agent"] == "billing_expert"
    assert [(r["request"]["source"], r["request"]["target"]) for r in result["handoffs"]] == [
        ("general_support", "human"), ("human", "billing_expert")
    ]
    assert client.get(f"/threads/{thread_id}").json()["escalation"] is None


def test_answering_an_escalation_that_does_not_exist_is_404(client: TestClient) -> None:
    thread_id = start(client)
    pending = say(client, thread_id, WANTS_A_PERSON)["escalation"]
    response = client.post(f"/threads/{thread_id}/escalation",
                           json={"reply": "Hello", "escalation_id": "not-this-one"})
    error = assert_error(response, 404, "escalation_not_found")
    assert pending["id"] in error["message"]


def test_answer_handing_back_to_an_unknown_agent_is_422(client: TestClient) -> None:
    thread_id = start(client)
    say(client, thread_id, WANTS_A_PERSON)
    response = client.post(f"/threads/{thread_id}/escalation",
                           json={"reply": "Hello", "hand_back_to": "nobody"})
    error = assert_error(response, 422, "invalid_answer")
    assert "billing_expert" in error["message"]


@pytest.mark.parametrize("body", [{"reply": "  "}, {}, {"reply": "ok", "extra": 1}])
def test_malformed_escalation_answer_is_422(client: TestClient, body: dict[str, Any]) -> None:
    thread_id = start(client)
    say(client, thread_id, WANTS_A_PERSON)
    assert_error(client.post(f"/threads/{thread_id}/escalation", json=body), 422, "invalid_request")


def test_the_web_chat_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="timeline"' in page.text and 'id="escalation"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


@pytest.mark.anyio
async def test_a_thread_runs_one_turn_at_a_time() -> None:
    async with HandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = (await service.start_thread()).thread_id
        held = await service.locks.acquire(thread_id)
        assert held is not None
        try:
            with pytest.raises(ThreadBusy):
                await service.send(thread_id, HELLO)
        finally:
            await held.release()
        assert (await service.result(await service.send(thread_id, HELLO))).active_agent == "general_support"


@pytest.mark.anyio
async def test_async_embedding_api_holds_a_conversation_without_http() -> None:
    async with HandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = (await service.start_thread("customer-service")).thread_id
        await service.result(await service.send(thread_id, HELLO))
        result = await service.result(await service.send(thread_id, TECHNICAL))
        assert result.active_agent == "technical_specialist"
        assert [r.target for r in await service.handoffs(thread_id)] == ["technical_specialist"]


def test_blocking_embedding_api_holds_a_conversation_from_sync_code() -> None:
    with BlockingHandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = service.start_thread("customer-service").thread_id
        events = list(service.send(thread_id, HELLO))
        assert isinstance(events[-1], DoneEvent) and events[-1].result.active_agent == "general_support"
        result = service.result(service.send(thread_id, TECHNICAL))
        assert result.active_agent == "technical_specialist"
        assert [r.target for r in service.handoffs(thread_id)] == ["technical_specialist"]
        assert service.state(thread_id).case_file["account_id"] == "ACC-1001"


@pytest.mark.parametrize("left", ["closed unread", "dropped unread", "closed after one event"])
def test_a_blocking_turn_left_unread_frees_its_thread(left: str) -> None:
    with BlockingHandoffService.open("memory", model=OfflineChatModel()) as service:
        thread_id = service.start_thread().thread_id
        stream = service.send(thread_id, HELLO)
        if left == "closed after one event":
            next(stream)
        if left == "dropped unread":
            del stream
            gc.collect()
        else:
            stream.close()
        with service.send(thread_id, TECHNICAL) as again:
            assert isinstance(list(again)[-1], DoneEvent)


def test_thread_resumes_on_another_app_instance_sharing_postgresql() -> None:
    """Two service workers on one PostgreSQL: either may take any turn of any thread."""
    with TestClient(create_app(POSTGRES_URL, model=OfflineChatModel())) as first, \
            TestClient(create_app(POSTGRES_URL, model=OfflineChatModel())) as second:
        assert first.get("/healthz").json()["persistence"] == "postgresql"
        thread_id = start(first)
        say(first, thread_id, HELLO)
        say(first, thread_id, TECHNICAL)

        state = second.get(f"/threads/{thread_id}").json()
        assert state["active_agent"] == "technical_specialist"
        assert state["case_file"]["account_id"] == "ACC-1001"
        assert [r["request"]["target"] for r in state["handoffs"]] == ["technical_specialist"]
        assert len([m for m in state["messages"] if m["role"] == "user"]) == 2

        pending = say(second, thread_id, WANTS_A_PERSON)["escalation"]
        assert pending["source"] == "technical_specialist"
        assert first.get(f"/threads/{thread_id}").json()["escalation"]["id"] == pending["id"]

        answered = first.post(f"/threads/{thread_id}/escalation", json={
            "reply": "A person here: an engineer visits tomorrow.", "hand_back_to": "technical_specialist",
            "escalation_id": pending["id"], "stream": False,
        })
        assert answered.status_code == 200, answered.text
        final = second.get(f"/threads/{thread_id}").json()
        assert final["escalation"] is None
        assert final["active_agent"] == "technical_specialist"
        assert final["messages"][-1] == {"role": "agent", "agent": "human",
                                         "text": "A person here: an engineer visits tomorrow."}
        assert [r["request"]["target"] for r in final["handoffs"]] == [
            "technical_specialist", "human", "technical_specialist"
        ]


def _broken_graph(model: Any = None, **_: Any) -> StateGraph:
    def explode(state: HandoffState) -> dict[str, Any]:
        raise RuntimeError("the back office is down")

    graph = StateGraph(HandoffState)
    graph.add_node("explode", explode)
    graph.add_edge(START, "explode")
    return graph


def test_a_failing_turn_is_reported_as_an_error_event_or_a_500() -> None:
    broken = GraphEntry(name="broken", title="Broken", flow="explodes", build=_broken_graph, demo=())
    with TestClient(create_app("memory", graphs={"broken": broken})) as client:
        thread_id = client.post("/threads", json={"graph": "broken"}).json()["thread_id"]
        events = stream_turn(client, f"/threads/{thread_id}/messages", {"text": "Hello"})
        assert events[-1] == ("error", {"type": "error", "code": "turn_failed",
                                        "message": "RuntimeError: the back office is down"})
        response = client.post(f"/threads/{thread_id}/messages", json={"text": "Hello", "stream": False})
        assert assert_error(response, 500, "turn_failed")["message"] == "RuntimeError: the back office is down"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_registry_graph_takes_a_turn(client: TestClient, name: str) -> None:
    thread_id = client.post("/threads", json={"graph": name}).json()["thread_id"]
    result = say(client, thread_id, GRAPHS[name].demo[0])
    assert result["reply"]
    assert result["active_agent"] in next(g["agents"] for g in client.get("/graphs").json() if g["name"] == name)


def test_openapi_documents_every_endpoint_and_the_error_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/graphs", "/threads", "/threads/{thread_id}", "/threads/{thread_id}/handoffs",
            "/threads/{thread_id}/messages", "/threads/{thread_id}/escalation"} <= set(spec["paths"])
    send = spec["paths"]["/threads/{thread_id}/messages"]["post"]["responses"]
    assert {"application/json", "text/event-stream"} <= set(send["200"]["content"])
    assert send["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"TurnResponse", "ThreadState", "ErrorBody"} <= set(spec["components"]["schemas"])


def test_the_default_sqlite_persistence_keeps_threads_across_a_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'service.sqlite'}"
    with TestClient(create_app(db, model=OfflineChatModel())) as first:
        assert first.get("/healthz").json()["persistence"] == "sqlite"
        thread_id = start(first)
        say(first, thread_id, HELLO)
        say(first, thread_id, TECHNICAL)
    with TestClient(create_app(db, model=OfflineChatModel())) as again:
        state = again.get(f"/threads/{thread_id}").json()
        assert state["active_agent"] == "technical_specialist"
        assert [m["text"] for m in state["messages"] if m["role"] == "user"] == [HELLO, TECHNICAL]
        assert [h["request"]["target"] for h in again.get(f"/threads/{thread_id}/handoffs").json()] == [
            "technical_specialist"]


def test_each_turns_result_is_the_thread_as_stored_after_it(client: TestClient) -> None:
    """A turn's result is built from its run's stream, not read back: it must say what the stored
    thread says, also once the handoff records outgrow the state's window (read from the journal)."""
    from benchmarks.load import CUSTOMER_SERVICE_SCRIPT
    from handoff.state.conversation import RECORD_WINDOW

    thread_id = start(client)
    result: dict[str, Any] = {}
    for text in CUSTOMER_SERVICE_SCRIPT * 4:
        result = say(client, thread_id, text)
        state = client.get(f"/threads/{thread_id}").json()
        assert result["handoffs"] == state["handoffs"]
        assert (result["active_agent"], result["case_file"], result["escalation"]) == (
            state["active_agent"], state["case_file"], state["escalation"])
        assert result["reply"] == state["messages"][-1]["text"]
    assert len(result["handoffs"]) > RECORD_WINDOW
