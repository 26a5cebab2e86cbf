"""The handoff report: what happened across conversations, read from a checkpointer and store.

Per conversation it reads the latest checkpoint (turns, per-agent usage) and
the journal's full handoff log (graphs/journal.py), and derives:

- **handoffs** by id; a handoff's outcome is its last record (a receiver that
  fails after an accepted handoff turns it into ``failed``);
- **path**: the agents that held the conversation, in order; **hops** is how
  many times it changed hands (by an accepted handoff or by fallback routing);
- **bounces**: hops straight back to the agent that held it just before (A->B->A);
- **latency** per handoff (the gate's time) and **model calls / prompt tokens**
  per agent (the state's ``usage``).

``plot_paths`` draws each conversation's path through the agents as a PNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict, Field

from handoff.graphs.checkpoint_values import checkpoint_values
from handoff.graphs.journal import Journal
from handoff.state import HandoffRecord, Outcome, records_of


class Step(BaseModel):
    """One handoff as the report sees it."""

    model_config = ConfigDict(frozen=True)

    handoff_id: str
    source: str
    target: str
    trigger: str
    trigger_name: str | None = Field(default=None, description="The rule, tool or semantic trigger that fired.")
    score: float | None = Field(default=None, description="A semantic trigger's similarity, a classifier's confidence.")
    outcome: Outcome
    rejection: str | None = Field(default=None, description="Rejection code, if any.")
    routed_to: str = Field(description="Who held the conversation afterwards.")
    latency_ms: float


class AgentUsage(BaseModel):
    """What one agent cost."""

    model_calls: int = 0
    prompt_tokens: int = 0


class ConversationReport(BaseModel):
    """One thread."""

    thread_id: str
    graph: str | None = None
    turns: int
    handoffs: int
    accepted: int
    rejected: int
    failed: int
    hops: int
    bounces: int
    path: list[str] = Field(description="Agents that held the conversation, in order.")
    steps: list[Step] = Field(description="Every handoff record, oldest first.")
    usage: dict[str, AgentUsage]


class PairStats(BaseModel):
    """Handoffs asked for from one agent to another."""

    source: str
    target: str
    handoffs: int
    accepted: int
    rejected: int
    failed: int
    acceptance_rate: float
    rejection_rate: float
    failure_rate: float
    bounces: int = Field(description="Hops along this pair that sent the conversation straight back.")
    latency_ms_mean: float
    latency_ms_max: float


class HandoffReport(BaseModel):
    """Figures across the chosen conversations."""

    conversations: list[ConversationReport]
    pairs: list[PairStats]
    agents: dict[str, AgentUsage]
    handoffs: int
    accepted: int
    rejected: int
    failed: int
    acceptance_rate: float | None
    rejection_rate: float | None
    failure_rate: float | None
    bounces: int
    hops_mean: float | None
    hops_max: int
    latency_ms_mean: float | None
    latency_ms_max: float | None


def thread_ids(checkpointer: BaseCheckpointSaver) -> list[str]:
    """Every thread with a checkpoint, most recently active first."""
    latest: dict[str, str] = {}
    for item in checkpointer.list(None):
        configurable = item.config["configurable"]
        if configurable.get("checkpoint_ns", ""):
            continue
        thread = configurable["thread_id"]
        latest[thread] = max(latest.get(thread, ""), item.checkpoint["ts"])
    return sorted(latest, key=lambda t: latest[t], reverse=True)


def final_outcomes(records: Sequence[HandoffRecord]) -> dict[str, HandoffRecord]:
    """Each handoff's last record, by handoff id, in the order handoffs were first seen."""
    last: dict[str, HandoffRecord] = {}
    for record in records:
        last[record.request.id] = record
    return last


def conversation_path(records: Sequence[HandoffRecord], first: str | None) -> list[str]:
    """The agents that held the conversation, starting with ``first``."""
    start = records[0].source if records else first
    path = [start] if start else []
    for record in records:
        if not path or record.routed_to != path[-1]:
            path.append(record.routed_to)
    return path


def bounce_pairs(path: Sequence[str]) -> list[tuple[str, str]]:
    """The hops (from, to) that returned the conversation to the agent that held it just before."""
    return [(path[i], path[i + 1]) for i in range(1, len(path) - 1) if path[i + 1] == path[i - 1]]


