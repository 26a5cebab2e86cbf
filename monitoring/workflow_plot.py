"""The whole workflow in one picture: which agents hand to which, how often, how well, how fast.

``plot_workflow`` draws the report's aggregate (``HandoffReport.pairs``) rather
than one panel per conversation, so it reads the same for 5 conversations or
5,000: agents on a circle, one arrow per pair that asked for a handoff, its
width by how many were asked, its colour by the acceptance rate, its label the
count, the acceptance and refusal rates and the gate's mean latency.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from handoff.monitoring.report import HandoffReport, PairStats

HUMAN_NODE = "human"


class DrawnPair(BaseModel):
    """One arrow of the picture, as drawn."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    label: str
    width: float


class WorkflowPicture(BaseModel):
    """What ``plot_workflow`` drew, for callers (the CLI says it) and tests."""

    model_config = ConfigDict(frozen=True)

    path: Path
    title: str
    agents: list[str]
    pairs: list[DrawnPair]


def pair_label(pair: PairStats) -> str:
    """``12 asked, 83% accepted, 8% refused, 4.1 ms``: what an arrow says."""
    parts = [f"{pair.handoffs} asked", f"{pair.acceptance_rate:.0%} accepted"]
    if pair.rejected:
        parts.append(f"{pair.rejection_rate:.0%} refused")
    if pair.failed:
        parts.append(f"{pair.failure_rate:.0%} failed")
    parts.append(f"{pair.latency_ms_mean:.1f} ms")
    return ", ".join(parts)


def workflow_title(report: HandoffReport) -> str:
    rate = f", {report.acceptance_rate:.0%} accepted" if report.acceptance_rate is not None else ""
    n, h = len(report.conversations), report.handoffs
    return f"{n} conversation{'' if n == 1 else 's'}, {h} handoff{'' if h == 1 else 's'}{rate}"


def plot_workflow(report: HandoffReport, out: str | Path) -> WorkflowPicture:
    """Draw the aggregate handoff flow of ``report`` as a PNG at ``out``."""
    try:
        from matplotlib.figure import Figure  # imported here: only the picture needs matplotlib
        from matplotlib.patches import FancyArrowPatch
    except ImportError:
        raise ImportError("the workflow picture needs matplotlib: pip install matplotlib") from None

    agents = _agents(report)
    where = _circle(agents)
    most = max([p.handoffs for p in report.pairs] + [1])
    figure = Figure(figsize=(9, 8))
    axes = figure.subplots()
    drawn: list[DrawnPair] = []
    for pair in report.pairs:
        (x0, y0), (x1, y1) = where[pair.source], where[pair.target]
        width = 1.0 + 7.0 * pair.handoffs / most
        colour = _colour(pair.acceptance_rate)
        # Curved, so A->B and B->A are two arrows side by side, not one on top of the other.
        axes.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=18,
                                       connectionstyle="arc3,rad=0.18", color=colour, linewidth=width,
                                       shrinkA=34, shrinkB=34, alpha=0.85, zorder=1))
        label = pair_label(pair)
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        # The label sits on the arrow's own side of the straight line between the two agents.
        nx, ny = (y1 - y0), -(x1 - x0)
        norm = math.hypot(nx, ny) or 1.0
        axes.text(mx + 0.16 * nx / norm, my + 0.16 * ny / norm, label.replace(", ", "\n", 1), fontsize=8,
                  ha="center", va="center", zorder=3,
                  bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "lw": 0.8})
        drawn.append(DrawnPair(source=pair.source, target=pair.target, label=label, width=width))
    for agent, (x, y) in where.items():
        fill = "#ffcdd2" if agent == HUMAN_NODE else "#dcfce7"
        axes.text(x, y, agent, fontsize=10, fontweight="bold", ha="center", va="center", zorder=4,
                  bbox={"boxstyle": "round,pad=0.5", "fc": fill, "ec": "#374151", "lw": 1.2})
    title = workflow_title(report)
    axes.set_title(title, fontsize=12)
    axes.text(0.0, -1.32, "arrow: handoffs asked from one agent to another; width: how many; "
              "colour: share accepted (green all, red none)", fontsize=8, ha="center", color="#4b5563")
    if not agents:
        axes.text(0, 0, "no conversations", ha="center", va="center")
    axes.set_xlim(-1.45, 1.45)
    axes.set_ylim(-1.4, 1.3)
    axes.set_aspect("equal")
    axes.set_axis_off()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=110)
    return WorkflowPicture(path=out, title=title, agents=agents, pairs=drawn)


def _agents(report: HandoffReport) -> list[str]:
    """Every agent that held a conversation or was asked to, in order of first appearance."""
    seen: dict[str, None] = {}
    for conversation in report.conversations:
        for name in conversation.path:
            seen.setdefault(name)
    for pair in report.pairs:
        seen.setdefault(pair.source)
        seen.setdefault(pair.target)
    return list(seen)


def _circle(agents: list[str]) -> dict[str, tuple[float, float]]:
    count = max(len(agents), 1)
    return {name: (math.cos(math.pi / 2 - 2 * math.pi * i / count), math.sin(math.pi / 2 - 2 * math.pi * i / count))
            for i, name in enumerate(agents)}


def _colour(acceptance: float) -> str:
    """Green when every handoff of the pair was accepted, through amber, to red when none was."""
    if acceptance >= 0.9:
        return "#15803d"
    if acceptance >= 0.6:
        return "#ca8a04"
    return "#b91c1c"
