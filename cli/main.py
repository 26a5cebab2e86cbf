"""`handoff`: run, chat with and inspect the handoff graphs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agents.back_office import BackOffice
from agents.models import ModelConfigError, load_settings, make_chat_model
from cli.settings import CliSettings
from graphs.persistence import PersistenceError, open_persistence
from graphs.registry import GRAPHS, UnknownGraphError, get_graph
from graphs.session import HandoffSession, TurnResult
from state import HandoffEvent

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Specialist agents that hand a conversation to one another.")
out = Console()
err = Console(stderr=True)

GraphArg = Annotated[str, typer.Argument(help="Graph name; see `handoff graphs`.")]
ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Resume this conversation.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="memory, a .sqlite path, or postgresql://...")]


class CliError(Exception):
    """An error to print on stderr with exit code 2."""


@contextmanager
def _session(graph_name: str, thread: str | None, db: str | None) -> Iterator[HandoffSession]:
    settings = CliSettings()
    entry = get_graph(graph_name)
    model = make_chat_model(load_settings())
    office = BackOffice(settings.back_office_path)
    with open_persistence(db or settings.db_url) as persistence:
        graph = entry.build(model=model, office=office).compile(
            checkpointer=persistence.checkpointer, store=persistence.store
        )
        yield HandoffSession(graph, thread)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (UnknownGraphError, ModelConfigError, PersistenceError, CliError) as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()))


def _show_event(event: HandoffEvent) -> None:
    style = {"accepted": "green", "rejected": "yellow", "failed": "red"}.get(event.kind)
    if event.kind == "requested":
        out.print(f"  [dim]handoff requested ({event.trigger}): {event.source} -> {event.target}[/]")
    elif style:
        why = event.detail or event.reason
        out.print(f"  [{style}]handoff {event.kind}: {event.source} -> {event.target}[/] - {escape(why)}",
                  highlight=False)
    elif event.kind == "initialised":
        out.print(f"  [cyan]{event.target} initialised:[/] {escape(event.detail)}", highlight=False)


def _show_reply(result: TurnResult) -> None:
    out.print(f"[bold magenta]{result.active_agent}[/]: {escape(result.reply)}", highlight=False)


@app.command("graphs")
def graphs_cmd() -> None:
    """List the graphs."""
    table = Table("name", "flow")
    for entry in GRAPHS.values():
        table.add_row(entry.name, entry.flow)
    out.print(table)


@app.command()
def run(
    graph: GraphArg,
    message: Annotated[str, typer.Option("--message", "-m", help="The user's message.")],
    thread: ThreadOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    db: DbOpt = None,
) -> None:
    """Run one user turn and print the reply (or JSON with --json)."""
    with _errors():
        if not message.strip():
            raise CliError("--message is empty; give the user's message as text")
        with _session(graph, thread, db) as session:
            result = session.send(message, on_event=None if as_json else _show_event)
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json", exclude={"path"}), indent=2) + "\n")
    else:
        _show_reply(result)
        out.print(f"[dim]thread {result.thread_id}[/]")


@app.command()
def chat(graph: GraphArg, thread: ThreadOpt = None, db: DbOpt = None) -> None:
    """Talk to a graph; each handoff is shown as it happens. Empty line or Ctrl-D ends."""
    with _errors(), _session(graph, thread, db) as session:
        out.print(f"[dim]thread {session.thread_id} - {get_graph(graph).flow}[/]")
        while True:
            try:
                text = input("you> ")
            except EOFError:
                break
            if not text.strip():
                break
            _show_reply(session.send(text, on_event=_show_event))


@app.command()
def demo(graph: GraphArg = "customer-service", db: DbOpt = None) -> None:
    """Play the graph's scripted demo conversation, showing every handoff."""
    with _errors():
        entry = get_graph(graph)
        if load_settings().uses_real_model:
            out.print("[dim]using the configured OpenAI-compatible model[/]")
        else:
            out.print("[bold yellow]offline model[/]: deterministic rules, no LLM, no key, no network")
        with _session(graph, None, db or "memory") as session:
            out.print(f"[bold]{entry.title}[/]: {entry.flow}\n")
            agents: list[str] = []
            for text in entry.demo:
                out.print(f"[bold blue]you[/]: {escape(text)}", highlight=False)
                result = session.send(text, on_event=_show_event)
                _show_reply(result)
                out.print()
                agents.extend(n for n in result.path if n in {s for s in _agent_names(session)})
            out.print("[bold]path:[/] " + " -> ".join(_dedupe(agents)))


def _agent_names(session: HandoffSession) -> set[str]:
    return {n for n in session.graph.nodes if n not in ("__start__", "intake", "handoff_gate")}


def _dedupe(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


@app.command()
def threads(db: DbOpt = None) -> None:
    """List stored conversations."""
    with _errors(), open_persistence(db or CliSettings().db_url) as persistence:
        latest: dict[str, dict] = {}
        for item in persistence.checkpointer.list(None):
            thread_id = item.config["configurable"]["thread_id"]
            if thread_id not in latest:
                values = item.checkpoint["channel_values"]
                latest[thread_id] = {"agent": values.get("active_agent", ""),
                                     "turns": values.get("turn", 0), "at": item.checkpoint["ts"]}
        table = Table("thread", "active agent", "turns", "last step")
        for thread_id, info in latest.items():
            table.add_row(thread_id, info["agent"], str(info["turns"]), info["at"])
        out.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
