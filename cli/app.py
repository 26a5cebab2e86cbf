"""The Typer app and what every command shares: sessions, errors, output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from handoff.agents.models import ModelConfigError, load_settings, make_chat_model
from handoff.graphs.persistence import PersistenceError, open_persistence
from handoff.graphs.registry import UnknownGraphError, get_graph
from handoff.graphs.session import HandoffSession, TurnResult
from handoff.graphs.settings import StorageSettings
from handoff.state import HandoffEvent

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
def open_session(graph_name: str, thread: str | None, db: str | None) -> Iterator[HandoffSession]:
    settings = StorageSettings()
    entry = get_graph(graph_name)
    model = make_chat_model(load_settings())
    # The back office records refunds and tickets in the conversation's own store, so an
    # in-memory conversation's side effects vanish with it and a file's outlive the process.
    with open_persistence(db or settings.db_url) as persistence:
        graph = entry.build(model=model).compile(
            checkpointer=persistence.checkpointer, store=persistence.store
        )
        yield HandoffSession(graph, thread)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def cli_errors() -> Iterator[None]:
    try:
        yield
    except (UnknownGraphError, ModelConfigError, PersistenceError, CliError) as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()))


def show_event(event: HandoffEvent) -> None:
    style = {"accepted": "green", "rejected": "yellow", "failed": "red"}.get(event.kind)
    if event.kind == "requested":
        out.print(f"  [dim]handoff requested ({event.trigger}): {event.source} -> {event.target}[/]")
    elif style:
        why = event.detail or event.reason
        out.print(f"  [{style}]handoff {event.kind}: {event.source} -> {event.target}[/] - {escape(why)}",
                  highlight=False)
    elif event.kind == "initialised":
        out.print(f"  [cyan]{event.target} initialised:[/] {escape(event.detail)}", highlight=False)


def show_reply(result: TurnResult) -> None:
    if result.reply:
        out.print(f"[bold magenta]{result.speaker or result.active_agent}[/]: {escape(result.reply)}",
                  highlight=False)
