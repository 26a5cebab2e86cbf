"""langgraph.json and `langgraph dev`: the graphs Studio opens, served locally with no key."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk import get_sync_client

from service import studio

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "langgraph.json"
DOMAIN_GRAPHS = {"customer-service", "content-creation", "problem-solving", "sales"}
READY_TIMEOUT_S = 90
TECHNICAL_TURN = "Hi, this is Dana, account ACC-1001. My internet keeps dropping every evening."


def studio_entries() -> dict[str, str]:
    """langgraph.json's graphs: name -> ``path:attribute``."""
    return json.loads(CONFIG.read_text())["graphs"]


def importable(name: str) -> bool:
    """Whether the module behind Studio graph ``name`` exists yet (others may still be written)."""
    module = studio.STUDIO_GRAPHS[name].partition(":")[0]
    return importlib.util.find_spec(module) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    if not importable(name):
        pytest.skip(f"{studio.STUDIO_GRAPHS[name]} is not written yet")
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


@pytest.fixture
def langgraph_dev(tmp_path: Path) -> Iterator[tuple[str, set[str]]]:
    """`langgraph dev --no-browser` on a free port, serving langgraph.json's importable graphs.

    It runs from a scratch folder, so its log and its `.langgraph_api` data stay
    out of the project (the folder it would watch). Yields (url, graph names).
    """
    names = {n for n in studio_entries() if importable(n)}
    assert "customer-service" in names
    config = {
        "dependencies": [str(ROOT)],
        "graphs": {n: str(ROOT / studio_entries()[n].removeprefix("./")) for n in names},
    }
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_", "HANDOFF_"))}
    env.update(HANDOFF_OFFLINE="1", LANGSMITH_TRACING="false", LANGGRAPH_NO_VERSION_CHECK="true",
               PYTHONPATH=str(ROOT))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "langgraph-dev.log").open("wb")
    command = [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload",
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"langgraph dev exited with {process.returncode}:\n"
                            + (tmp_path / "langgraph-dev.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready after {READY_TIMEOUT_S}s:\n"
                            + (tmp_path / "langgraph-dev.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url, names
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        log.close()


def test_langgraph_dev_serves_the_graphs_and_runs_a_handoff(langgraph_dev: tuple[str, set[str]]) -> None:
    url, names = langgraph_dev
    client = get_sync_client(url=url)

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
