"""The handoff report: figures checked against scripted conversations whose counts are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages.utils import count_tokens_approximately
from typer.testing import CliRunner

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.cli.main import app
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession
from handoff.monitoring.report import HandoffReport, build_report, plot_paths
from tests.helpers import compile_memory

TECH = {"reason": "line keeps dropping", "account_id": "ACC-1001", "symptoms": "drops every evening"}
BILL = {"reason": "a question about the bill", "account_id": "ACC-1001"}
UNKNOWN_ACCOUNT = {"reason": "a question about the bill", "account_id": "ACC-9999"}


def scripted_model() -> ScriptedChatModel:
    """Five handoffs in four turns: G->T accepted; T->B rejected then accepted; B->T accepted (a bounce);
    T->B failed (billing's on_enter cannot load an unknown account). Then a second, handoff-free chat."""
    return ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH, "g1")),
                  "Hello there, how can I help?"],
        TECHNICAL: ["Looking at your line.",
                    calls(tool_call("transfer_to_billing_expert", {"reason": "bill"}, "t1")),
                    calls(tool_call("transfer_to_billing_expert", BILL, "t2")),
                    "Back with the line checks.",
                    calls(tool_call("transfer_to_billing_expert", UNKNOWN_ACCOUNT, "t3")),
                    "Billing cannot open that account; I will note it."],
        BILLING: ["Billing here, I see your bill.",
                  calls(tool_call("transfer_to_technical_specialist", TECH, "b1"))],
    })


@pytest.fixture
def conversations() -> tuple[HandoffSession, HandoffSession, ScriptedChatModel]:
    model = scripted_model()
    graph = compile_memory(build_customer_service_graph(model=model, office=BackOffice()))
    busy, quiet = HandoffSession(graph), HandoffSession(graph)
    for text in ("My internet drops every evening, ACC-1001", "I also have a question about my bill",
                 "The line dropped again", "One more question about my account"):
        busy.send(text)
    quiet.send("Hello")
    return busy, quiet, model


def report_of(session: HandoffSession, threads: list[str] | None = None) -> HandoffReport:
    return build_report(session.graph.checkpointer, session.graph.store, threads)  # type: ignore[arg-type]


def test_conversation_figures_match_the_script(conversations) -> None:
    busy, _, model = conversations

    report = report_of(busy, [busy.thread_id])

    [conversation] = report.conversations
    assert conversation.graph == "customer-service" and conversation.turns == 4
    assert (conversation.handoffs, conversation.accepted, conversation.rejected, conversation.failed) == (5, 3, 1, 1)
    assert conversation.path == [GENERAL, TECHNICAL, BILLING, TECHNICAL]
    assert (conversation.hops, conversation.bounces) == (3, 1)
    assert [(s.source, s.target, s.outcome) for s in conversation.steps] == [
        (GENERAL, TECHNICAL, "accepted"), (TECHNICAL, BILLING, "rejected"), (TECHNICAL, BILLING, "accepted"),
        (BILLING, TECHNICAL, "accepted"), (TECHNICAL, BILLING, "failed")]
    assert [s.rejection for s in conversation.steps if s.rejection] == ["invalid_payload", "init_failed"]
    assert all(s.latency_ms >= 0 for s in conversation.steps)
    assert {a: u.model_calls for a, u in conversation.usage.items()} == {GENERAL: 1, TECHNICAL: 6, BILLING: 2}
    busy_calls = model.calls[:9]  # the busy conversation made nine model calls, the quiet one the tenth
    assert len(model.calls) == 10
    for agent in (GENERAL, TECHNICAL, BILLING):
        sent = sum(count_tokens_approximately(c["messages"]) for c in busy_calls if c["agent"] == agent)
        assert conversation.usage[agent].prompt_tokens == sent > 0