def conversation_report(
    checkpointer: BaseCheckpointSaver, store: BaseStore | None, thread_id: str
) -> ConversationReport:
    """The report of one thread, from its latest checkpoint and its journal."""
    latest = checkpointer.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if latest is None:
        raise LookupError(f"no thread {thread_id!r} in this checkpointer")
    values = checkpoint_values(checkpointer, latest)
    count = int(values.get("handoff_count") or 0)
    records = Journal(store, thread_id).records(count) if store is not None else []
    if len(records) < count:  # no store, or a journal that lost items: the state's window is all there is
        records = records_of(values)
    finals = final_outcomes(records)
    path = conversation_path(records, values.get("active_agent"))
    usage = {agent: AgentUsage(model_calls=c.get("model_calls", 0), prompt_tokens=c.get("prompt_tokens", 0))
             for agent, c in (values.get("usage") or {}).items()}
    outcomes = [r.outcome for r in finals.values()]
    return ConversationReport(
        thread_id=thread_id,
        graph=latest.metadata.get("handoff_graph"),
        turns=int(values.get("turn") or 0),
        handoffs=len(finals),
        accepted=outcomes.count("accepted"),
        rejected=outcomes.count("rejected"),
        failed=outcomes.count("failed"),
        hops=max(len(path) - 1, 0),
        bounces=len(bounce_pairs(path)),
        path=path,
        steps=[_step(r) for r in records],
        usage=usage,
    )


def build_report(
    checkpointer: BaseCheckpointSaver, store: BaseStore | None, threads: Iterable[str] | None = None
) -> HandoffReport:
    """The report over ``threads`` (every thread when None).

    Args:
        checkpointer: Where the conversations' checkpoints are.
        store: The store holding their journals; None reads only the state's recent records.
        threads: Thread ids to include.
    """
    conversations = [conversation_report(checkpointer, store, t)
                     for t in (thread_ids(checkpointer) if threads is None else threads)]
    return summarise(conversations)


def summarise(conversations: Sequence[ConversationReport]) -> HandoffReport:
    """Totals, per-pair and per-agent figures over conversation reports."""
    finals: list[Step] = []
    for conversation in conversations:
        last: dict[str, Step] = {}
        first_latency: dict[str, float] = {}
        for step in conversation.steps:
            last[step.handoff_id] = step
            first_latency.setdefault(step.handoff_id, step.latency_ms)
        finals += [s.model_copy(update={"latency_ms": first_latency[i]}) for i, s in last.items()]

    bounces: dict[tuple[str, str], int] = {}
    for conversation in conversations:
        for pair in bounce_pairs(conversation.path):
            bounces[pair] = bounces.get(pair, 0) + 1

    pairs: dict[tuple[str, str], list[Step]] = {}
    for step in finals:
        pairs.setdefault((step.source, step.target), []).append(step)
    pair_stats = [_pair(source, target, steps, bounces.get((source, target), 0))
                  for (source, target), steps in sorted(pairs.items())]

    agents: dict[str, AgentUsage] = {}
    for conversation in conversations:
        for agent, used in conversation.usage.items():
            total = agents.setdefault(agent, AgentUsage())
            total.model_calls += used.model_calls
            total.prompt_tokens += used.prompt_tokens

    outcomes = [s.outcome for s in finals]
    latencies = [s.latency_ms for s in finals]
    hops = [c.hops for c in conversations]
    return HandoffReport(
        conversations=list(conversations),
        pairs=pair_stats,
        agents=dict(sorted(agents.items())),
        handoffs=len(finals),
        accepted=outcomes.count("accepted"),
        rejected=outcomes.count("rejected"),
        failed=outcomes.count("failed"),
        acceptance_rate=_rate(outcomes, "accepted"),
        rejection_rate=_rate(outcomes, "rejected"),
        failure_rate=_rate(outcomes, "failed"),
        bounces=sum(c.bounces for c in conversations),
        hops_mean=mean(hops) if hops else None,
        hops_max=max(hops, default=0),
        latency_ms_mean=mean(latencies) if latencies else None,
        latency_ms_max=max(latencies) if latencies else None,
    )


def _step(record: HandoffRecord) -> Step:
    return Step(handoff_id=record.request.id, source=record.source, target=record.target,
                trigger=record.request.trigger, trigger_name=record.request.trigger_name,
                score=record.request.score, outcome=record.outcome,
                rejection=record.rejection.code if record.rejection else None,
                routed_to=record.routed_to, latency_ms=record.latency_ms)


def _rate(outcomes: Sequence[str], outcome: str) -> float | None:
    return outcomes.count(outcome) / len(outcomes) if outcomes else None


