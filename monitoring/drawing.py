"""Pictures of a graph, made offline: Mermaid text, and a PNG drawn with matplotlib.

LangGraph's own ``draw_mermaid_png`` asks an online renderer; this module
never touches the network. Both pictures come from one ``Topology`` read from
the graph, which keeps every label of a conditional edge (LangGraph's drawable
graph keeps only one label per pair of nodes). The PNG uses a small layered
layout: ranks (a handoff graph's natural ones, else breadth-first), dummy
points on long edges, barycentre sweeps to order each rank, and x positions
pulled towards each node's neighbours.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables.graph import Graph
from langgraph.graph import END, START, StateGraph

STYLES = {  # kind -> (fill, edge colour, box style)
    "terminal": ("#e5e7eb", "#6b7280", "round,pad=0.08,rounding_size=0.18"),
    "intake": ("#dbeafe", "#1d4ed8", "square,pad=0.08"),
    "gate": ("#fde68a", "#b45309", "sawtooth,pad=0.1"),
    "human": ("#fecaca", "#b91c1c", "round,pad=0.08"),
    "agent": ("#dcfce7", "#15803d", "round,pad=0.08"),
}
MERMAID_SHAPES = {"terminal": "([{}])", "intake": "[{}]", "gate": "{{{{{}}}}}", "human": "[/{}/]", "agent": "({})"}
LAYER_GAP, NODE_GAP, DUMMY_WIDTH, CHAR_WIDTH, BOX_HEIGHT = 1.45, 0.6, 0.3, 0.085, 0.36
LEGEND = "solid: always taken    dashed: conditional (label = route)"
LEGEND_WIDTH = 4.4


@dataclass(frozen=True)
class DrawEdge:
    """One arrow: every label of every route from ``source`` to ``target``."""

    source: str
    target: str
    labels: tuple[str, ...]
    conditional: bool


@dataclass(frozen=True)
class Topology:
    """Nodes in declaration order and merged edges; what both pictures are drawn from."""

    name: str
    nodes: tuple[str, ...]
    edges: tuple[DrawEdge, ...]


def node_kind(node: str) -> str:
    """How a node is drawn: terminal, intake, gate, human or agent.

    Args:
        node: A node id of the graph.
    """
    return {START: "terminal", END: "terminal", "intake": "intake", "handoff_gate": "gate",
            "human": "human"}.get(node, "agent")


def topology(graph: Any) -> Topology:
    """Read nodes and edges from a StateGraph, a compiled graph or a drawable ``Graph``.

    Args:
        graph: What to draw; a StateGraph is compiled (without a checkpointer) to read it.
    """
    builder = graph if isinstance(graph, StateGraph) else getattr(graph, "builder", None)
    if isinstance(graph, Graph):
        drawable = graph
    else:
        drawable = (graph.compile() if isinstance(graph, StateGraph) else graph).get_graph()
    routes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, branches in (getattr(builder, "branches", None) or {}).items():
        for branch in branches.values():
            for label, target in (branch.ends or {}).items():
                if label != target:
                    routes[(source, target)].append(label)
    edges: dict[tuple[str, str], DrawEdge] = {}
    for e in drawable.edges:
        key = (e.source, e.target)
        labels = list(routes.get(key) or ([str(e.data)] if e.data else []))
        labels.sort(key=lambda s: (not s.startswith("hands to "), s))
        old = edges.get(key)
        merged = tuple(dict.fromkeys([*(old.labels if old else ()), *labels]))
        edges[key] = DrawEdge(e.source, e.target, merged, e.conditional or bool(old and old.conditional))
    name = str(getattr(builder, "name", None) or getattr(graph, "name", None) or "graph")
    return Topology(name=name, nodes=tuple(drawable.nodes), edges=tuple(edges.values()))


def mermaid_text(graph: Any) -> str:
    """Mermaid ``flowchart`` text; conditional edges dotted, with all their labels.

    Args:
        graph: A StateGraph, a compiled graph or a drawable ``Graph``.
    """
    topo = topology(graph)
    lines = ["---", f"title: {topo.name}", "---", "flowchart TD"]
    for node in topo.nodes:
        kind = node_kind(node)
        text = node.strip("_") if kind == "terminal" else node
        lines.append(f"    {node}{MERMAID_SHAPES[kind].format(text)}:::{kind}")
    for e in topo.edges:
        arrow = "-.->" if e.conditional else "-->"
        label = f'|"{"<br>".join(e.labels)}"|' if e.labels else ""
        lines.append(f"    {e.source} {arrow}{label} {e.target}")
    for kind, (fill, stroke, _) in STYLES.items():
        lines.append(f"    classDef {kind} fill:{fill},stroke:{stroke}")
    return "\n".join(lines) + "\n"


Point = tuple[float, float]
Route = tuple[str, str]


def layout(topo: Topology) -> tuple[dict[str, Point], dict[Route, list[str]], set[Route]]:
    """Positions (inches) of nodes and dummy points, each edge's route, and the reversed edges.

    Args:
        topo: The graph's topology.
    """
    layer, reversed_edges = _layers(topo)
    forward = [(e.source, e.target) if (e.source, e.target) not in reversed_edges else (e.target, e.source)
               for e in topo.edges if e.source != e.target]
    routes: dict[tuple[str, str], list[str]] = {}
    links: list[tuple[str, str]] = []
    for u, v in forward:
        chain = [u, *(f"~{u}>{v}~{k}" for k in range(layer[u] + 1, layer[v])), v]
        for k, dummy in enumerate(chain[1:-1], start=layer[u] + 1):
            layer[dummy] = k
        links.extend(zip(chain, chain[1:], strict=False))
        routes[(u, v)] = chain
    declared = {n: i for i, n in enumerate(topo.nodes)}
    rows: dict[int, list[str]] = defaultdict(list)
    for node in sorted(layer, key=lambda n: declared.get(n, declared.get(n.split(">")[0][1:], 0))):
        rows[layer[node]].append(node)
    for _ in range(3):
        _sweep(rows, links, down=True)
        _sweep(rows, links, down=False)
    xs = _place_x(rows, links)
    pos = {n: (xs[n], -k * LAYER_GAP) for k, row in rows.items() for n in row}
    edge_routes = {(e.source, e.target): (routes[(e.target, e.source)][::-1]
                                          if (e.source, e.target) in reversed_edges
                                          else routes.get((e.source, e.target), [e.source, e.target]))
                   for e in topo.edges}
    return pos, edge_routes, reversed_edges


def _layers(topo: Topology) -> tuple[dict[str, int], set[tuple[str, str]]]:
    """Each node's layer, and the edges that point up (drawn curved and grey).

    A handoff graph gets its natural ranks: start, intake, the gate, the agents
    (and the human) side by side, end; so start's and intake's edges to the
    agents pass beside the gate and every agent's handoff edges rise to it. Any other
    graph: the breadth-first distance from start.
    """
    if {"intake", "handoff_gate"} <= set(topo.nodes):
        fixed = {START: 0, "intake": 1, "handoff_gate": 2, END: 4}
        layer = {n: fixed.get(n, 3) for n in topo.nodes}
        return layer, {(e.source, e.target) for e in topo.edges if layer[e.source] > layer[e.target]}
    frontier = [START] if START in topo.nodes else list(topo.nodes[:1])
    layer = dict.fromkeys(frontier, 0)
    while frontier:
        reached = []
        for e in topo.edges:
            if e.source in frontier and e.target not in layer:
                layer[e.target] = layer[e.source] + 1
                reached.append(e.target)
        frontier = reached
    layer.update({n: 0 for n in topo.nodes if n not in layer})
    reversed_edges = {(e.source, e.target) for e in topo.edges if layer[e.source] > layer[e.target]}
    return layer, reversed_edges


def write_png(graph: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Draw the graph to a PNG file with matplotlib, fully offline.

    Args:
        graph: A StateGraph, a compiled graph or a drawable ``Graph``.
        path: Where to write the PNG; parent folders are created.
        dpi: Resolution of the image.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    topo = topology(graph)
    pos, routes, reversed_edges = layout(topo)
    curved = _curved(topo, reversed_edges)
    xs = [x for x, _ in pos.values()] or [0.0]
    ys = [y for _, y in pos.values()] or [0.0]
    half = max((_width(n) / 2 for n in topo.nodes), default=0.5)
    spare = max(0.0, LEGEND_WIDTH - (max(xs) - min(xs) + 2 * half + 1.2)) / 2
    left, right = min(xs) - half - 0.6 - spare, max(xs) + half + 0.6 + spare
    bottom, top = min(ys) - 0.9, max(ys) + 0.8
    fig = plt.figure(figsize=(right - left, top - bottom), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    ax.text((left + right) / 2, top - 0.3, topo.name, ha="center", va="center", fontsize=13, weight="bold")
    ax.text(left + 0.15, bottom + 0.2, LEGEND,
            fontsize=8, color="#4b5563", va="center")
    for e in topo.edges:
        points = [pos[n] for n in routes[(e.source, e.target)]]
        points[0] = _border(points[0], points[1], e.source)
        points[-1] = _border(points[-1], points[-2], e.target)
        style = "--" if e.conditional else "-"
        back = (e.source, e.target) in curved
        color = "#9ca3af" if back else "#374151"
        for a, b in zip(points[:-2], points[1:-1], strict=False):
            ax.plot([a[0], b[0]], [a[1], b[1]], linestyle=style, color=color, linewidth=1.1, zorder=1)
        bend = 0.3 if back and len(points) == 2 else 0.0
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=12,
                                     linestyle=style, color=color, linewidth=1.1, zorder=1,
                                     connectionstyle=f"arc3,rad={bend}"))
        if e.labels:
            (x0, y0), (x1, y1) = points[0], points[1]
            at = 1.0 if len(points) > 2 else 0.3  # a bend of a long edge, or near the source
            ax.text(x0 + (x1 - x0) * at, y0 + (y1 - y0) * at, "\n".join(_wrapped(label) for label in e.labels), fontsize=7.5,
                    ha="center", va="center", color="#1f2937", zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#d1d5db", "lw": 0.6})
    for node in topo.nodes:
        kind = node_kind(node)
        fill, stroke, box = STYLES[kind]
        (x, y), w = pos[node], _width(node)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - BOX_HEIGHT / 2), w, BOX_HEIGHT, boxstyle=box,
                                    fc=fill, ec=stroke, lw=1.4, zorder=2))
        ax.text(x, y, node.strip("_") if kind == "terminal" else node, ha="center", va="center",
                fontsize=10, zorder=4, weight="bold" if kind == "agent" else "normal")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white")
    plt.close(fig)
    return out


def _curved(topo: Topology, reversed_edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of two edges between the same nodes, the one drawn as a grey curve: the one with
    fewer labels, or the reversed one; a reversed edge alone is curved too."""
    edges = {(e.source, e.target): e for e in topo.edges}
    curved = set()
    for key in reversed_edges:
        twin = edges.get((key[1], key[0]))
        if twin is not None and len(twin.labels) < len(edges[key].labels):
            curved.add((key[1], key[0]))
        else:
            curved.add(key)
    return curved