def test_pair_rates_bounces_and_totals_across_conversations(conversations) -> None:
    busy, quiet, _ = conversations

    report = report_of(busy)

    assert {c.thread_id for c in report.conversations} == {busy.thread_id, quiet.thread_id}
    pairs = {(p.source, p.target): p for p in report.pairs}
    assert set(pairs) == {(GENERAL, TECHNICAL), (TECHNICAL, BILLING), (BILLING, TECHNICAL)}
    to_billing = pairs[(TECHNICAL, BILLING)]
    assert (to_billing.handoffs, to_billing.accepted, to_billing.rejected, to_billing.failed) == (3, 1, 1, 1)
    assert to_billing.acceptance_rate == to_billing.rejection_rate == to_billing.failure_rate == pytest.approx(1 / 3)
    assert pairs[(BILLING, TECHNICAL)].bounces == 1 and to_billing.bounces == 0
    assert to_billing.latency_ms_max >= to_billing.latency_ms_mean >= 0

    assert (report.handoffs, report.accepted, report.rejected, report.failed, report.bounces) == (5, 3, 1, 1, 1)
    assert report.acceptance_rate == pytest.approx(3 / 5) and report.failure_rate == pytest.approx(1 / 5)
    assert (report.hops_mean, report.hops_max) == (1.5, 3)
    quiet_report = next(c for c in report.conversations if c.thread_id == quiet.thread_id)
    assert (quiet_report.path, quiet_report.hops, quiet_report.handoffs) == ([GENERAL], 0, 0)
    assert report.agents[GENERAL].model_calls == 2 and report.agents[TECHNICAL].model_calls == 6


def test_a_receiver_failing_after_acceptance_counts_the_handoff_as_failed() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH)), "Back with me."],
        TECHNICAL: [ValueError("model returned garbage")],
    })
    session = HandoffSession(compile_memory(build_customer_service_graph(model=model, office=BackOffice())))
    session.send("internet drops, ACC-1001")

    [conversation] = report_of(session).conversations

    assert (conversation.handoffs, conversation.accepted, conversation.failed) == (1, 0, 1)
    assert conversation.path == [GENERAL, TECHNICAL, GENERAL]
    assert [s.outcome for s in conversation.steps] == ["accepted", "failed"]


def test_the_path_picture_is_written_as_a_png(conversations, tmp_path: Path) -> None:
    busy, _, _ = conversations

    written = plot_paths(report_of(busy), tmp_path / "figures" / "paths.png")

    assert written == tmp_path / "figures" / "paths.png"
    data = written.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_the_report_command_prints_json_and_writes_the_picture(tmp_path: Path) -> None:
    runner = CliRunner()
    thread = None
    for text in get_graph("customer-service").demo:
        args = ["run", "customer-service", "-m", text, "--json", *(["--thread", thread] if thread else [])]
        thread = json.loads(runner.invoke(app, args).stdout)["thread_id"]
    picture, paths = tmp_path / "flow.png", tmp_path / "paths.png"

    result = runner.invoke(app, ["report", "--thread", str(thread), "--json", "--plot", str(picture),
                                 "--paths", str(paths)])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [conversation] = data["conversations"]
    assert conversation["path"] == [GENERAL, TECHNICAL, BILLING]
    assert (data["handoffs"], data["accepted"], data["hops_max"]) == (2, 2, 2)
    assert picture.read_bytes()[:4] == paths.read_bytes()[:4] == b"\x89PNG"
    assert "workflow picture (1 conversation, 2 handoffs, 100% accepted)" in result.stderr


def test_the_path_picture_says_when_it_limits_the_conversations_it_draws(tmp_path: Path) -> None:
    from handoff.monitoring.report import MAX_PLOTTED

    runner = CliRunner()
    for _ in range(MAX_PLOTTED + 1):
        assert runner.invoke(app, ["run", "customer-service", "-m", "hello"]).exit_code == 0
    result = runner.invoke(app, ["report", "--all", "--paths", str(tmp_path / "paths.png")])

    assert result.exit_code == 0, result.output
    assert f"the newest {MAX_PLOTTED} of {MAX_PLOTTED + 1} conversations" in result.output


def test_the_report_command_refuses_an_unknown_thread_and_both_scopes() -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["report", "--thread", "no-such-thread"])
    both = runner.invoke(app, ["report", "--thread", "x", "--all"])

    assert unknown.exit_code == 2 and "no thread 'no-such-thread'" in unknown.output
    assert both.exit_code == 2 and "not both" in both.output
