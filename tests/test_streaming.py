"""Replies stream token by token on every surface (issue 19): the offline model, the session, `handoff
chat` in a terminal, the service's server-sent events and `langgraph dev`; a handoff sits between two
agents' text, and a stream broken mid-answer leaves only whole messages behind.

"Partial before the end" is shown by order, never by the clock: the stub holds its answer after a few
tokens (``SlowStream(hold_after=...)``) until the test has seen them, and only then sends the rest.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph_sdk import get_sync_client
from rich.console import Console
from typer.testing import CliRunner

from handoff.agents.models import make_chat_model
from handoff.agents.offline import OfflineChatModel
from handoff.agents.offline_stream import text_pieces
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import ClassifierTrigger
from handoff.cli.main import app as cli_app
from handoff.cli.replies import LiveReplies
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession
from handoff.graphs.settings import StorageSettings
from handoff.graphs.streaming import TokenEvent, TokenTranslator, speaking_agents
from handoff.service.app import create_app
from tests.helpers import compile_memory
from tests.support.langgraph_dev import langgraph_dev
from tests.support.live_service import serving_app, sse_events, use_stub
from tests.support.openai_stub import OpenAIStub, SlowStream, tool_reply

GRAPH = "customer-service"
ROOT = Path(__file__).resolve().parents[1]
HANDOFF = Path(sys.executable).parent / "handoff"
ANSWER = "Hello Dana, I am looking into your connection right now and will report back in a moment."
SHOWN_FIRST = "Hello Dana, I "
"""ANSWER's first three tokens: what a client shows while the stub holds the rest."""
SOURCE_TEXT = "Let me bring in our technical specialist for this."
RECEIVER_TEXT = "Technical here: your line shows evening congestion, and I am on it."
TRANSFER_SECRET = "SUMMARY-7Q4Z"
TRANSFER = tool_reply("transfer_to_technical_specialist", {
    "reason": "connection drops", "summary": TRANSFER_SECRET,
    "account_id": "ACC-1001", "symptoms": "drops every night"}, call_id="call_transfer")["tool_calls"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WAIT_S = 60.0
"""How long a test waits for output before it fails (a limit, not a measurement)."""


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch, openai_stub: OpenAIStub) -> OpenAIStub:
    """The local OpenAI-compatible stub, set as the model for this process and its children."""
    use_stub(monkeypatch, openai_stub)
    return openai_stub


def deltas(events: list[TokenEvent], agent: str | None = None) -> str:
    return "".join(e.text for e in events if e.kind == "delta" and agent in (None, e.agent))


def stored_messages(graph: Any, thread_id: str) -> list[BaseMessage]:
    """The thread's checkpointed window and its whole journal, as a restarted process reads them."""
    values = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    return [*values["messages"], *Journal(graph.store, thread_id).messages_at(values)]


def agent_texts(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, AIMessage) and m.content]


# --- the offline model ----------------------------------------------------------------------------------


def test_the_offline_model_streams_its_answer_in_pieces_and_its_calls_whole() -> None:
    model = OfflineChatModel()
    prompt = [HumanMessage("My internet keeps dropping every evening, account ACC-1001.")]
    whole = model.invoke(prompt)
    chunks = list(model.stream(prompt))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == whole.content and total.tool_calls == whole.tool_calls
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 3 and "".join(texts) == whole.content
    assert text_pieces("  two  spaces\nand a line ", words=3) == ["  two  spaces\nand ", "a line "]
    assert text_pieces("   ") == ["   "] and text_pieces("") == []


def test_the_offline_models_tool_calls_arrive_in_one_chunk_after_its_text() -> None:
    graph = compile_memory(build_customer_service_graph(model=OfflineChatModel()))
    tools = graph.builder.agent_specs["general_support"].tools
    bound = OfflineChatModel().bind_tools(tools)
    chunks = list(bound.stream([HumanMessage("Hi, this is Dana, account ACC-1001, postcode 90210.")]))
    with_calls = [i for i, c in enumerate(chunks) if c.tool_call_chunks]
    assert len(with_calls) == 1 and len(chunks[with_calls[0]].tool_call_chunks) >= 1
    assert all(not c.content for c in chunks[with_calls[0]:])


