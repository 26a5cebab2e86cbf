"""Conversation commands: graphs, run, chat, demo, threads."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from handoff.agents.models import load_settings
from handoff.cli.app import (
    CliError,
    DbOpt,
    GraphArg,
    ThreadOpt,
    app,
    cli_errors,
    open_session,
    out,
    show_event,
    show_reply,
)
from handoff.graphs.escalation import NoPendingEscalation, answer_escalation, pending_escalation
from handoff.graphs.human import EscalationRequest, HumanAnswer
from handoff.graphs.registry import GRAPHS, get_graph
from handoff.graphs.session import HandoffSession


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
    with cli_errors():
        if not message.strip():
            raise CliError("--message is empty; give the user's message as text")
        with open_session(graph, thread, db) as session:
            if pending_escalation(session.graph, session.config) is not None:
                raise CliError(f"thread {session.thread_id} is waiting for a person; "
                               f"answer it with `handoff answer {graph} {session.thread_id} --reply ...`")
            result = session.send(message, on_event=None if as_json else show_event)
            escalation = pending_escalation(session.graph, session.config)
    if as_json:
        data = result.model_dump(mode="json", exclude={"path"})
        data["pending_escalation"] = escalation.model_dump(mode="json") if escalation else None
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        show_reply(result)
        if escalation:
            show_escalation(escalation)
        out.print(f"[dim]thread {result.thread_id}[/]")


@app.command()
def answer(
    graph: GraphArg,
    thread: Annotated[str, typer.Argument(help="The thread waiting for a person.")],
    reply: Annotated[str, typer.Option("--reply", help="What the person tells the user.")],
    hand_back: Annotated[str | None, typer.Option("--hand-back", help="Agent to take over again.")] = None,
    db: DbOpt = None,
) -> None:
    """Answer a pending human escalation as the person."""
    with cli_errors(), open_session(graph, thread, db) as session:
        try:
            answer_escalation(session.graph, session.config,
                              HumanAnswer(reply=reply, hand_back_to=hand_back))
        except (NoPendingEscalation, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise CliError(str(exc)) from None
        show_reply(session.result())


@app.command()
def chat(graph: GraphArg, thread: ThreadOpt = None, db: DbOpt = None) -> None:
    """Talk to a graph; each handoff is shown as it happens. Empty line or Ctrl-D ends."""
    with cli_errors(), open_session(graph, thread, db) as session:
        out.print(f"[dim]thread {session.thread_id} - {get_graph(graph).flow}[/]")
        while True:
            try:
                text = input("you> ")
            except EOFError:
                break
            if not text.strip():
                break
            show_reply(session.send(text, on_event=show_event))
            while (escalation := pending_escalation(session.graph, session.config)) is not None:
                show_escalation(escalation)
                person = HumanAnswer(reply=input("person> ") or "A colleague will follow up.",
                                     hand_back_to=input("hand back to (agent or empty)> ").strip() or None)
                try:
                    answer_escalation(session.graph, session.config, person)
                except ValueError as exc:
                    out.print(f"[red]{escape(str(exc))}[/]")
                    continue
                show_reply(session.result())


@app.command()
def demo(graph: GraphArg = "customer-service", db: DbOpt = None) -> None:
    """Play the graph's scripted demo conversation, showing every handoff."""
    with cli_errors():
        entry = get_graph(graph)
        if load_settings().uses_real_model:
            out.print("[dim]using the configured OpenAI-compatible model[/]")
        else:
            out.print("[bold yellow]offline model[/]: deterministic rules, no LLM, no key, no network")
        with open_session(graph, None, db or "memory") as session:
            out.print(f"[bold]{entry.title}[/]: {entry.flow}\n")
            agents: list[str] = []
            for text in entry.demo:
                out.print(f"[bold blue]you[/]: {escape(text)}", highlight=False)
                result = session.send(text, on_event=show_event)
                show_reply(result)
                out.print()
                agents.extend(n for n in result.path if n in {s for s in _agent_names(session)})
            out.print("[bold]path:[/] " + " -> ".join(_dedupe(agents)))


def _agent_names(session: HandoffSession) -> set[str]:
    return {n for n in session.graph.nodes if n not in ("__start__", "intake", "handoff_gate")}


def _dedupe(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def show_escalation(escalation: EscalationRequest) -> None:
    """Show what the person is asked to handle."""
    out.print(f"[bold yellow]waiting for a person[/] (from {escalation.source}): "
              f"{escape(escalation.reason)}", highlight=False)
    out.print(f"  briefing: {escape(escalation.briefing)}", highlight=False)
    out.print(f"  user asked: {escape(escalation.question)}", highlight=False)
