"""`handoff eval`: routing accuracy of a graph on a labelled dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langsmith import utils as ls_utils
from rich.table import Table

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.models import load_settings, make_chat_model
from handoff.agents.settings import ModelSettings
from handoff.cli.app import CliError, GraphArg, app, cli_errors, out
from handoff.graphs.persistence import serializer
from handoff.graphs.registry import GraphEntry, get_graph
from handoff.monitoring.evaluation import (
    DatasetError,
    EvaluationReport,
    LabelledConversation,
    Split,
    evaluate,
    load_dataset,
    report_json,
)
from handoff.monitoring.experiment import ExperimentRecorder
from handoff.monitoring.routers import (
    ALL,
    ROUTERS,
    RouterComparison,
    RouterUnavailable,
    compare_routers,
    routers_named,
)


@app.command("eval")
def eval_cmd(
    graph: GraphArg,
    dataset: Annotated[Path, typer.Option("--dataset", help="JSONL file of labelled conversations.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    experiment: Annotated[bool, typer.Option(
        "--experiment", help="Also record the run as a LangSmith experiment (needs LANGSMITH_API_KEY).")] = False,
    experiment_name: Annotated[str | None, typer.Option(
        "--experiment-name", help="The experiment's name; <graph>-<time>-<random> otherwise.")] = None,
    langsmith_dataset: Annotated[str | None, typer.Option(
        "--langsmith-dataset", help="The LangSmith dataset; handoff-<graph>-<file name> otherwise.")] = None,
    router: Annotated[list[str] | None, typer.Option(
        "--router", help=f"Compare routers on the same conversations: {', '.join([*ROUTERS, ALL])} "
                         "(repeat the option for several).")] = None,
    split: Annotated[Split | None, typer.Option(
        "--split", help="Only the conversations of this split (tune or report).")] = None,
) -> None:
    """Play labelled conversations and report routing accuracy, confusion and facts kept.

    With --router, one row per router instead: accuracy, model calls saved by triggers that fired before the model, model calls and time per turn.

    With --experiment, also a LangSmith dataset of the conversations and an experiment scored on it.
    """
    with cli_errors():
        entry = get_graph(graph)
        try:
            conversations = load_dataset(dataset, split=split)
        except DatasetError as exc:
            raise CliError(str(exc)) from None
        settings = load_settings()
        if router:
            if experiment:
                raise CliError("--experiment records the graph as configured; leave out --router")
            try:
                chosen = routers_named(router, real_model=settings.uses_real_model)
            except RouterUnavailable as exc:
                raise CliError(str(exc)) from None
            comparison = compare_routers(entry, conversations, chosen, settings, split=split)
        else:
            report = _evaluate_as_configured(
                entry, conversations, settings, experiment=experiment, experiment_name=experiment_name,
                langsmith_dataset=langsmith_dataset or f"handoff-{graph}-{dataset.stem}")
    if router:
        show_comparison(comparison, as_json=as_json)
    else:
        show_report(report, as_json=as_json)


def _evaluate_as_configured(
    entry: GraphEntry, conversations: list[LabelledConversation], settings: ModelSettings, *,
    experiment: bool, experiment_name: str | None, langsmith_dataset: str,
) -> EvaluationReport:
    """The graph as the environment configures it (its model, its semantic triggers)."""
    model = make_chat_model(settings)

    def fresh_graph():
        return entry.build(model=model, office=BackOffice()).compile(
            checkpointer=InMemorySaver(serde=serializer()), store=InMemoryStore())

    recorder = None
    if experiment and not ls_utils.get_api_key(None):
        raise CliError("--experiment needs LangSmith: set LANGSMITH_API_KEY (and LANGSMITH_ENDPOINT "
                       "for a self-hosted LangSmith)")
    try:
        if experiment:
            recorder = ExperimentRecorder.start(
                conversations, graph=entry.name, dataset_name=langsmith_dataset,
                experiment_name=experiment_name, metadata={"model": model_label(model)})
        return evaluate(entry.name, fresh_graph, conversations, experiment=recorder)
    except ls_utils.LangSmithError as exc:
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CliError(f"LangSmith at {ls_utils.get_api_url(None)} refused the experiment or could not "
                       f"be reached ({type(exc).__name__}: {first_line})") from None


def show_report(report: EvaluationReport, *, as_json: bool) -> None:
    """Accuracy, the confusion table and every wrong turn; ``--json`` prints the whole report."""
    if as_json:
        sys.stdout.write(report_json(report) + "\n")
        return
    out.print(f"[bold]{report.graph}[/]: routing accuracy {report.turn_accuracy:.1%} over "
              f"{sum(len(c.turns) for c in report.conversations)} turns, facts kept "
              f"{report.facts_kept}/{report.facts_total}, handoffs {report.handoffs}, "
              f"rejections {report.rejections}")
    table = Table("expected \\ answered", *sorted({a for row in report.confusion.values() for a in row}))
    columns = [str(c.header) for c in table.columns[1:]]
    for expected, row in report.confusion.items():
        table.add_row(expected, *(str(row.get(c, 0)) for c in columns))
    out.print(table)
    for conversation in report.conversations:
        wrong = [t for t in conversation.turns if not t.correct]
        if wrong or conversation.facts_lost:
            out.print(f"  {conversation.id}: " + "; ".join(
                [f"{t.user[:40]!r} -> {t.actual} (expected {t.expected})" for t in wrong]
                + [f"lost fact {f!r}" for f in conversation.facts_lost]), highlight=False)
    if report.experiment is not None:
        ref = report.experiment
        out.print(f"LangSmith experiment [bold]{ref.name}[/] on dataset {ref.dataset} "
                  f"({ref.examples_added} examples added){': ' + ref.url if ref.url else ''}", highlight=False)


def show_comparison(comparison: RouterComparison, *, as_json: bool) -> None:
    """One row per router; ``--json`` prints every router's whole report."""
    if as_json:
        sys.stdout.write(comparison.model_dump_json(indent=2) + "\n")
        return
    turns = sum(len(c.turns) for c in comparison.reports[0].conversations) if comparison.reports else 0
    out.print(f"[bold]{comparison.graph}[/]: {comparison.conversations} conversations, {turns} turns"
              + (f" (split {comparison.split})" if comparison.split else ""))
    table = Table()
    table.add_column("router", no_wrap=True)
    for header in ("accuracy", "calls saved", "model calls", "ms/turn"):
        table.add_column(header, justify="right")
    for report in comparison.reports:
        by = " ".join(f"{kind} {count}" for kind, count in report.saved_by.items())
        table.add_row(report.router or "-", f"{report.turn_accuracy:.1%}",
                      f"{report.calls_saved}" + (f" ({by})" if by else ""), str(report.model_calls),
                      f"{report.ms_per_turn_median or 0:.1f}")
    out.print(table)
    out.print("calls saved: turns a rule or semantic trigger handed over before any model ran; "
              "ms/turn: median wall time", highlight=False)
    for name, label in comparison.embeddings.items():
        out.print(f"  {name}: {label}", highlight=False)


def model_label(model: BaseChatModel) -> str:
    """The model's name as LangSmith metadata (``offline`` for the offline model)."""
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)
