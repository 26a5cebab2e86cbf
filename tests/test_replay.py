"""Time travel: checkpoint history, and replay on a fork that leaves the original thread untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import messages_to_dict
from typer.testing import CliRunner

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import (
    BILLING,
    GENERAL,
    TECHNICAL,
    SupportCaseFile,
    customer_service_agents,
)
from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel
from handoff.cli.main import app
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import Persistence, open_persistence
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession
from handoff.graphs.settings import StorageSettings
from handoff.monitoring.replay import ReplayError, history, replay

DEMO = get_graph("customer-service").demo


@pytest.fixture
def persistence() -> Iterator[Persistence]:
    with open_persistence("memory") as opened:
        yield opened


def compiled(persistence: Persistence, **build: Any):
    build.setdefault("model", OfflineChatModel())
    build.setdefault("office", BackOffice())
    return build_customer_service_graph(**build).compile(
        checkpointer=persistence.checkpointer, store=persistence.store)


def billing_closed_graph(persistence: Persistence, model) -> Any:
    """The same agents, except that billing now refuses every handoff (a changed rule)."""
    agents = [spec.model_copy(update={"preconditions": (lambda case, payload: "billing is closed today",)})
              if spec.name == BILLING else spec for spec in customer_service_agents(BackOffice())]
    return build_handoff_graph(agents, default_agent=GENERAL, case_file_model=SupportCaseFile,
                               model=model, human_escalation=True, name="customer-service",
                               ).compile(checkpointer=persistence.checkpointer, store=persistence.store)


def snapshot(graph, thread_id: str) -> dict[str, Any]:
    """Everything a thread is: its checkpoints, and its journal (transcript and handoff log)."""
    latest = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    journal = Journal(graph.store, thread_id)
    return {
        "history": [c.model_dump() for c in history(graph, thread_id)],
        "transcript": messages_to_dict(journal.messages(latest["transcript_len"])),
        "records": [r.model_dump() for r in journal.records(latest["handoff_count"])],
    }


def demo_thread(graph) -> str:
    session = HandoffSession(graph)
    for text in DEMO:
        session.send(text)
    return session.thread_id


def test_history_shows_the_active_agent_and_the_handoffs_at_each_checkpoint(persistence) -> None:
    graph = compiled(persistence)
    thread = demo_thread(graph)

    checkpoints = history(graph, thread)

    assert checkpoints[0].source == "input" and checkpoints[0].active_agent is None
    assert [c.turn for c in checkpoints] == sorted(c.turn for c in checkpoints)
    before = [c for c in checkpoints if c.before_handoff]
    assert [c.pending_handoff for c in before] == [f"{GENERAL} -> {TECHNICAL} (tool)",
                                                   f"{TECHNICAL} -> {BILLING} (rule)"]
    assert checkpoints[-1].active_agent == BILLING and checkpoints[-1].next == ()
    assert checkpoints[-1].last_handoff == f"{TECHNICAL} -> {BILLING}: accepted"
    assert checkpoints[-1].handoff_count == 2


def test_replay_before_a_handoff_with_a_changed_rule_forks_and_leaves_the_original_unchanged(persistence) -> None:
    graph = compiled(persistence)
    thread = demo_thread(graph)
    original = snapshot(graph, thread)
    before_billing = [c for c in history(graph, thread) if c.before_handoff][-1]

    technical = ScriptedChatModel(scripts={TECHNICAL: ["Billing is closed today; I can check your line meanwhile."]})
    changed = billing_closed_graph(persistence, technical)
    result = replay(changed, thread, before_billing.checkpoint_id)

    assert result.thread_id != thread and result.source_thread == thread
    assert [e.kind for e in result.turn.events] == ["requested", "rejected"]
    assert result.turn.reply == "Billing is closed today; I can check your line meanwhile."
    assert [(r.target, r.outcome) for r in result.turn.handoffs] == [(TECHNICAL, "accepted"), (BILLING, "rejected")]
    assert result.turn.handoffs[-1].rejection.code == "precondition_failed"  # type: ignore[union-attr]
    assert result.turn.active_agent == TECHNICAL
    fork_history = history(changed, result.thread_id)
    assert fork_history[0].source == "fork" and fork_history[0].checkpoint_id == before_billing.checkpoint_id
    assert snapshot(graph, thread) == original


def test_replay_with_a_changed_model_takes_another_path(persistence) -> None:
    graph = compiled(persistence)
    thread = demo_thread(graph)
    original = snapshot(graph, thread)
    before_general = next(c for c in history(graph, thread) if c.turn == 2 and c.next == (GENERAL,))

    scripted = ScriptedChatModel(scripts={GENERAL: ["Have you tried restarting the router?"]})
    result = replay(compiled(persistence, model=scripted), thread, before_general.checkpoint_id)

    assert result.turn.reply == "Have you tried restarting the router?"
    assert result.turn.active_agent == GENERAL and len(result.turn.handoffs) == 0
    assert result.turn.path == [GENERAL]
    assert snapshot(graph, thread) == original


def test_replay_from_the_end_of_a_turn_continues_with_a_new_message(persistence) -> None:
    graph = compiled(persistence)
    thread = demo_thread(graph)
    end_of_first_turn = next(c for c in history(graph, thread) if c.turn == 1 and c.next == ())

    result = replay(graph, thread, end_of_first_turn.checkpoint_id, message="I was charged twice, refund please")

    assert result.turn.active_agent == BILLING
    assert [r.target for r in result.turn.handoffs] == [BILLING]


@pytest.mark.parametrize(
    ("pick", "message", "expected"),
    [
        (lambda cs: next(c for c in cs if c.next == ()), None, "give the next user message"),
        (lambda cs: next(c for c in cs if c.before_handoff), "hello", "in the middle of a turn"),
        (lambda cs: None, None, "has no checkpoint 'nope'"),
    ],
)
def test_replay_refuses_what_it_cannot_do(persistence, pick, message, expected) -> None:
    graph = compiled(persistence)
    thread = demo_thread(graph)
    chosen = pick(history(graph, thread))

    with pytest.raises(ReplayError, match=expected):
        replay(graph, thread, chosen.checkpoint_id if chosen else "nope", message=message)


def test_a_fork_id_that_exists_is_refused(persistence) -> None:
    graph = compiled(persistence)
    thread, other = demo_thread(graph), demo_thread(graph)
    before = next(c for c in history(graph, thread) if c.before_handoff)

    with pytest.raises(ReplayError, match="already exists"):
        replay(graph, thread, before.checkpoint_id, new_thread_id=other)


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cli_refunds() -> list[Any]:
    """The refunds in the ledger of the CLI's own store (its SQLite file)."""
    with open_persistence(StorageSettings().db_url) as opened:
        return BackOffice().refunds(opened.store)


def test_history_and_replay_commands_fork_without_touching_the_thread_or_the_ledger() -> None:
    runner = CliRunner()
    thread = None
    for text in DEMO:
        reply = _json(runner, "run", "customer-service", "-m", text, "--json", *(["--thread", thread] if thread else []))
        thread = reply["thread_id"]
    assert thread is not None
    refunds = cli_refunds()
    assert [r.invoice_id for r in refunds] == ["INV-2002"]
    before = _json(runner, "history", thread, "--json")
    checkpoint = [c for c in before if c["before_handoff"]][-1]["checkpoint_id"]

    fork = _json(runner, "replay", thread, "--checkpoint", checkpoint, "--as", "what-if", "--json")

    assert fork["thread_id"] == "what-if" and fork["source_thread"] == thread
    assert fork["turn"]["active_agent"] == BILLING
    assert _json(runner, "history", thread, "--json") == before
    assert cli_refunds() == refunds
    assert _json(runner, "history", "what-if", "--json")[0]["source"] == "fork"
