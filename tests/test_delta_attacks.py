"""Hostile-user attacks on the delta-channel state (window, records, usage), the one-step turn and the
compact SQLite saver, on every entry point a user has.

Each test compares what a run had in memory (its stream, its output, the calls the model really
received) with what a later read rebuilds from the stored writes. Four defects these attacks found are
fixed and stay here as tests: a window cut differently when replayed after a removal or a reused id; an
id drawn anew on every read for a message written as text; ``update_state`` as START failing for want
of a runtime; a thread the service's stock SQLite saver could not continue.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableLambda
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START
from langgraph.graph.state import CompiledStateGraph

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import GENERAL, SupportCaseFile, customer_service_agents
from handoff.agents.scripted import ScriptedChatModel
from handoff.agents.spec import AgentSpec
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.escalation import answer_escalation, pending_escalation
from handoff.graphs.human import HumanAnswer
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence, serializer
from handoff.graphs.session import HandoffSession
from handoff.monitoring.replay import fork, history, replay
from handoff.monitoring.report import conversation_report
from handoff.service.storage import open_service_persistence
from handoff.state import HandoffState
from handoff.state.conversation import window_batch, window_messages
from tests.support.long_conversation import scripted_model, user_lines
from tests.test_persistence_factory import POSTGRES_URL

LINES = user_lines(30, every=3)
BACKENDS = ["sqlite", "postgres"]


def url_for(backend: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'attacks.sqlite'}" if backend == "sqlite" else POSTGRES_URL


def new_thread() -> tuple[str, dict[str, Any]]:
    thread = f"attack-{uuid.uuid4().hex}"
    return thread, {"configurable": {"thread_id": thread}}


@contextmanager
def support_graph(url: str, model: ScriptedChatModel | None = None) -> Iterator[CompiledStateGraph]:
    """The customer-service graph on a fresh connection (nothing of a thread cached in the saver)."""
    with open_persistence(url) as persistence:
        yield build_customer_service_graph(model=model or scripted_model(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)


def escalating_graph(checkpointer: Any, store: Any, model: ScriptedChatModel) -> CompiledStateGraph:
    return build_handoff_graph(customer_service_agents(BackOffice()), default_agent=GENERAL,
                               case_file_model=SupportCaseFile, model=model, human_escalation=True,
                               name="customer-service").compile(checkpointer=checkpointer, store=store)


def ids(messages: list[AnyMessage]) -> list[str | None]:
    return [m.id for m in messages]


def fingerprint(values: dict[str, Any]) -> tuple[Any, ...]:
    """What a reader of a state compares: the window's ids, the records' ids, the turn, who answers."""
    return (tuple(ids(values.get("messages") or [])),
            tuple(r["request"]["id"] for r in values.get("handoffs") or []),
            values.get("turn"), values.get("active_agent"))


def model_calls(model: ScriptedChatModel) -> dict[str, int]:
    """What the model really answered, per agent: the ground truth for ``usage``."""
    return dict(collections.Counter(c["agent"] for c in model.calls))


def calls_in(usage: dict[str, dict[str, int]]) -> dict[str, int]:
    return {agent: counts["model_calls"] for agent, counts in usage.items()}


def transcript(graph: CompiledStateGraph, thread: str) -> list[AnyMessage]:
    values = graph.get_state({"configurable": {"thread_id": thread}}).values
    return Journal(graph.store, thread).messages(int(values["transcript_len"]))


def assert_archived_once(graph: CompiledStateGraph, thread: str) -> None:
    """Every message of the transcript once, one user message per counted turn, the window within it."""
    values = graph.get_state({"configurable": {"thread_id": thread}}).values
    archived = transcript(graph, thread)
    assert len({m.id for m in archived}) == len(archived), "a message was archived twice"
    assert sum(isinstance(m, HumanMessage) for m in archived) == values["turn"]
    assert set(ids(values["messages"])) <= {m.id for m in archived}


# --- every state a run had in memory is what a read rebuilds ---------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_every_state_a_run_streamed_is_a_checkpoint_a_new_saver_rebuilds(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    _, config = new_thread()
    streamed: list[tuple[Any, ...]] = []
    with support_graph(url) as graph:
        for line in LINES[:25]:
            streamed.extend(fingerprint(chunk) for chunk in
                            graph.stream({"messages": [line.text]}, config, stream_mode="values"))
    with support_graph(url) as graph:
        rebuilt = [fingerprint(s.values) for s in reversed(list(graph.get_state_history(config)))]
        again = [fingerprint(s.values) for s in reversed(list(graph.get_state_history(config)))]
    assert [s for s in streamed if s not in rebuilt] == []
    assert rebuilt == again, "ids change between two reads of the history"
    assert rebuilt[-1] == streamed[-1]


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_lighter_durability_ends_each_turn_on_the_window_and_usage_the_run_had(durability: str,
                                                                              tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)
    thread, config = new_thread()
    model = scripted_model()
    ends: list[tuple[Any, ...]] = []
    with support_graph(url, model) as graph:
        for line in LINES[:14]:
            chunks = list(graph.stream({"messages": [line.text]}, config, stream_mode="values",
                                       durability=durability))
            ends.append(fingerprint(chunks[-1]))
    with support_graph(url) as graph:
        turn_ends = [fingerprint(s.values) for s in reversed(list(graph.get_state_history(config))) if not s.next]
        latest = graph.get_state(config).values
        report = conversation_report(graph.checkpointer, graph.store, thread)
    assert [e for e in ends if e not in turn_ends] == []
    assert calls_in(latest["usage"]) == model_calls(model)
    assert {a: u.model_calls for a, u in report.usage.items()} == model_calls(model)
    assert report.turns == 14


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_report_counts_the_model_calls_that_really_happened(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    thread, config = new_thread()
    model = scripted_model()
    with support_graph(url, model) as graph:
        for line in LINES[:20]:
            graph.invoke({"messages": [line.text]}, config)
    with support_graph(url) as graph:
        report = conversation_report(graph.checkpointer, graph.store, thread)
        assert_archived_once(graph, thread)
    assert {a: u.model_calls for a, u in report.usage.items()} == model_calls(model)
    assert report.turns == 20


# --- time travel, forks, replay ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_time_travel_on_the_same_thread_continues_from_the_old_window(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    _, config = new_thread()
    with support_graph(url) as graph:
        for line in LINES[:12]:
            graph.invoke({"messages": [line.text]}, config)
        graph_usage_at_end = graph.get_state(config).values["usage"]
        old = [s for s in graph.get_state_history(config) if not s.next][6]
        out = graph.invoke({"messages": ["Back in time: one more question."]}, old.config)
    with support_graph(url) as graph:
        latest = graph.get_state(config).values
    assert ids(latest["messages"]) == ids(out["messages"])
    start = max(i for i, m in enumerate(out["messages"]) if isinstance(m, HumanMessage))
    assert out["messages"][start].content == "Back in time: one more question."
    kept = ids(out["messages"])[:start]
    assert kept == ids(old.values["messages"])[len(old.values["messages"]) - len(kept):], \
        "the branch continues the old window, not the thread's latest"
    assert latest["turn"] == old.values["turn"] + 1
    assert latest["usage"] != graph_usage_at_end, "the branch's usage starts from the old checkpoint's"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fork_continued_past_its_snapshots_and_a_fork_of_it_rebuild_what_they_ran(backend: str,
                                                                                   tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    thread, config = new_thread()
    with support_graph(url) as graph:
        for line in LINES[:10]:
            graph.invoke({"messages": [line.text]}, config)
        early = [s for s in graph.get_state_history(config) if not s.next][3]
        forked = fork(graph, thread, early.config["configurable"]["checkpoint_id"])
        fork_config = {"configurable": {"thread_id": forked}}
        for line in LINES[10:25]:
            out = graph.invoke({"messages": [line.text]}, fork_config)
    with support_graph(url) as graph:
        latest = graph.get_state(fork_config).values
        report = conversation_report(graph.checkpointer, graph.store, forked)
        middle = [s for s in graph.get_state_history(fork_config) if not s.next][2]
        again = fork(graph, forked, middle.config["configurable"]["checkpoint_id"])
        copy = graph.get_state({"configurable": {"thread_id": again}}).values
        original = graph.get_state(config).values
        assert_archived_once(graph, forked)
    assert ids(latest["messages"]) == ids(out["messages"])
    assert latest["turn"] == early.values["turn"] + 15 == report.turns
    assert {a: u.model_calls for a, u in report.usage.items()} == calls_in(latest["usage"])
    for key in ("handoffs", "usage", "turn"):
        assert copy[key] == middle.values[key], key
    assert ids(copy["messages"]) == ids(middle.values["messages"])
    assert original["turn"] == 10, "the forked thread is left as it was"


def test_replay_from_before_the_gate_and_from_a_turns_input_counts_each_turn_once(tmp_path: Path) -> None:
    with support_graph(url_for("sqlite", tmp_path)) as graph:
        thread, config = new_thread()
        for line in LINES[:16]:
            graph.invoke({"messages": [line.text]}, config)
        infos = history(graph, thread)
        before_gate = [i for i in infos if i.before_handoff][-2]
        at_input = [i for i in infos if i.source == "input"][-5]
        for info, turn_after in ((before_gate, before_gate.turn), (at_input, at_input.turn + 1)):
            result = replay(graph, thread, info.checkpoint_id)
            values = graph.get_state({"configurable": {"thread_id": result.thread_id}}).values
            assert result.turn.reply
            assert values["turn"] == turn_after
            assert_archived_once(graph, result.thread_id)
            report = conversation_report(graph.checkpointer, graph.store, result.thread_id)
            assert {a: u.model_calls for a, u in report.usage.items()} == calls_in(values["usage"])


# --- Studio's state editor ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_studio_edits_a_message_of_an_older_checkpoint(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    _, config = new_thread()
    with support_graph(url) as graph:
        for line in LINES[:10]:
            graph.invoke({"messages": [line.text]}, config)
        old = [s for s in graph.get_state_history(config) if not s.next][4]
        target = old.values["messages"][-1]
        graph.update_state(old.config, {"messages": [AIMessage("EDITED", id=target.id, name=target.name)]},
                           as_node=target.name)
        edited = graph.get_state(config).values
        out = graph.invoke({"messages": ["After the edit."]}, config)
    with support_graph(url) as graph:
        latest = graph.get_state(config).values
    assert ids(edited["messages"]) == ids(old.values["messages"])
    assert edited["messages"][-1].content == "EDITED" and edited["turn"] == old.values["turn"]
    assert ids(latest["messages"]) == ids(out["messages"])
    assert "EDITED" in [m.content for m in latest["messages"]]


def turns_of(count: int) -> list[list[AnyMessage]]:
    return [[HumanMessage(f"u{n}", id=f"h{n}"), AIMessage(f"a{n}", id=f"a{n}")] for n in range(count)]


def test_the_window_is_the_same_cut_once_or_after_every_write_when_a_message_is_removed() -> None:
    writes: list[list[AnyMessage]] = turns_of(7)
    one_by_one: list[AnyMessage] = []
    for write in writes:
        one_by_one = window_messages(one_by_one, write)
    writes.append([RemoveMessage(id=str(one_by_one[0].id))])
    one_by_one = window_messages(one_by_one, writes[-1])

    assert ids(window_batch([], writes)) == ids(one_by_one)


def test_the_window_is_the_same_cut_once_or_after_every_write_when_an_id_comes_back() -> None:
    writes: list[list[AnyMessage]] = [*turns_of(7), [HumanMessage("again", id="h0"), AIMessage("x", id="ax")]]
    one_by_one: list[AnyMessage] = []
    for write in writes:
        one_by_one = window_messages(one_by_one, write)

    assert ids(window_batch([], writes)) == ids(one_by_one)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_message_studio_deletes_leaves_the_rest_of_the_window(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    _, config = new_thread()
    with support_graph(url) as graph:
        for line in LINES[:11]:
            out = graph.invoke({"messages": [line.text]}, config)
        removed = out["messages"][0].id
        graph.update_state(config, {"messages": [RemoveMessage(id=str(removed))]}, as_node=GENERAL)
    with support_graph(url) as graph:
        latest = graph.get_state(config).values

    assert ids(latest["messages"]) == [i for i in ids(out["messages"]) if i != removed]


@pytest.mark.parametrize("gap", [5, 6])
def test_a_user_message_reusing_an_old_id_stays_in_the_rebuilt_window(gap: int) -> None:
    """A caller may give its messages ids (graphs/boundary.py keeps them); one that comes back after the
    window dropped the first is appended by the run, and lost by the rebuilt window."""
    graph = build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=InMemorySaver(serde=serializer()))
    _, config = new_thread()
    quiet = user_lines(gap, every=100)
    graph.invoke({"messages": [HumanMessage(quiet[0].text, id="user-msg-1")]}, config)
    for line in quiet[1:]:
        graph.invoke({"messages": [line.text]}, config)
    out = graph.invoke({"messages": [HumanMessage("Same id, new words.", id="user-msg-1")]}, config)

    assert ids(graph.get_state(config).values["messages"]) == ids(out["messages"])


@pytest.mark.parametrize("message", [HumanMessage("typed in Studio"), AIMessage("a note from Studio"),
                                     {"type": "human", "content": "typed as JSON"},
                                     {"role": "assistant", "content": "an answer as JSON"}],
                         ids=["human-object", "ai-object", "human-dict", "ai-dict"])
def test_a_message_added_without_id_as_an_object_or_json_keeps_its_id(message: Any, tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)
    _, config = new_thread()
    with support_graph(url) as graph:
        graph.invoke({"messages": ["Hello, I have a question."]}, config)
        graph.update_state(config, {"messages": [message]}, as_node=GENERAL)
        first = ids(graph.get_state(config).values["messages"])
    with support_graph(url) as graph:
        assert ids(graph.get_state(config).values["messages"]) == first


@pytest.mark.parametrize("message", ["typed in Studio", ("user", "typed as a tuple")], ids=["text", "tuple"])
def test_a_message_added_as_text_keeps_one_id_across_reads(message: Any) -> None:
    graph = build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=InMemorySaver(serde=serializer()))
    _, config = new_thread()
    graph.invoke({"messages": ["Hello, I have a question."]}, config)
    graph.update_state(config, {"messages": [message]}, as_node=GENERAL)

    first = ids(graph.get_state(config).values["messages"])
    second = ids(graph.get_state(config).values["messages"])

    assert first == second


def test_studio_can_add_a_users_message_as_the_graphs_input() -> None:
    graph = build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=InMemorySaver(serde=serializer()))
    _, config = new_thread()
    graph.invoke({"messages": ["Hello, I have a question."]}, config)

    graph.update_state(config, {"messages": [HumanMessage("Typed in Studio", id="studio-1")]}, as_node=START)

    assert graph.get_state(config).next == (GENERAL,)


# --- crash resume, escalation, concurrency -----------------------------------------------------------

def test_a_turn_stopped_before_each_agent_and_finished_by_another_process_counts_once(tmp_path: Path) -> None:
    """``interrupt_before`` leaves the thread where a process killed between steps would (durability sync);
    a fresh saver then finishes each turn, as tests/support/resume_worker.py does after a kill."""
    url = url_for("sqlite", tmp_path)
    thread, config = new_thread()
    model = scripted_model()
    agents = [n for n in build_customer_service_graph(model=model).nodes if n not in ("intake", "handoff_gate")]
    with open_persistence(url) as persistence:
        stopping = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store, interrupt_before=agents)
        for line in LINES[:9]:
            stopping.invoke({"messages": [line.text]}, config)
            assert stopping.get_state(config).next, "the turn stopped before its agent"
            with support_graph(url, model) as other:
                other.invoke(None, config)
    with support_graph(url) as graph:
        values = graph.get_state(config).values
        assert_archived_once(graph, thread)
    assert values["turn"] == 9
    assert calls_in(values["usage"]) == model_calls(model)


def test_an_escalation_answered_by_another_process_is_archived_once(tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)
    model = scripted_model()
    with open_persistence(url) as persistence:
        graph = escalating_graph(persistence.checkpointer, persistence.store, model)
        session = HandoffSession(graph)
        session.send("Hello, I need help with my account ACC-1001")
        session.send("I want to speak to a person please")
        assert pending_escalation(graph, session.config) is not None
    with open_persistence(url) as persistence:
        graph = escalating_graph(persistence.checkpointer, persistence.store, model)
        answer_escalation(graph, session.config, HumanAnswer(reply="Hi, I am Sam.", hand_back_to=GENERAL))
        reply = HandoffSession(graph, session.thread_id).send("Thanks Sam, one more question")
    with open_persistence(url) as persistence:
        graph = escalating_graph(persistence.checkpointer, persistence.store, model)
        values = graph.get_state(session.state_config).values
        assert_archived_once(graph, session.thread_id)
        texts = [str(m.content) for m in transcript(graph, session.thread_id)]
    assert values["turn"] == 3 and reply.active_agent == GENERAL
    assert texts.count("Hi, I am Sam.") == 1
    assert values["handoff_count"] == len(values["handoffs"]) == 2


def test_two_threads_played_at_once_on_one_sqlite_graph_match_a_thread_played_alone(tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)

    def play(graph: CompiledStateGraph, thread: str) -> list[str | None]:
        config = {"configurable": {"thread_id": thread}}
        last: list[str | None] = []
        for line in LINES[:12]:
            last = ids(graph.invoke({"messages": [line.text]}, config)["messages"])
        return last

    with support_graph(url) as graph:
        alone = new_thread()[0]
        play(graph, alone)
        reference = graph.get_state({"configurable": {"thread_id": alone}}).values
        threads = [new_thread()[0], new_thread()[0]]
        with ThreadPoolExecutor(2) as pool:
            lasts = list(pool.map(lambda t: play(graph, t), threads))
    with support_graph(url) as graph:
        for thread, last in zip(threads, lasts, strict=True):
            values = graph.get_state({"configurable": {"thread_id": thread}}).values
            assert ids(values["messages"]) == last
            # prompt_tokens differ by the shared model's call-id counter (call_3 vs call_12), not by thread
            assert calls_in(values["usage"]) == calls_in(reference["usage"]) and values["turn"] == 12
            assert [m.content for m in values["messages"] if isinstance(m, HumanMessage)] == [
                m.content for m in reference["messages"] if isinstance(m, HumanMessage)]
            assert_archived_once(graph, thread)


def test_async_sessions_on_two_threads_return_what_the_checkpoint_rebuilds() -> None:
    graph = build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
        checkpointer=InMemorySaver(serde=serializer()))  # no store given: the graph brings its own

    async def play(session: HandoffSession) -> Any:
        result = None
        for line in LINES[:12]:
            result = await session.asend(line.text)
        return result

    async def both() -> list[Any]:
        return await asyncio.gather(*(play(s) for s in sessions))

    sessions = [HandoffSession(graph), HandoffSession(graph)]
    results = asyncio.run(both())
    for session, result in zip(sessions, results, strict=True):
        values = graph.get_state(session.state_config).values
        final = [m for m in values["messages"] if isinstance(m, AIMessage) and m.content and not m.tool_calls][-1]
        assert result.reply == final.content and result.active_agent == values["active_agent"]
        assert [r.request.id for r in result.handoffs][-len(values["handoffs"]):] == [
            r["request"]["id"] for r in values["handoffs"]]
        assert values["turn"] == 12
        assert_archived_once(graph, session.thread_id)


def test_a_thread_begun_with_open_persistence_continues_with_asend_on_the_services_sqlite(tmp_path: Path) -> None:
    url = url_for("sqlite", tmp_path)
    with support_graph(url) as graph:
        session = HandoffSession(graph)
        for line in LINES[:2]:
            session.send(line.text)

    async def continue_async() -> Any:
        async with open_service_persistence(url) as persistence:
            graph = build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(
                checkpointer=persistence.checkpointer, store=persistence.store)
            await HandoffSession(graph, session.thread_id).asend(LINES[2].text)
            return (await graph.aget_state(session.state_config)).values

    assert asyncio.run(continue_async())["turn"] == 3


# --- bring your own state and agents -------------------------------------------------------------------

def append_notes(left: list[str] | None, writes: Any) -> list[str]:
    """A batching-invariant reducer: concatenation."""
    merged = list(left or [])
    for write in writes:
        merged.extend(write if isinstance(write, list) else [write])
    return merged


class NotesState(HandoffState, total=False):
    notes: Annotated[list[str], DeltaChannel(append_notes, snapshot_frequency=3)]


SOLO = AgentSpec(name="solo", title="Solo", description="Answers.", instructions="Answer.",
                 agent=RunnableLambda(lambda messages: AIMessage("a plain reply")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bring_your_own_delta_key_and_agent_survive_reads_and_a_fork(backend: str, tmp_path: Path) -> None:
    url = url_for(backend, tmp_path)
    thread, config = new_thread()
    with open_persistence(url) as persistence:
        graph = build_handoff_graph([SOLO], default_agent="solo", model=ScriptedChatModel(),
                                    state_schema=NotesState).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        for n in range(8):
            out = graph.invoke({"messages": [f"hello {n}"]}, config)
            graph.update_state(config, {"notes": [f"n{n}"]}, as_node="solo")
        latest = graph.get_state(config)
        forked = fork(graph, thread, latest.config["configurable"]["checkpoint_id"])
        copy = graph.get_state({"configurable": {"thread_id": forked}}).values
        assert_archived_once(graph, thread)
    assert latest.values["notes"] == [f"n{n}" for n in range(8)]
    assert copy["notes"] == latest.values["notes"]
    assert ids(latest.values["messages"]) == ids(out["messages"]) == ids(copy["messages"])