def _pair(source: str, target: str, steps: Sequence[Step], bounces: int) -> PairStats:
    outcomes = [s.outcome for s in steps]
    latencies = [s.latency_ms for s in steps]
    return PairStats(
        source=source, target=target, handoffs=len(steps),
        accepted=outcomes.count("accepted"), rejected=outcomes.count("rejected"),
        failed=outcomes.count("failed"),
        acceptance_rate=outcomes.count("accepted") / len(steps),
        rejection_rate=outcomes.count("rejected") / len(steps),
        failure_rate=outcomes.count("failed") / len(steps),
        bounces=bounces, latency_ms_mean=mean(latencies), latency_ms_max=max(latencies),
    )


OUTCOME_COLOURS = {"accepted": "#2e7d32", "rejected": "#ef6c00", "failed": "#c62828"}
MAX_PLOTTED = 12


def plot_paths(report: HandoffReport, out: str | Path, *, max_conversations: int = MAX_PLOTTED) -> Path:
    """Draw each conversation's path through the agents and write it as a PNG.

    One panel per conversation (the most recent ``max_conversations``): agents
    are rows, handoffs are columns. A solid line is the conversation moving
    (green: accepted handoff, red: a receiver failed and it went back, grey:
    fallback routing); a dashed line ending in a cross is a handoff that was
    asked for and refused (orange) or failed (red).

    Returns:
        The path written.
    """
    try:
        from matplotlib.figure import Figure  # imported here: only the picture needs matplotlib
    except ImportError:
        raise ImportError("the path picture needs matplotlib: pip install matplotlib") from None

    shown = report.conversations[:max_conversations]
    lanes: list[str] = []
    for conversation in shown:
        for name in [*conversation.path, *(s.target for s in conversation.steps)]:
            if name not in lanes:
                lanes.append(name)
    row = {name: i for i, name in enumerate(lanes)}
    width = max([len(c.steps) for c in shown] + [2])
    figure = Figure(figsize=(min(max(8.0, 2.5 + 0.9 * width), 18),
                             0.8 + (0.45 * len(lanes) + 1.0) * max(len(shown), 1)))
    axes_list = figure.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
    for axes, conversation in zip(axes_list, shown, strict=False):
        _draw_conversation(axes, conversation, row)
        axes.set_yticks(range(len(lanes)), lanes)
        axes.set_ylim(-0.5, len(lanes) - 0.5)
        axes.set_xlim(-0.3, width + 0.3)
        axes.set_xticks(range(width + 1))
        axes.invert_yaxis()
        axes.grid(axis="y", alpha=0.25)
    if not shown:
        axes_list[0].text(0.5, 0.5, "no conversations", ha="center", va="center")
        axes_list[0].set_axis_off()
    axes_list[-1].set_xlabel("handoff record")
    figure.legend(handles=_legend_handles(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=110)
    return out


def _draw_conversation(axes: Any, conversation: ConversationReport, row: dict[str, int]) -> None:
    holder = conversation.path[0] if conversation.path else None
    if holder is None:
        return
    axes.plot([0], [row[holder]], "o", color="#1565c0")
    for x, step in enumerate(conversation.steps, start=1):
        moved = step.routed_to != holder
        colour = "#9e9e9e" if moved and step.outcome == "rejected" else OUTCOME_COLOURS[step.outcome]
        axes.plot([x - 1, x], [row[holder], row[step.routed_to]], "-", color=colour if moved else "#1565c0",
                  linewidth=2.2)
        if step.outcome != "accepted" and step.target in row:
            axes.plot([x - 1, x], [row[holder], row[step.target]], "--", color=OUTCOME_COLOURS[step.outcome],
                      linewidth=1.2)
            axes.plot([x], [row[step.target]], "x", color=OUTCOME_COLOURS[step.outcome], markersize=9)
        holder = step.routed_to
        axes.plot([x], [row[holder]], "o", color="#1565c0")
    thread = conversation.thread_id if len(conversation.thread_id) <= 18 else f"{conversation.thread_id[:17]}~"
    graph = f" ({conversation.graph})" if conversation.graph else ""
    axes.set_title(
        f"{thread}{graph}: {conversation.hops} hops, {conversation.accepted} accepted, "
        f"{conversation.rejected} rejected, {conversation.failed} failed, {conversation.bounces} bounces",
        fontsize=9, loc="left",
    )


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color=OUTCOME_COLOURS["accepted"], linewidth=2.2, label="accepted handoff"),
        Line2D([], [], color=OUTCOME_COLOURS["rejected"], linestyle="--", marker="x", label="rejected"),
        Line2D([], [], color=OUTCOME_COLOURS["failed"], linestyle="--", marker="x", label="failed"),
        Line2D([], [], color=OUTCOME_COLOURS["failed"], linewidth=2.2, label="back after a failure"),
        Line2D([], [], color="#9e9e9e", linewidth=2.2, label="sent to fallback"),
    ]
