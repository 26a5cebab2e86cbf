"""The Typer app and what every command shares: top-level options, output, errors."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from handoff.cli import logs
from handoff.cli.errors import CliError, Options, cli_errors, err, fail
from handoff.graphs.session import TurnResult
from handoff.state import HandoffEvent

__all__ = ["CliError", "DbOpt", "GraphArg", "ThreadOpt", "app", "cli_errors", "err", "fail", "out",
           "show_event", "show_reply"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Specialist agents that hand a conversation to one another.")
out = Console()

GraphArg = Annotated[str, typer.Argument(help="Graph name; see `handoff graphs`.")]
ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Resume this conversation.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="memory, a .sqlite path, or postgresql://...")]


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="HANDOFF_DEBUG",
        help="Show the graph's warnings and every error's traceback (otherwise an error is one line).",
    )] = False,
) -> None:
    """Specialist agents that hand a conversation to one another.

    Exit codes: 0 done, 1 unexpected failure, 2 bad input or settings, 3 thread busy, 130 Ctrl-C.
    """
    Options.debug = debug
    handler = logs.install(debug)
    ctx.call_on_close(lambda: logs.uninstall(handler))


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
