"""`handoff eval --router`: routers compared on the same conversations; dataset splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.settings import ModelSettings
from handoff.cli.main import app
from handoff.graphs.registry import get_graph
from handoff.monitoring.evaluation import DatasetError, LabelledConversation, load_dataset
from handoff.monitoring.routers import ROUTERS, RouterUnavailable, compare_routers, routers_named
from tests.support.embeddings_stub import EmbeddingsStub

# Paraphrases that name no topic word of the rules or of the agents' topics. The account id is in the
# message, so a model that never calls a tool (the real-model stub) still gives the gate what it needs.
CONVERSATIONS = [
    {"id": "fault", "split": "report", "turns": [
        {"user": "Hello, account ACC-1001, postcode 90210", "expect": GENERAL},
        {"user": "the connection falls over every few minutes on ACC-1001", "expect": TECHNICAL}]},
    {"id": "money", "split": "report", "turns": [
        {"user": "Hi, account ACC-1002", "expect": GENERAL},
        {"user": "there is a payment taken twice from my card for ACC-1002", "expect": BILLING}]},
    {"id": "hours", "split": "tune", "turns": [{"user": "when are you open on Sundays?", "expect": GENERAL}]},
]


@pytest.fixture(autouse=True)
def _semantic_triggers_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite builds graphs without semantic triggers (tests/conftest.py); routers choose here."""
    monkeypatch.setenv("HANDOFF_SEMANTIC_TRIGGERS", "1")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "paraphrases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CONVERSATIONS) + "\n")
    return path


def test_a_split_keeps_its_own_conversations_and_an_unknown_split_is_named(dataset: Path, tmp_path: Path) -> None:
    assert [c.id for c in load_dataset(dataset, split="report")] == ["fault", "money"]
    assert [c.id for c in load_dataset(dataset, split="tune")] == ["hours"]
    assert len(load_dataset(dataset)) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**CONVERSATIONS[0], "split": "holdout"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl:1: split"):
        load_dataset(bad)
    only_report = tmp_path / "report.jsonl"
    only_report.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS if c["split"] == "report"))
    with pytest.raises(DatasetError, match="no conversations in split 'tune'"):
        load_dataset(only_report, split="tune")


def test_the_semantic_trigger_routes_what_keywords_miss_and_saves_model_calls() -> None:
    conversations = [LabelledConversation.model_validate(c) for c in CONVERSATIONS]
    routers = routers_named(["keywords", "semantic"], real_model=False)
    comparison = compare_routers(get_graph("customer-service"), conversations, routers, ModelSettings())
    keywords, semantic = comparison.reports

    assert (keywords.router, semantic.router) == ("keywords", "semantic")
    assert [t.actual for c in keywords.conversations for t in c.turns] == [GENERAL, GENERAL, GENERAL, GENERAL, GENERAL]
    assert [t.actual for c in semantic.conversations for t in c.turns] == [GENERAL, TECHNICAL, GENERAL, BILLING,
                                                                           GENERAL]
    assert semantic.turn_accuracy == 1.0 > keywords.turn_accuracy
    assert (keywords.calls_saved, semantic.calls_saved, semantic.saved_by) == (0, 2, {"semantic": 2})
    handed = [t for c in semantic.conversations for t in c.turns if t.trigger == "semantic"]
    assert [t.user for t in handed] == [CONVERSATIONS[0]["turns"][1]["user"], CONVERSATIONS[1]["turns"][1]["user"]]
    assert semantic.model_calls == sum(t.model_calls for c in semantic.conversations for t in c.turns) > 0
    assert semantic.ms_per_turn is not None and semantic.ms_per_turn_median is not None
    assert comparison.embeddings == {"semantic": "offline static embeddings (WordLlama l2_supercat, 256-d)"}


def test_all_routers_without_a_real_model_are_the_offline_ones() -> None:
    assert [r.name for r in routers_named(["all"], real_model=False)] == [
        r.name for r in ROUTERS.values() if r.model != "real"]
    assert [r.name for r in routers_named(["all", "keywords"], real_model=True)] == list(ROUTERS)
    with pytest.raises(RouterUnavailable, match="needs a real model"):
        routers_named(["model"], real_model=False)
    with pytest.raises(RouterUnavailable, match="unknown router 'llm'"):
        routers_named(["llm"], real_model=False)


def test_cli_compares_routers_as_json_on_one_split(dataset: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--router", "keywords",
                                      "--router", "offline+semantic", "--split", "report", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["split"], data["conversations"]) == ("report", 2)
    assert [r["router"] for r in data["reports"]] == ["keywords", "offline+semantic"]
    assert data["reports"][1]["saved_by"] == {"semantic": 2}


def test_cli_table_and_errors(dataset: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--router", "semantic"])
    assert table.exit_code == 0, table.output
    assert "semantic" in table.output and "100.0%" in table.output
    refused = runner.invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--router", "model"])
    assert refused.exit_code == 2 and "needs a real model" in refused.output
    both = runner.invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--router", "semantic",
                               "--experiment"])
    assert both.exit_code == 2 and "leave out --router" in both.output


def test_real_model_routers_use_the_servers_model_and_embeddings(dataset: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddingsStub(reply="Stub model here.").running() as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        result = CliRunner().invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--router",
                                          "model", "--router", "model+semantic", "--split", "report", "--json"])
    assert result.exit_code == 0, result.output
    plain, semantic = json.loads(result.stdout)["reports"]
    assert plain["calls_saved"] == 0 and semantic["saved_by"] == {"semantic": 2}
    assert semantic["turn_accuracy"] == 1.0
    assert stub.chat_requests and stub.embedding_requests  # the server answered both
