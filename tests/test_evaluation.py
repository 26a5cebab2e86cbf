"""`handoff eval`: routing accuracy, confusion and facts against known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.cli.main import app
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.registry import GRAPHS
from handoff.monitoring.evaluation import DatasetError, LabelledConversation, evaluate, load_dataset
from tests.helpers import compile_memory

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
TECH = {"reason": "line drops", "account_id": "ACC-1001", "symptoms": "drops"}


def conversation(cid: str, turns: list[tuple[str, str]], facts: list[str]) -> LabelledConversation:
    return LabelledConversation(id=cid, turns=[{"user": u, "expect": e} for u, e in turns], facts=facts)


def test_scores_match_a_conversation_set_with_known_answers() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: ["Hello!", calls(tool_call("transfer_to_technical_specialist", TECH)), "General answers."],
        TECHNICAL: ["Technical here."],
    })
    dataset = [
        # right: general answers a greeting
        conversation("greet", [("hello", GENERAL)], ["hello"]),
        # right: general hands to technical; the rule trigger then sends "refund" to billing,
        # but the label says technical should keep it: one wrong turn.
        conversation("chain", [("line drops ACC-1001", TECHNICAL), ("refund please", TECHNICAL)],
                     ["ACC-1001", "never-said"]),
        # wrong: labelled billing, general answers
        conversation("miss", [("my bill", BILLING)], []),
    ]
    model.add(BILLING, ["Billing here."])

    def make_graph():
        return compile_memory(build_customer_service_graph(model=model, office=BackOffice()))

    report = evaluate("customer-service", make_graph, dataset)

    assert [[t.actual for t in c.turns] for c in report.conversations] == [
        [GENERAL], [TECHNICAL, BILLING], [GENERAL]]
    assert report.turn_accuracy == 0.5
    assert report.confusion == {BILLING: {GENERAL: 1}, GENERAL: {GENERAL: 1},
                                TECHNICAL: {BILLING: 1, TECHNICAL: 1}}
    assert report.per_agent_accuracy == {BILLING: 0.0, GENERAL: 1.0, TECHNICAL: 0.5}
    chain = report.conversations[1]
    assert chain.facts_kept == ["ACC-1001"] and chain.facts_lost == ["never-said"]
    assert (chain.handoffs, chain.rejections) == (2, 0)
    assert (report.facts_kept, report.facts_total) == (2, 3)


def test_bad_dataset_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "turns": [{"user": "hi", "expect": "x"}]}\n{"id": "b", "turns": []}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: turns"):
        load_dataset(bad)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_every_graph_ships_a_labelled_dataset_and_evaluates_offline(graph: str) -> None:
    path = DATASETS / f"{graph}.jsonl"
    conversations = load_dataset(path)
    assert len(conversations) >= 15
    result = CliRunner().invoke(app, ["eval", graph, "--dataset", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    turns = [t for c in data["conversations"] for t in c["turns"]]
    assert len(data["conversations"]) == len(conversations)
    correct = sum(t["expected"] == t["actual"] for t in turns)
    assert data["turn_accuracy"] == round(correct / len(turns), 4)
    assert sum(sum(row.values()) for row in data["confusion"].values()) == len(turns)
