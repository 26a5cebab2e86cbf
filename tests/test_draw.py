"""`handoff draw`: Mermaid text and a PNG for every graph, made with no network."""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path
from typing import TypedDict

import numpy
import pytest
from langgraph.graph import END, START, StateGraph
from PIL import Image
from typer.testing import CliRunner

from handoff.agents.offline import OfflineChatModel
from handoff.cli.main import app
from handoff.graphs.registry import GRAPHS
from handoff.monitoring.drawing import topology, write_png

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _State(TypedDict, total=False):
    n: int


def _chain(length: int) -> StateGraph:
    """START -> step_0 -> ... -> step_{length-1} -> END."""
    graph = StateGraph(_State)
    names = [f"step_{i}" for i in range(length)]
    for name in names:
        graph.add_node(name, lambda state: {})
    for a, b in zip([START, *names], [*names, END], strict=True):
        graph.add_edge(a, b)
    return graph


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _ink(path: Path) -> int:
    """Pixels that are not (near) white."""
    with Image.open(path) as image:
        return int((numpy.asarray(image.convert("L")) < 240).sum())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def one_node_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_png(_chain(1), tmp_path_factory.mktemp("png") / "one.png")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_draw_writes_a_real_png_for_every_graph_offline(
    name: str, tmp_path: Path, one_node_png: Path, no_network: None
) -> None:
    target = tmp_path / "pictures" / f"{name}.png"

    result = runner.invoke(app, ["draw", name, "--out", str(target)])

    assert result.exit_code == 0, result.output
    width, height = _png_size(target)
    small_width, small_height = _png_size(one_node_png)
    assert width * height > 2 * small_width * small_height
    assert _ink(target) > 3 * _ink(one_node_png)


def test_picture_grows_with_the_number_of_nodes(tmp_path: Path) -> None:
    inks = [_ink(write_png(_chain(n), tmp_path / f"chain{n}.png")) for n in (1, 3, 6)]

    assert inks[0] < inks[1] < inks[2]


def test_mermaid_to_stdout_keeps_every_handoff_label() -> None:
    result = runner.invoke(app, ["draw", "customer-service"])

    assert result.exit_code == 0, result.output
    assert "flowchart TD" in result.stdout
    edge = next(line for line in result.stdout.splitlines()
                if line.strip().startswith("general_support -.->") and "handoff_gate" in line)
    assert "hands to technical_specialist, billing_expert, human" in edge


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_studio_drawing_shows_every_allowed_handoff_pair(name: str) -> None:
    """What Studio draws (``get_graph(xray=True)``) names, for every source, each agent it may hand to."""
    built = GRAPHS[name].build(model=OfflineChatModel())
    drawn = {(e.source, e.target): str(e.data or "") for e in built.compile().get_graph(xray=True).edges}
    # A person hands back by answering the escalation (the human node records it), not via the gate.
    pairs = [(spec.name, target) for spec in built.agent_specs.values() if spec.name != "human"
             for target in spec.handoffs]
    assert len(pairs) >= 4
    for source, target in pairs:
        label = drawn[(source, "handoff_gate")]
        assert re.search(rf"\b{target}\b", label), f"{source} -> {target} is not shown: {label!r}"


def test_topology_keeps_the_labels_langgraph_draws() -> None:
    built = GRAPHS["content-creation"].build(model=OfflineChatModel())
    drawable = built.compile().get_graph()
    langgraph_labels = {(e.source, e.target): e.data for e in drawable.edges}

    ours = {(e.source, e.target): e.labels for e in topology(built).edges}

    assert ours[("writer", "handoff_gate")] == ("hands to editor, researcher, human",)
    assert langgraph_labels[("writer", "handoff_gate")] in ours[("writer", "handoff_gate")]
    assert set(ours) == set(langgraph_labels)


@pytest.mark.parametrize(("suffix", "fenced"), [(".mmd", False), (".md", True)])
def test_draw_writes_mermaid_files(suffix: str, fenced: bool, tmp_path: Path) -> None:
    target = tmp_path / f"sales{suffix}"

    result = runner.invoke(app, ["draw", "sales", "--out", str(target)])

    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert text.startswith("```mermaid\n") is fenced
    assert "closer -.->" in text and "flowchart TD" in text


@pytest.mark.parametrize(("args", "expected"), [
    (["draw", "sales", "--out", "picture.gif"], "--out must end in .png, .mmd or .md"),
    (["draw", "no-such-graph"], "unknown graph 'no-such-graph'"),
])
def test_draw_errors_are_clear(args: list[str], expected: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert expected in result.stderr
    assert not (tmp_path / "picture.gif").exists()


def test_a_graph_with_a_loop_is_drawn_with_its_labels(tmp_path: Path) -> None:
    graph = _chain(2)
    graph.add_conditional_edges("step_1", lambda state: "again", {"again": "step_0", "done": END})

    path = write_png(graph, tmp_path / "loop.png")

    assert _png_size(path)[0] > 0 and _ink(path) > _ink(write_png(_chain(2), tmp_path / "plain.png"))
    labels = {(e.source, e.target): e.labels for e in topology(graph).edges}
    assert labels[("step_1", "step_0")] == ("again",)
