"""Tracing and masking however the graph is run: ``invoke``/``ainvoke``/``stream``/``astream_events``
with no session in between, `langgraph dev`, and notebook 04 with tracing on.

Every agent and gate run carries the handoff tags and metadata, no run of a
successful handoff is an error, each turn is traced once, and nothing the
customer said about themselves (name, e-mail, postcode, card, account)
reaches the local LangSmith collector (tests/support/langsmith_collector.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tracers.langchain import LangChainTracer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langgraph_sdk import get_sync_client

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.offline import OfflineChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.gate import GATE
from handoff.graphs.human import HUMAN
from handoff.graphs.persistence import serializer
from handoff.graphs.telemetry import flush_traces
from tests.support.langgraph_dev import langgraph_dev
from tests.support.langsmith_collector import LangSmithCollector, tracing_env, tracing_to_local_collector

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = (
    "Hi, this is Dana, account ACC-1001, postcode 90210, email dana@example.com.",
    "My internet keeps dropping every evening.",
    "Thanks. Also my card 4111 1111 1111 1111 was charged twice on invoice INV-2002 and I want a refund.",
    "This is useless, I want to speak to a real person.",
)
SENSITIVE = ("ACC-1001", "Dana", "Reyes", "dana@example.com", "90210", "4111 1111 1111 1111",
             "4111111111111111")
AGENTS = (GENERAL, TECHNICAL, BILLING, HUMAN)
GRAPH = "customer-service"


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("extra") or {}).get("metadata") or {}


def assert_traced_and_masked(runs: list[dict[str, Any]], payload: str, *, thread_id: str, turns: int) -> None:
    """The done-when of issue 14, for one conversation's runs and the bodies the collector received."""
    assert [r["name"] for r in runs if r.get("error")] == []
    assert all(metadata(r).get("handoff_graph") == GRAPH for r in runs)
    assert all(metadata(r).get("thread_id") == thread_id for r in runs)
    roots = [r for r in runs if not r.get("parent_run_id")]
    assert [r["name"] for r in roots] == [GRAPH] * turns  # each turn traced once, by one tracer

    agent_runs = [r for r in runs if r["name"] in AGENTS and r.get("run_type") == "chain"]
    assert {r["name"] for r in agent_runs} == set(AGENTS)
    for run in agent_runs:
        assert metadata(run)["active_agent"] == run["name"]
        assert f"agent:{run['name']}" in run["tags"] and f"graph:{GRAPH}" in run["tags"]

    gate_runs = [r for r in runs if r["name"] == GATE]
    assert [metadata(r)["handoff_target"] for r in gate_runs] == [TECHNICAL, BILLING, HUMAN]
    for run in gate_runs:
        meta = metadata(run)
        assert meta["handoff_outcome"] == "accepted" and meta["active_agent"]
        assert {"handoff", f"handoff:{meta['handoff_id']}", "outcome:accepted"} <= set(run["tags"])
    human = next(r for r in agent_runs if r["name"] == HUMAN)
    assert metadata(human)["paused"] == "GraphInterrupt"

    assert "[account]" in payload and "[name]" in payload and "[postcode]" in payload
    assert [value for value in SENSITIVE if value in payload] == []


def turn(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}


def run_invoke(graph: Any, text: str, config: dict[str, Any]) -> None:
    graph.invoke(turn(text), config)


def run_ainvoke(graph: Any, text: str, config: dict[str, Any]) -> None:
    asyncio.run(graph.ainvoke(turn(text), config))


def run_astream_events(graph: Any, text: str, config: dict[str, Any]) -> None:
    async def drain() -> None:
        async for _ in graph.astream_events(turn(text), config, version="v2"):
            pass

    asyncio.run(drain())


def run_stream_with_callers_tracer(graph: Any, text: str, config: dict[str, Any]) -> None:
    """A caller bringing LangChain's own tracer: it is replaced, not joined by a second one."""
    for _ in graph.stream(turn(text), {**config, "callbacks": [LangChainTracer()]}):
        pass


@pytest.mark.parametrize("run_turn", [run_ainvoke, run_invoke, run_astream_events, run_stream_with_callers_tracer],
                         ids=["ainvoke", "invoke", "astream_events", "stream+LangChainTracer"])
def test_a_plain_graph_run_is_traced_with_handoff_metadata_and_masked(
    run_turn: Callable[[Any, str, dict[str, Any]], None],
) -> None:
    # Compiled before tracing is on, as in a notebook that turns it on later.
    graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
        checkpointer=InMemorySaver(serde=serializer()), store=InMemoryStore())
    config = {"configurable": {"thread_id": "plain-run"}}

    with tracing_to_local_collector() as collector:
        for text in CONVERSATION:
            run_turn(graph, text, config)
        flush_traces()
        runs, payload = list(collector.runs().values()), collector.payload()

    assert graph.get_state(config).values["active_agent"] == HUMAN
    assert_traced_and_masked(runs, payload, thread_id="plain-run", turns=len(CONVERSATION))


def test_langgraph_dev_runs_are_traced_with_handoff_metadata_and_masked(tmp_path: Path) -> None:
    collector = LangSmithCollector()
    log = tmp_path / "langgraph-dev.log"
    with collector.running(), langgraph_dev(env=tracing_env(collector), graphs=[GRAPH], log_path=log) as url:
        client = get_sync_client(url=url)
        thread_id = client.threads.create()["thread_id"]
        for text in CONVERSATION:
            chunks = list(client.runs.stream(thread_id, GRAPH, stream_mode="updates",
                                             input={"messages": [{"role": "user", "content": text}]}))
            assert not [c for c in chunks if c.event == "error"], chunks
        assert client.threads.get_state(thread_id)["values"]["active_agent"] == HUMAN

        def complete(runs: list[dict[str, Any]]) -> bool:
            roots = [r for r in runs if not r.get("parent_run_id")]
            return len(roots) >= len(CONVERSATION) and all(r.get("end_time") for r in runs)

        runs = collector.wait_for(complete)
        payload = collector.payload()

    assert_traced_and_masked(runs, payload, thread_id=thread_id, turns=len(CONVERSATION))
    logged = log.read_text(errors="replace")
    assert [value for value in SENSITIVE if value in logged] == []


def test_notebook_04_passes_with_tracing_on_and_sends_only_masked_runs() -> None:
    notebook = ROOT / "notebooks" / "04_monitoring_and_debugging.ipynb"
    collector = LangSmithCollector()
    with collector.running():
        env = {**os.environ, **tracing_env(collector, project="notebook-04")}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", str(notebook)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        runs = collector.wait_for(lambda runs: any(r["name"] == GATE for r in runs), timeout=30)
        payload = collector.payload()

    gate_runs = [r for r in runs if r["name"] == GATE]
    assert all(metadata(r)["handoff_id"] and "handoff" in r["tags"] for r in gate_runs)
    assert [value for value in ("ACC-1001", "Dana", "Reyes", "90210") if value in payload] == []
