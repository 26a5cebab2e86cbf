"""Monitoring and debugging commands: `handoff history`, `handoff replay`, `handoff report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from langgraph.graph.state import CompiledStateGraph
from rich.markup import escape
from rich.table import Table

from handoff.agents.models import load_settings, make_chat_model
from handoff.agents.offline import OfflineChatModel
from handoff.cli.app import CliError, DbOpt, app, cli_errors, err, out, show_event, show_reply
from handoff.cli.display import shown
from handoff.cli.storage import open_store
from handoff.cli.turns import checked_thread
from handoff.graphs.persistence import Persistence
from handoff.graphs.registry import GRAPHS, get_graph
from handoff.graphs.telemetry import GRAPH_KEY
from handoff.monitoring.replay import ReplayError, history, replay
from handoff.monitoring.report import MAX_PLOTTED, HandoffReport, build_report, plot_paths
from handoff.monitoring.workflow_plot import plot_workflow

ThreadArg = Annotated[str, typer.Argument(help="Thread id; see `handoff threads`.")]
GraphOpt = Annotated[str | None, typer.Option(
    "--graph", help="The thread's graph, when its checkpoints do not name it.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def graph_of_thread(persistence: Persistence, thread: str, override: str | None) -> str:
    """The graph a thread ran on: ``--graph``, else what its checkpoints recorded."""
    latest = persistence.checkpointer.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    if latest is None:
        raise CliError(f"no thread {thread!r} in {persistence.url}; see `handoff threads`")
    name = override or latest.metadata.get(GRAPH_KEY)
    if not name:
        raise CliError(f"thread {thread!r} does not record its graph; pass --graph "
                       f"(one of: {', '.join(sorted(GRAPHS))})")
    return str(get_graph(name).name)


def compile_graph(name: str, persistence: Persistence, *, model: Any) -> CompiledStateGraph:
    """The named graph on the CLI's checkpointer and store."""
    return get_graph(name).build(model=model).compile(
        checkpointer=persistence.checkpointer, store=persistence.store)