def _wrapped(label: str, width: int = 22) -> str:
    """A label on lines of at most ``width`` characters, so labels of neighbouring edges do not overlap."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=False)) or label


def _width(node: str) -> float:
    if node.startswith("~"):
        return DUMMY_WIDTH
    text = node.strip("_") if node_kind(node) == "terminal" else node
    return max(0.9, len(text) * CHAR_WIDTH + 0.3)


def _border(center: tuple[float, float], toward: tuple[float, float], node: str) -> tuple[float, float]:
    """Where the line from ``center`` to ``toward`` leaves the node's box."""
    if node.startswith("~"):
        return center
    dx, dy = toward[0] - center[0], toward[1] - center[1]
    half_w, half_h = _width(node) / 2 + 0.08, BOX_HEIGHT / 2 + 0.08
    scale = min(half_w / abs(dx) if dx else float("inf"), half_h / abs(dy) if dy else float("inf"))
    scale = min(scale, 1.0)
    return center[0] + dx * scale, center[1] + dy * scale


def _place_x(rows: dict[int, list[str]], links: list[tuple[str, str]]) -> dict[str, float]:
    """x of every node: packed rows, then pulled towards the mean of their neighbours."""
    neighbours: dict[str, list[str]] = defaultdict(list)
    for u, v in links:
        neighbours[u].append(v)
        neighbours[v].append(u)
    x: dict[str, float] = {}
    for row in rows.values():
        x.update(zip(row, _packed(row, [0.0] * len(row)), strict=True))
    for sweep in range(12):
        for k in sorted(rows, reverse=bool(sweep % 2)):
            row = rows[k]
            want = [sum(x[m] for m in neighbours[n]) / len(neighbours[n]) if neighbours[n] else x[n]
                    for n in row]
            x.update(zip(row, _packed(row, want), strict=True))
    return x


