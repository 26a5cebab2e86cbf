"""The aggregate report and its workflow picture, on conversations with known counts."""

from __future__ import annotations

from pathlib import Path

import numpy
from PIL import Image

from handoff.monitoring.report import ConversationReport, Step, summarise
from handoff.monitoring.workflow_plot import plot_workflow

GENERAL, TECHNICAL, BILLING = "general_support", "technical_specialist", "billing_expert"


def step(n: int, source: str, target: str, outcome: str, latency: float) -> Step:
    routed = target if outcome == "accepted" else source
    return Step(handoff_id=f"h{n}", source=source, target=target, trigger="tool", outcome=outcome,  # type: ignore[arg-type]
                rejection=None if outcome == "accepted" else "precondition_failed", routed_to=routed,
                latency_ms=latency)


def conversation(thread: str, steps: list[Step]) -> ConversationReport:
    path = [GENERAL]
    for s in steps:
        if s.routed_to != path[-1]:
            path.append(s.routed_to)
    outcomes = [s.outcome for s in steps]
    return ConversationReport(
        thread_id=thread, turns=len(steps) + 1, handoffs=len(steps), accepted=outcomes.count("accepted"),
        rejected=outcomes.count("rejected"), failed=outcomes.count("failed"), hops=len(path) - 1, bounces=0,
        path=path, steps=steps, usage={})


def known_conversations() -> list[ConversationReport]:
    """30 conversations: each asks General -> Technical once (accepted), every third also asks
    Technical -> Billing, refused the first time of every second such conversation."""
    out = []
    n = 0
    for i in range(30):
        steps = [step(n := n + 1, GENERAL, TECHNICAL, "accepted", 2.0)]
        if i % 3 == 0:
            if i % 6 == 0:
                steps.append(step(n := n + 1, TECHNICAL, BILLING, "rejected", 1.0))
            steps.append(step(n := n + 1, TECHNICAL, BILLING, "accepted", 3.0))
        out.append(conversation(f"t{i}", steps))
    return out


def test_the_aggregate_counts_every_pair_with_its_rates_and_latency() -> None:
    report = summarise(known_conversations())
    pairs = {(p.source, p.target): p for p in report.pairs}
    first = pairs[(GENERAL, TECHNICAL)]
    assert (first.handoffs, first.accepted, first.rejected, first.acceptance_rate) == (30, 30, 0, 1.0)
    assert first.latency_ms_mean == 2.0
    second = pairs[(TECHNICAL, BILLING)]
    assert (second.handoffs, second.accepted, second.rejected) == (15, 10, 5)
    assert abs(second.acceptance_rate - 10 / 15) < 1e-9
    assert abs(second.latency_ms_mean - (10 * 3.0 + 5 * 1.0) / 15) < 1e-9
    assert (report.handoffs, report.accepted, report.rejected) == (45, 40, 5)
    dumped = report.model_dump(mode="json")
    assert {(p["source"], p["target"], p["handoffs"]) for p in dumped["pairs"]} == {
        (GENERAL, TECHNICAL, 30), (TECHNICAL, BILLING, 15)}


def test_the_workflow_picture_draws_every_pair_with_its_figures(tmp_path: Path) -> None:
    report = summarise(known_conversations())
    picture = plot_workflow(report, tmp_path / "flow.png")

    assert picture.title == "30 conversations, 45 handoffs, 89% accepted"
    assert set(picture.agents) == {GENERAL, TECHNICAL, BILLING}
    labels = {(p.source, p.target): p.label for p in picture.pairs}
    assert labels[(GENERAL, TECHNICAL)] == "30 asked, 100% accepted, 2.0 ms"
    assert labels[(TECHNICAL, BILLING)] == "15 asked, 67% accepted, 33% refused, 2.3 ms"
    widths = {(p.source, p.target): p.width for p in picture.pairs}
    assert widths[(GENERAL, TECHNICAL)] > widths[(TECHNICAL, BILLING)]
    pixels = numpy.asarray(Image.open(picture.path).convert("L"))
    assert (pixels < 128).mean() > 0.005, "the picture has ink"


def test_an_empty_report_still_draws(tmp_path: Path) -> None:
    picture = plot_workflow(summarise([]), tmp_path / "empty.png")
    assert picture.pairs == [] and picture.path.exists()