# --- handoff chat ---------------------------------------------------------------------------------------


class Terminal:
    """A process on a pseudo-terminal, and what it has written so far (escape codes removed)."""

    def __init__(self, args: list[str]) -> None:
        self._master, worker = pty.openpty()
        self.process = subprocess.Popen([str(HANDOFF), *args], stdin=worker, stdout=worker, stderr=worker,
                                        cwd=ROOT, env={**os.environ, "TERM": "xterm-256color"},
                                        start_new_session=True)
        os.close(worker)
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace")).replace("\r", "")

    def expect(self, wanted: str) -> str:
        """Read until ``wanted`` has been written; the text so far."""
        while wanted not in self.text:
            ready, _, _ = select.select([self._master], [], [], WAIT_S)
            if not ready:
                pytest.fail(f"{wanted!r} was not written; the terminal shows:\n{self.text}")
            try:
                self.raw += os.read(self._master, 4096)
            except OSError:  # the process ended and closed the terminal
                pytest.fail(f"{wanted!r} was not written before the end:\n{self.text}")
        return self.text

    def type(self, line: str) -> None:
        os.write(self._master, f"{line}\n".encode())

    def close(self) -> int:
        """Wait for the process to end (killed if it does not); its exit code."""
        try:
            return self.process.wait(timeout=WAIT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            if self._master >= 0:
                os.close(self._master)
                self._master = -1


@contextmanager
def terminal(*args: str) -> Iterator[Terminal]:
    term = Terminal(list(args))
    try:
        yield term
    finally:
        term.close()


def test_handoff_chat_in_a_terminal_shows_part_of_the_reply_before_the_turn_ends(stub: OpenAIStub) -> None:
    slow = SlowStream(ANSWER, hold_after=3)
    stub.add(slow)
    with terminal("chat", GRAPH, "--db", "memory") as term:
        term.expect("you> ")
        term.type("hello")
        shown = term.expect(f"general_support: {SHOWN_FIRST}")
        assert not slow.finished.is_set(), "the stub had sent its whole answer already"
        assert ANSWER not in shown
        slow.resume.set()
        shown = term.expect(f"general_support: {ANSWER}\n")
        term.expect("you> ")
        term.type("")
        assert term.close() == 0, term.text
    assert term.text.count(ANSWER) == 1, "a streamed reply is not printed a second time"
    assert slow.sent == len(slow.tokens)


def test_the_chat_names_a_finished_reply_that_was_withdrawn_after_its_line_ended() -> None:
    out = io.StringIO()
    replies = LiveReplies(Console(file=out, width=40))
    for event in [TokenEvent(agent="front", message_id="a", text="Let me look that up for you, "),
                  TokenEvent(agent="front", message_id="a", text="one moment please."),
                  TokenEvent(kind="complete", agent="front", message_id="a"),
                  TokenEvent(agent="front", message_id="b", text="Your account"),
                  TokenEvent(kind="interrupted", agent="front", message_id="b"),
                  TokenEvent(kind="interrupted", agent="front", message_id="a")]:
        replies.token(event)
    assert out.getvalue().splitlines() == [
        "front: Let me look that up for you, one moment please.",  # not wrapped at 40: the terminal wraps
        "front: Your account [interrupted]",
        '[interrupted] front\'s reply "Let me look that up for you, one moment\u2026" above was not kept',
    ]


def test_piped_chat_marks_a_broken_reply_interrupted_and_prints_no_escape_codes(stub: OpenAIStub) -> None:
    """Not a terminal: plain incremental text; the retried answer follows the broken one."""
    stub.add(SlowStream(ANSWER, every=0, break_after=3), SlowStream(ANSWER, every=0))
    result = CliRunner().invoke(cli_app, ["chat", GRAPH, "--thread", "piped-1"], input="hello\n")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    broken, whole = f"general_support: {SHOWN_FIRST}[interrupted]\n", f"general_support: {ANSWER}\n"
    assert broken in result.stdout and whole in result.stdout, result.stdout
    assert result.stdout.index(broken) < result.stdout.index(whole)
    assert result.stdout.count(ANSWER) == 1
    with open_persistence(StorageSettings().db_url) as persistence:
        graph = get_graph(GRAPH).build(model=OfflineChatModel()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        assert agent_texts(stored_messages(graph, "piped-1")) == [ANSWER, ANSWER]  # window + journal


# --- the session: broken streams, fallbacks, classifiers --------------------------------------------------


def test_a_stream_broken_mid_answer_leaves_a_clean_transcript_and_an_honest_reply(stub: OpenAIStub) -> None:
    """Every attempt breaks: each partial text is interrupted, the turn ends with an honest message, and
    the transcript holds only whole messages."""
    stub.add(*(SlowStream(ANSWER, every=0, break_after=n) for n in (3, 5, 2)))
    session = HandoffSession(compile_memory(build_customer_service_graph(model=make_chat_model())))
    tokens: list[TokenEvent] = []
    result = session.send("hello", on_token=tokens.append)

    assert len(stub.requests) == 3
    ids = list(dict.fromkeys(t.message_id for t in tokens))
    assert len(ids) == 3
    for message_id, shown in zip(ids, ("Hello Dana, I ", "Hello Dana, I am looking ", "Hello Dana, "), strict=True):
        mine = [t for t in tokens if t.message_id == message_id]
        assert deltas(mine) == shown
        assert [t.kind for t in mine][-1] == "interrupted" and [t.kind for t in mine].count("interrupted") == 1
    assert "complete" not in {t.kind for t in tokens}
    assert result.reply.startswith("(system) General Support could not answer")
    assert not result.streamed
    stored = stored_messages(session.graph, session.thread_id)
    assert agent_texts(stored) == [result.reply, result.reply]  # window + journal: the honest message only
    assert not any("Hello Dana" in str(m.content) for m in stored)


def test_a_reply_whose_step_is_run_again_is_withdrawn_so_what_was_shown_is_what_was_stored(
    stub: OpenAIStub
) -> None:
    """The agent writes, looks the account up, then its next call breaks: the step is retried whole, so
    the first attempt's finished text is withdrawn too, not left on screen beside its second copy."""
    lookup = tool_reply("lookup_account", {"account_id": "ACC-1001"}, call_id="call_lookup")["tool_calls"]
    stub.add(SlowStream(SOURCE_TEXT, every=0, tool_calls=lookup), SlowStream(ANSWER, every=0, break_after=3),
             SlowStream(SOURCE_TEXT, every=0, tool_calls=lookup), SlowStream(ANSWER, every=0))
    session = HandoffSession(compile_memory(build_customer_service_graph(model=make_chat_model())))
    tokens: list[TokenEvent] = []
    result = session.send("hello, ACC-1001", on_token=tokens.append)

    first, broken, second, answer = list(dict.fromkeys(t.message_id for t in tokens))
    ends = [(t.message_id, t.kind) for t in tokens if t.kind != "delta"]
    assert ends == [(first, "complete"), (broken, "interrupted"), (first, "interrupted"),
                    (second, "complete"), (answer, "complete")]
    assert ends.index((first, "interrupted")) < [t.message_id for t in tokens].index(second)
    assert result.reply == ANSWER and result.streamed
    stored = stored_messages(session.graph, session.thread_id)
    assert agent_texts(stored) == [SOURCE_TEXT, ANSWER] * 2  # window + journal: the second attempt only


def test_a_fallback_model_takes_over_a_broken_stream(monkeypatch: pytest.MonkeyPatch, stub: OpenAIStub) -> None:
    monkeypatch.setenv("HANDOFF_FALLBACK_MODEL", "stub-fallback")
    stub.add(SlowStream(ANSWER, every=0, break_after=2), SlowStream(RECEIVER_TEXT, every=0))
    session = HandoffSession(compile_memory(build_customer_service_graph()))  # the environment's models
    tokens: list[TokenEvent] = []
    result = session.send("hello", on_token=tokens.append)

    assert [r["model"] for r in stub.requests] == ["stub-model", "stub-fallback"]
    broken, kept = list(dict.fromkeys(t.message_id for t in tokens))
    kinds = [(t.message_id, t.kind) for t in tokens if t.kind != "delta"]
    assert kinds == [(broken, "interrupted"), (kept, "complete")]
    assert tokens.index(next(t for t in tokens if t.kind == "interrupted")) < tokens.index(
        next(t for t in tokens if t.message_id == kept)), "the broken text is marked before the new one starts"
    assert result.reply == RECEIVER_TEXT and result.streamed
    assert agent_texts(stored_messages(session.graph, session.thread_id)) == [RECEIVER_TEXT, RECEIVER_TEXT]


@pytest.mark.parametrize(("confidence", "speaker"), [(0.1, "front"), (0.9, "desk")])
def test_a_classifier_model_routing_the_turn_never_shows_as_reply_tokens(confidence: float, speaker: str) -> None:
    """The rules are decided where START routes the turn (``__start__``), and for a rule that fires
    the intake reuses that decision: the classifier's model runs once, and never speaks."""
    classifier_model = OfflineChatModel()
    classified: list[str] = []

    def classify(text: str) -> tuple[str, float]:
        classified.append(text)
        classifier_model.invoke([HumanMessage(text)])  # a model call inside the turn's routing
        return "desk", confidence

    trigger = ClassifierTrigger(name="intent", target="desk", reason="classified", classifier=classify)
    agents = [AgentSpec(name="front", title="Front", description="front desk", instructions="You are front.",
                        handoffs=("desk",), triggers=(trigger,)),
              AgentSpec(name="desk", title="Desk", description="the desk", instructions="You are desk.")]
    graph = compile_memory(build_handoff_graph(agents, default_agent="front", model=OfflineChatModel()))
    translator = TokenTranslator(speaking_agents(graph))
    streamed_by: set[str] = set()
    tokens: list[TokenEvent] = []
    config = {"configurable": {"thread_id": "classified"}}
    for namespace, mode, chunk in graph.stream({"messages": [HumanMessage("hello there")]}, config,
                                               **HandoffSession.TOKEN_STREAM):
        if mode == "messages" and isinstance(chunk[0], AIMessageChunk) and chunk[0].content:
            streamed_by.add(chunk[1]["langgraph_node"])
        tokens.extend(translator.feed(mode, chunk, namespace))
    assert streamed_by == {"__start__", speaker}, "the classifier's model did stream where the turn is routed"
    assert {t.agent for t in tokens} == {speaker}
    assert classified == ["hello there"], "the classifier ran once for the turn"
    assert deltas(tokens).startswith("[offline model]")


def test_a_model_inside_an_agents_own_subgraph_streams_under_the_agents_name() -> None:
    """A bring-your-own agent is often a graph: its model runs a level down, and still writes for it."""
    def model_step(state: MessagesState) -> dict[str, Any]:
        return {"messages": [OfflineChatModel().invoke(state["messages"])]}

    inner = StateGraph(MessagesState).add_node("model", model_step).add_edge(START, "model").compile()
    graph = StateGraph(MessagesState).add_node("front", inner).add_edge(START, "front").compile(
        checkpointer=InMemorySaver())
    translator = TokenTranslator(speaking_agents(graph))
    tokens: list[TokenEvent] = []
    namespaces: set[tuple[str, ...]] = set()
    for namespace, mode, chunk in graph.stream({"messages": [HumanMessage("hello")]},
                                               {"configurable": {"thread_id": "nested"}},
                                               **HandoffSession.TOKEN_STREAM):
        if mode == "messages":
            namespaces.add(namespace)
        tokens.extend(translator.feed(mode, chunk, namespace))
    assert any(namespaces), "the model's tokens came from inside the subgraph"
    assert {t.agent for t in tokens} == {"front"}
    assert deltas(tokens).startswith("[offline model]") and [t.kind for t in tokens][-1] == "complete"


# --- the service's server-sent events ---------------------------------------------------------------------


@pytest.fixture
def service(stub: OpenAIStub) -> Iterator[str]:
    """The service on a local port, on the real OpenAI client against the stub."""
    with serving_app(create_app("memory", model=make_chat_model())) as url:
        yield url


def new_thread(http: httpx.Client, url: str) -> str:
    return http.post(f"{url}/threads", json={}).json()["thread_id"]


def test_the_sse_api_delivers_token_events_before_the_message_event(stub: OpenAIStub, service: str) -> None:
    slow = SlowStream(ANSWER, hold_after=3)
    stub.add(slow)
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(timeout=WAIT_S) as http:
        thread_id = new_thread(http, service)
        with http.stream("POST", f"{service}/threads/{thread_id}/messages", json={"text": "hello"}) as response:
            for name, data in sse_events(response):
                events.append((name, data))
                if "".join(d["text"] for n, d in events if n == "token") == SHOWN_FIRST:
                    assert not slow.finished.is_set(), "the stub had sent its whole answer already"
                    assert {"message", "done"}.isdisjoint(n for n, _ in events)
                    slow.resume.set()
    assert slow.resume.is_set(), "the first tokens never arrived on their own"

    names = [name for name, _ in events]
    tokens = [TokenEvent.model_validate(data) for name, data in events if name == "token"]
    assert deltas(tokens) == ANSWER
    assert {(t.agent, t.message_id, t.schema_version) for t in tokens} == {("general_support", tokens[0].message_id, 1)}
    message_at = next(i for i, (n, d) in enumerate(events) if n == "message" and d["message"]["role"] == "agent")
    assert max(i for i, n in enumerate(names) if n == "token") < message_at
    assert events[message_at][1]["message"]["text"] == ANSWER
    assert events[message_at][1]["message_id"] == tokens[0].message_id
    assert [t.kind for t in tokens][-1] == "complete"
    assert names[-1] == "done" and events[-1][1]["result"]["reply"] == ANSWER


def test_a_handoff_turns_tokens_for_two_agents_come_in_order_separated_by_the_handoff_events(
    stub: OpenAIStub, service: str
) -> None:
    """General Support writes, then calls transfer_to_technical_specialist: its text stays, the handoff
    comes next, then the receiver's text; the call's arguments are never shown as text."""
    stub.add(SlowStream(SOURCE_TEXT, every=0, tool_calls=TRANSFER), SlowStream(RECEIVER_TEXT, every=0))
    with httpx.Client(timeout=WAIT_S) as http:
        thread_id = new_thread(http, service)
        with http.stream("POST", f"{service}/threads/{thread_id}/messages",
                         json={"text": "my internet drops every night, ACC-1001"}) as response:
            events = list(sse_events(response))
        state = http.get(f"{service}/threads/{thread_id}").json()

    order = [(n, d.get("agent") if n == "token" else d.get("kind")) for n, d in events
             if n == "handoff" or (n == "token" and d["kind"] == "delta")]
    source = [i for i, item in enumerate(order) if item == ("token", "general_support")]
    receiver = [i for i, item in enumerate(order) if item == ("token", "technical_specialist")]
    handoffs = {kind: i for i, (n, kind) in enumerate(order) if n == "handoff"}
    assert source and receiver
    assert max(source) < handoffs["requested"] < handoffs["accepted"] < min(receiver)
    assert set(order[max(source) + 1:min(receiver)]) <= {("handoff", k) for k in handoffs}
    tokens = [TokenEvent.model_validate(d) for n, d in events if n == "token"]
    assert deltas(tokens, "general_support") == SOURCE_TEXT
    assert deltas(tokens, "technical_specialist") == RECEIVER_TEXT
    assert not any(TRANSFER_SECRET in t.text or "transfer_to" in t.text for t in tokens)
    said = [d["message"] for n, d in events if n == "message" and d["message"]["role"] == "agent"]
    assert [(m["agent"], m["text"]) for m in said] == [("general_support", SOURCE_TEXT),
                                                       ("technical_specialist", RECEIVER_TEXT)]
    assert events[-1][1]["result"]["active_agent"] == "technical_specialist"
    assert [m["text"] for m in state["messages"] if m["role"] == "agent"] == [SOURCE_TEXT, RECEIVER_TEXT]


def test_a_broken_stream_in_the_service_is_marked_interrupted_and_not_stored(
    stub: OpenAIStub, service: str
) -> None:
    """The async path: the attempt that broke is interrupted at once, the retried answer is whole."""
    stub.add(SlowStream(ANSWER, every=0, break_after=3), SlowStream(ANSWER, every=0))
    with httpx.Client(timeout=WAIT_S) as http:
        thread_id = new_thread(http, service)
        with http.stream("POST", f"{service}/threads/{thread_id}/messages", json={"text": "hello"}) as response:
            events = list(sse_events(response))
        state = http.get(f"{service}/threads/{thread_id}").json()
    tokens = [TokenEvent.model_validate(d) for n, d in events if n == "token"]
    broken, kept = list(dict.fromkeys(t.message_id for t in tokens))
    assert deltas([t for t in tokens if t.message_id == broken]) == SHOWN_FIRST
    assert [(t.message_id, t.kind) for t in tokens if t.kind != "delta"] == [(broken, "interrupted"),
                                                                              (kept, "complete")]
    assert [d["message_id"] for n, d in events if n == "message" and d["message"]["role"] == "agent"] == [kept]
    assert [m["text"] for m in state["messages"] if m["role"] == "agent"] == [ANSWER]


def test_only_a_streamed_turn_asks_the_model_to_stream(stub: OpenAIStub, service: str) -> None:
    """A client that asked for JSON reads no tokens, so its turn does not pay for them."""
    stub.add(SlowStream(ANSWER, every=0), SlowStream(ANSWER, every=0))
    with httpx.Client(timeout=WAIT_S) as http:
        thread_id = new_thread(http, service)
        answer = http.post(f"{service}/threads/{thread_id}/messages", json={"text": "hello", "stream": False})
        with http.stream("POST", f"{service}/threads/{thread_id}/messages", json={"text": "again"}) as response:
            names = [name for name, _ in sse_events(response)]
    assert answer.json()["reply"] == ANSWER
    assert [bool(r.get("stream")) for r in stub.requests] == [False, True]
    assert "token" in names


def test_the_openapi_document_gives_token_events_a_versioned_schema_real_events_fit() -> None:
    with TestClient(create_app("memory", model=OfflineChatModel())) as client:
        spec = client.get("/openapi.json").json()
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        body = client.post(f"/threads/{thread_id}/messages", json={"text": "Hi, this is Dana, ACC-1001."}).text
    schema = spec["components"]["schemas"]["TokenEvent"]
    assert schema["properties"]["schema_version"]["const"] == 1
    assert set(schema["required"]) >= {"type", "schema_version", "kind", "agent", "message_id", "text"}
    media = spec["paths"]["/threads/{thread_id}/messages"]["post"]["responses"]["200"]["content"]
    item = media["text/event-stream"]["itemSchema"]
    assert "token" in item["properties"]["event"]["enum"]
    assert item["then"]["properties"]["data"]["contentSchema"] == schema
    frames = [frame for frame in body.split("\n\n") if frame.startswith("event: token")]
    assert frames, "the offline model streamed no tokens"
    validator = jsonschema.Draft202012Validator(schema)
    for frame in frames:
        validator.validate(json.loads(frame.split("data: ", 1)[1]))


# --- langgraph dev ----------------------------------------------------------------------------------------


def test_langgraph_dev_streams_the_agents_tokens_in_messages_mode() -> None:
    """The API server's ``messages`` mode: a message's metadata (its node), then its text growing
    piece by piece (``messages/partial``), as Studio shows it."""
    with langgraph_dev(graphs=[GRAPH]) as url:
        client = get_sync_client(url=url, api_key=None)
        thread_id = client.threads.create()["thread_id"]
        parts = list(client.runs.stream(thread_id, GRAPH, stream_mode="messages", input={
            "messages": [{"role": "user", "content": "Hi, this is Dana, account ACC-1001, postcode 90210."}]}))
    node_of: dict[str, str] = {}
    written: dict[str, list[str]] = {}
    for part in parts:
        if part.event == "messages/metadata":
            node_of.update({key: value["metadata"].get("langgraph_node") for key, value in part.data.items()})
        elif part.event == "messages/partial":
            for message in part.data:
                if message.get("content"):
                    written.setdefault(message["id"], []).append(message["content"])
    assert written, [part.event for part in parts]
    assert {node_of[message_id] for message_id in written} == {"general_support"}
    (growing,) = written.values()
    steps = list(dict.fromkeys(growing))
    assert len(steps) > 3, steps
    assert all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:], strict=False))
    assert steps[-1].startswith("[offline model] General Support here")