@app.command("history")
def history_cmd(thread: ThreadArg, graph: GraphOpt = None, as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """List a thread's checkpoints with the active agent and the last handoff at each."""
    with cli_errors():
        thread = checked_thread(thread, "THREAD")
        with open_store(db) as persistence:
            name = graph_of_thread(persistence, thread, graph)
            compiled = compile_graph(name, persistence, model=OfflineChatModel())
            checkpoints = history(compiled, thread)
    if as_json:
        _print_json([c.model_dump(mode="json") | {"before_handoff": c.before_handoff} for c in checkpoints])
        return
    table = Table(title=f"{thread} ({name})")
    table.add_column("checkpoint", no_wrap=True, min_width=36)
    for column in ("step", "turn", "active agent", "next", "handoff"):
        table.add_column(column, overflow="fold")
    for c in checkpoints:
        handoff = f"[bold]pending[/] {escape(c.pending_handoff)}" if c.pending_handoff else escape(c.last_handoff or "")
        next_nodes = ", ".join(c.next)
        if c.before_handoff:
            next_nodes += " [yellow](before a handoff)[/]"
        elif c.source == "input":
            next_nodes += " (turn starts)"
        table.add_row(c.checkpoint_id, str(c.step), str(c.turn), c.active_agent or "", next_nodes, handoff)
    out.print(table)
    out.print("[dim]replay from a checkpoint: handoff replay THREAD --checkpoint ID [--message TEXT][/]")


@app.command("replay")
def replay_cmd(
    thread: ThreadArg,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint id; see `handoff history`.")],
    message: Annotated[str | None, typer.Option(
        "--message", "-m", help="Next user message, for a checkpoint that ends a turn.")] = None,
    fork_id: Annotated[str | None, typer.Option("--as", help="Thread id for the fork.")] = None,
    graph: GraphOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Re-run from a checkpoint on a new thread (a fork); the original thread is left unchanged.

    The graph is rebuilt with the current model settings, so a changed model or rule applies to
    the fork. Tools run against a scratch copy of the back office's ledger (graphs/replay.py).
    """
    with cli_errors():
        thread = checked_thread(thread, "THREAD")
        fork_id = checked_thread(fork_id, "--as")
        try:
            with open_store(db) as persistence:
                name = graph_of_thread(persistence, thread, graph)
                compiled = compile_graph(name, persistence, model=make_chat_model(load_settings()))
                result = replay(compiled, thread, checkpoint, message=message, new_thread_id=fork_id,
                                on_event=None if as_json else show_event)
        except ReplayError as exc:
            raise CliError(str(exc)) from None
    if as_json:
        _print_json(result.model_dump(mode="json", exclude={"turn": {"path"}}))
        return
    show_reply(result.turn)
    out.print(f"[dim]fork {result.thread_id} of {result.source_thread} at {result.checkpoint_id}[/]")


@app.command("report")
def report_cmd(
    thread: Annotated[str | None, typer.Option("--thread", help="Only this conversation.")] = None,
    all_threads: Annotated[bool, typer.Option("--all", help="Every stored conversation (the default).")] = False,
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG of the whole workflow: who hands to whom, how often, how well, how fast.")] = None,
    paths: Annotated[Path | None, typer.Option(
        "--paths", help=f"Also write a PNG of each conversation's path (the newest {MAX_PLOTTED}).")] = None,
    db: DbOpt = None,
) -> None:
    """Handoffs per pair, acceptance/rejection/failure rates, bounces, hops, latency and tokens."""
    with cli_errors():
        if thread and all_threads:
            raise CliError("give --thread ID or --all, not both")
        thread = checked_thread(thread)
        with open_store(db) as persistence:
            try:
                report = build_report(persistence.checkpointer, persistence.store,
                                      [thread] if thread else None)
            except LookupError as exc:
                raise CliError(f"{exc.args[0]}; see `handoff threads`") from None
        notes: list[str] = []
        for target, draw in ((plot, _draw_workflow), (paths, _draw_paths)):
            if target is None:
                continue
            try:
                notes.append(draw(report, target))
            except (ImportError, OSError) as exc:
                raise CliError(f"cannot write {target}: {exc}") from None
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        show_report(report)
    for note in notes:
        (err if as_json else out).print(note, highlight=False)


def _draw_workflow(report: HandoffReport, target: Path) -> str:
    picture = plot_workflow(report, target)
    return f"workflow picture ({picture.title}) written to {picture.path}"


def _draw_paths(report: HandoffReport, target: Path) -> str:
    written = plot_paths(report, target)
    shown = min(len(report.conversations), MAX_PLOTTED)
    limited = (f"; it shows the newest {shown} of {len(report.conversations)} conversations"
               if len(report.conversations) > MAX_PLOTTED else "")
    return f"path picture written to {written}{limited}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def show_report(report: HandoffReport) -> None:
    """The report as three tables and a summary line."""
    conversations = Table(title="Conversations")
    conversations.add_column("thread", overflow="fold")
    for column in ("graph", "turns", "handoffs", "accepted", "rejected", "failed", "hops", "bounces", "path"):
        conversations.add_column(column, overflow="fold")
    for c in report.conversations:
        conversations.add_row(shown(c.thread_id), c.graph or "", str(c.turns), str(c.handoffs),
                              str(c.accepted), str(c.rejected), str(c.failed), str(c.hops), str(c.bounces),
                              " -> ".join(c.path))
    pairs = Table("from", "to", "handoffs", "accepted", "rejected", "failed", "bounces", "latency ms mean",
                  "latency ms max", title="Handoffs per pair")
    for p in report.pairs:
        pairs.add_row(p.source, p.target, str(p.handoffs), _pct(p.acceptance_rate), _pct(p.rejection_rate),
                      _pct(p.failure_rate), str(p.bounces), _ms(p.latency_ms_mean), _ms(p.latency_ms_max))
    agents = Table("agent", "model calls", "prompt tokens", title="Model use per agent")
    for name, used in report.agents.items():
        agents.add_row(name, str(used.model_calls), str(used.prompt_tokens))
    out.print(conversations, pairs, agents)
    hops = "-" if report.hops_mean is None else f"{report.hops_mean:.1f}"
    out.print(f"{report.handoffs} handoffs: {_pct(report.acceptance_rate)} accepted, "
              f"{_pct(report.rejection_rate)} rejected, {_pct(report.failure_rate)} failed; "
              f"{report.bounces} bounces; hops per conversation {hops} (max {report.hops_max}); "
              f"gate latency {_ms(report.latency_ms_mean)} ms mean, {_ms(report.latency_ms_max)} ms max")
