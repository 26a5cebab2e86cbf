"""`handoff eval --experiment`: the evaluation recorded as a LangSmith experiment.

The real langsmith client talks to a local stand-in of the API on 127.0.0.1
(tests/support/langsmith_collector.py), which keeps the datasets, examples,
projects, runs and feedback it is sent.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from handoff.cli.main import app
from tests.support.langsmith_collector import (
    LangSmithCollector,
    reset_langsmith_caches,
    tracing_to_local_collector,
)

DATASET = Path(__file__).resolve().parents[1] / "datasets" / "customer-service.jsonl"
FIRST = 3
"""Conversations of the shipped dataset played here (enough for every figure, quick offline)."""


@pytest.fixture
def langsmith_api() -> Iterator[LangSmithCollector]:
    # Undone before the collector's own environment is (the test's monkeypatch would be undone after).
    with tracing_to_local_collector() as server, pytest.MonkeyPatch.context() as env:
        env.delenv("LANGSMITH_TRACING")  # --experiment turns tracing on for its own runs
        yield server


def labelled(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "support.jsonl"
    path.write_text("\n".join(DATASET.read_text().splitlines()[:count]) + "\n")
    return path


def run_eval(dataset: Path, *extra: str) -> dict[str, Any]:
    out = CliRunner().invoke(app, ["eval", "customer-service", "--dataset", str(dataset), "--json",
                                   "--experiment", *extra])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_the_evaluation_becomes_an_experiment_with_examples_traces_and_scores(
    langsmith_api: LangSmithCollector, tmp_path: Path
) -> None:
    dataset = labelled(tmp_path, FIRST)
    conversations = [json.loads(line) for line in dataset.read_text().splitlines()]
    report = run_eval(dataset, "--experiment-name", "cs-offline-1")
    ref = report["experiment"]
    assert ref["name"] == "cs-offline-1" and ref["dataset"] == "handoff-customer-service-support"
    assert ref["examples_added"] == FIRST

    # the dataset: one example per conversation, its turns in, its labels as reference outputs
    [stored] = langsmith_api.datasets.values()
    assert stored["name"] == ref["dataset"] and stored["id"] == ref["dataset_id"]
    examples = {e["metadata"]["conversation"]: e for e in langsmith_api.examples.values()}
    assert set(examples) == {c["id"] for c in conversations}
    for c in conversations:
        assert examples[c["id"]]["inputs"] == {"turns": [t["user"] for t in c["turns"]]}
        assert examples[c["id"]]["outputs"] == {"expect": [t["expect"] for t in c["turns"]], "facts": c["facts"]}

    # the experiment: a project on the dataset, closed with the report's totals
    session = langsmith_api.sessions[ref["id"]]
    assert session["name"] == "cs-offline-1" and session["reference_dataset_id"] == stored["id"]
    assert session["end_time"] and session["extra"]["metadata"]["turn_accuracy"] == report["turn_accuracy"]
    assert session["extra"]["metadata"]["model"] == "OfflineChatModel"

    # one root run per conversation, on its example, with the graph's runs traced under it
    runs = langsmith_api.runs().values()
    roots = {r["reference_example_id"]: r for r in runs if r.get("reference_example_id")}
    assert set(roots) == {e["id"] for e in examples.values()}
    for root in roots.values():
        assert root["session_name"] == "cs-offline-1"
        children = [r for r in runs if r.get("trace_id") == root["id"] and r["id"] != root["id"]]
        assert any(r.get("name") == "customer-service" for r in children), "the graph run is not in the trace"
        assert all(r.get("session_name") == "cs-offline-1" for r in children)

    # feedback on each root run: the local report's own figures
    conversation_of = {e["id"]: cid for cid, e in examples.items()}
    by_run = {root["id"]: conversation_of[example] for example, root in roots.items()}
    scores = {(by_run[f["run_id"]], f["key"]): f["score"] for f in langsmith_api.feedback}
    for outcome in report["conversations"]:
        right = sum(t["expected"] == t["actual"] for t in outcome["turns"])
        assert scores[outcome["id"], "routing_accuracy"] == pytest.approx(right / len(outcome["turns"]))
        facts = len(outcome["facts_kept"]) + len(outcome["facts_lost"])
        kept = len(outcome["facts_kept"]) / facts if facts else 1.0
        assert scores[outcome["id"], "facts_kept"] == pytest.approx(kept)
        assert scores[outcome["id"], "handoffs"] == outcome["handoffs"]
        assert scores[outcome["id"], "rejections"] == outcome["rejections"]
    assert all(f["session_id"] == ref["id"] for f in langsmith_api.feedback)


def test_a_second_run_reuses_the_examples_and_adds_only_new_conversations(
    langsmith_api: LangSmithCollector, tmp_path: Path
) -> None:
    first = run_eval(labelled(tmp_path, 2))["experiment"]
    second = run_eval(labelled(tmp_path, 3))["experiment"]
    assert (first["examples_added"], second["examples_added"]) == (2, 1)
    assert first["dataset_id"] == second["dataset_id"] and first["id"] != second["id"]
    assert len(langsmith_api.datasets) == 1 and len(langsmith_api.examples) == 3
    assert {s["reference_dataset_id"] for s in langsmith_api.sessions.values()} == {first["dataset_id"]}


def test_experiment_without_langsmith_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    monkeypatch.delenv("LANGCHAIN_API_KEY", raising=False)
    out = CliRunner().invoke(app, ["eval", "customer-service", "--dataset", str(labelled(tmp_path, 1)),
                                   "--experiment"])
    assert out.exit_code == 2
    assert "LANGSMITH_API_KEY" in out.output


def test_an_unreachable_langsmith_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LANGSMITH_API_KEY", "local-test-key")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{port}")
    reset_langsmith_caches()
    try:
        out = CliRunner().invoke(app, ["eval", "customer-service", "--dataset", str(labelled(tmp_path, 1)),
                                       "--experiment"])
    finally:
        reset_langsmith_caches()
    assert out.exit_code == 2, out.output
    said = " ".join(out.output.split())  # rich wraps long lines
    assert f"LangSmith at http://127.0.0.1:{port}" in said and "could not be reached" in said
