"""`handoff eval`: routing accuracy of a graph on a labelled dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from rich.table import Table

from agents.back_office import BackOffice
from agents.models import load_settings, make_chat_model
from cli.app import CliError, GraphArg, app, cli_errors, out
from graphs.evaluation import DatasetError, evaluate, load_dataset, report_json
from graphs.persistence import serializer
from graphs.registry import get_graph


@app.command("eval")
def eval_cmd(
    graph: GraphArg,
    dataset: Annotated[Path, typer.Option("--dataset", help="JSONL file of labelled conversations.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Play labelled conversations and report routing accuracy, confusion and facts kept."""
    with cli_errors():
        entry = get_graph(graph)
        try:
            conversations = load_dataset(dataset)
        except DatasetError as exc:
            raise CliError(str(exc)) from None
        model = make_chat_model(load_settings())

        def fresh_graph():
            return entry.build(model=model, office=BackOffice()).compile(
                checkpointer=InMemorySaver(serde=serializer()), store=InMemoryStore())

        report = evaluate(graph, fresh_graph, conversations)
    if as_json:
        sys.stdout.write(report_json(report) + "\n")
        return
    out.print(f"[bold]{graph}[/]: routing accuracy {report.turn_accuracy:.1%} over "
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