def _packed(row: list[str], want: list[float]) -> list[float]:
    """Positions as close to ``want`` as order and spacing allow (same mean as ``want``)."""
    placed: list[float] = []
    for i, node in enumerate(row):
        if i == 0:
            placed.append(want[0])
            continue
        gap = (_width(row[i - 1]) + _width(node)) / 2 + NODE_GAP
        placed.append(max(want[i], placed[-1] + gap))
    shift = (sum(want) - sum(placed)) / len(row)
    return [p + shift for p in placed]


def _sweep(rows: dict[int, list[str]], links: list[tuple[str, str]], *, down: bool) -> None:
    """Reorder each layer by the mean position of its neighbours in the layer before it,
    breaking ties by its neighbours in the layer after it."""
    keys = sorted(rows) if down else sorted(rows, reverse=True)
    for previous, current in zip(keys, keys[1:], strict=False):
        nxt = keys[keys.index(current) + 1] if keys.index(current) + 1 < len(keys) else None
        here = {n: i for i, n in enumerate(rows[current])}
        before = _barycentres(rows[previous], links, here)
        after = _barycentres(rows[nxt], links, here) if nxt is not None else {}
        rows[current].sort(key=lambda n: (before.get(n, here[n]), after.get(n, here[n])))


def _barycentres(row: list[str], links: list[tuple[str, str]], targets: dict[str, int]) -> dict[str, float]:
    """For each node of ``targets``: the mean index of its neighbours in ``row``."""
    index = {n: i for i, n in enumerate(row)}
    found: dict[str, list[int]] = defaultdict(list)
    for u, v in links:
        for a, b in ((u, v), (v, u)):
            if a in index and b in targets:
                found[b].append(index[a])
    return {n: sum(v) / len(v) for n, v in found.items()}
