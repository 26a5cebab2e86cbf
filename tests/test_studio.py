"""langgraph.json and `langgraph dev`: the graphs Studio opens, served locally with no key."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk import Auth, get_sync_client

from handoff.service import studio
from tests.support.langgraph_dev import langgraph_dev

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "langgraph.json"
DOMAIN_GRAPHS = {"customer-service", "content-creation", "problem-solving", "sales"}
TECHNICAL_TURN = "Hi, this is Dana, account ACC-1001. My internet keeps dropping every evening."


def studio_entries() -> dict[str, str]:
    """langgraph.json's graphs: name -> ``path:attribute``."""
    return json.loads(CONFIG.read_text())["graphs"]


def test_langgraph_json_exports_every_domain_graph() -> None:
    config = json.loads(CONFIG.read_text())
    assert config["dependencies"] == ["."]
    entries = studio_entries()
    assert set(entries) == DOMAIN_GRAPHS == set(studio.STUDIO_GRAPHS)
    for name, target in entries.items():
        path, _, attribute = target.partition(":")
        assert (ROOT / path).resolve() == Path(studio.__file__).resolve()
        assert callable(getattr(studio, attribute)), name


@pytest.mark.parametrize("name", sorted(DOMAIN_GRAPHS))
def test_studio_factory_builds_each_graph_once(name: str) -> None:
    factory = getattr(studio, studio_entries()[name].partition(":")[2])

    async def build_twice() -> tuple[CompiledStateGraph, CompiledStateGraph]:
        return await factory({}), await factory({})

    first, second = asyncio.run(build_twice())
    assert isinstance(first, CompiledStateGraph)
    assert first is second
    assert "handoff_gate" in first.nodes
    assert first.checkpointer is None, "Studio brings its own checkpointer"


def test_studio_can_draw_the_input_form_of_customer_service() -> None:
    graph = studio.build("customer-service")
    assert "messages" in graph.get_input_jsonschema()["properties"]


def test_langgraph_json_names_the_custom_auth() -> None:
    """Its auth is service/langgraph_auth.py's, and Studio's unchecked login header is refused."""
    auth = json.loads(CONFIG.read_text())["auth"]
    path, _, attribute = auth["path"].partition(":")
    assert (path, attribute) == ("./service/langgraph_auth.py", "auth")
    assert auth["disable_studio_auth"] is True
    module = importlib.import_module("handoff.service.langgraph_auth")
    assert isinstance(getattr(module, attribute), Auth)
    assert (ROOT / path).resolve() == Path(module.__file__).resolve()


@pytest.fixture
def served_graphs() -> Iterator[tuple[str, set[str]]]:
    """All of langgraph.json (auth included, no tokens set) under `langgraph dev`: (url, graph names)."""
    names = set(studio_entries())
    with langgraph_dev() as url:
        yield url, names


def test_langgraph_dev_serves_the_graphs_and_runs_a_handoff(served_graphs: tuple[str, set[str]]) -> None:
    url, names = served_graphs
    client = get_sync_client(url=url, api_key=None)  # no header at all: Studio on a laptop

    assistants = {a["graph_id"]: a for a in client.assistants.search(limit=50)}
    assert set(assistants) == names
    for name in names:
        drawn = client.assistants.get_graph(assistants[name]["assistant_id"])
        nodes = {node["id"] for node in drawn["nodes"]}
        assert {"intake", "handoff_gate"} <= nodes, name

    thread = client.threads.create()
    chunks = list(client.runs.stream(
        thread["thread_id"], "customer-service",
        input={"messages": [{"role": "user", "content": TECHNICAL_TURN}]},
        stream_mode=["custom", "updates"],
    ))
    assert not [c for c in chunks if c.event == "error"], chunks
    handoff_events = [c.data for c in chunks if c.event == "custom" and c.data.get("type") == "handoff"]
    assert ("accepted", "general_support", "technical_specialist") in {
        (e["kind"], e["source"], e["target"]) for e in handoff_events
    }

    state = client.threads.get_state(thread["thread_id"])
    values = state["values"]
    assert values["active_agent"] == "technical_specialist"
    assert values["case_file"]["account_id"] == "ACC-1001"
    record = values["handoffs"][-1]
    assert (record["request"]["source"], record["request"]["target"], record["outcome"]) == (
        "general_support", "technical_specialist", "accepted"
    )
    last = values["messages"][-1]
    assert last["type"] == "ai" and last["name"] == "technical_specialist"
    assert "[offline model]" in last["content"]
