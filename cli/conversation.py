"""Conversation commands: graphs, run, answer, chat, demo."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from handoff.agents.models import load_settings
from handoff.cli.app import DbOpt, GraphArg, ThreadOpt, app, out, show_event, show_reply
from handoff.cli.errors import EXIT_INTERRUPTED, CliError, cli_errors, err, validation_message
from handoff.cli.interrupt import stop
from handoff.cli.replies import LiveReplies
from handoff.cli.turn_lock import ThreadBusy
from handoff.cli.turns import (
    WAIT_SECONDS,
    Conversation,
    WaitOpt,
    checked_message,
    checked_thread,
    escalation_of,
    open_conversation,
    with_escalation,
)
from handoff.graphs.boundary import InputRefused
from handoff.graphs.escalation import NoPendingEscalation, answer_escalation
from handoff.graphs.human import EscalationRequest, HumanAnswer
from handoff.graphs.registry import GRAPHS, get_graph
from handoff.graphs.session import HandoffSession, TurnResult


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
    wait: WaitOpt = WAIT_SECONDS,
) -> None:
    """Run one user turn and print the reply (or JSON with --json).

    When a person has been asked to take over, ``reply`` says so (``speaker`` is ``system``) and
    ``pending_escalation`` holds what the person is asked.
    """
    with cli_errors():
        thread = checked_thread(thread)
        text = checked_message(message)
        on_event = None if as_json else show_event

        def send(session: HandoffSession) -> tuple[TurnResult, EscalationRequest | None]:
            if escalation_of(session) is not None:
                raise CliError(f"thread {session.thread_id} is waiting for a person; "
                               f"answer it with `handoff answer {graph} {session.thread_id} --reply ...`")
            result = session.send(text, on_event=on_event)
            return result, escalation_of(session)

        with open_conversation(graph, thread, db, wait) as conversation:
            result, escalation = conversation.turn(send, on_event, None if as_json else show_reply)
    result = with_escalation(result, escalation)
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
    wait: WaitOpt = WAIT_SECONDS,
) -> None:
    """Answer a pending human escalation as the person."""
    with cli_errors():
        thread_id = checked_thread(thread, "THREAD")
        person = HumanAnswer(reply=reply, hand_back_to=hand_back)
        with open_conversation(graph, thread_id, db, wait) as conversation:
            result = conversation.turn(lambda session: _answer(session, person), None, show_reply)
    show_reply(result)


def _answer(session: HandoffSession, person: HumanAnswer) -> TurnResult:
    try:
        answer_escalation(session.graph, session.config, person)
    except (NoPendingEscalation, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise CliError(str(exc)) from None
    return session.result()


@app.command()
def chat(graph: GraphArg, thread: ThreadOpt = None, db: DbOpt = None, wait: WaitOpt = WAIT_SECONDS) -> None:
    """Talk to a graph; replies appear as they are written, each handoff as it happens. Empty line or
    Ctrl-D ends.

    A message the graph refuses (too long) or a thread busy with another turn is reported and the
    chat goes on. Ctrl-C ends the chat at once and prints how to resume it.
    """
    with cli_errors():
        thread = checked_thread(thread)
        with open_conversation(graph, thread, db, wait) as conversation:
            out.print(f"[dim]thread {conversation.thread_id} - {get_graph(graph).flow}[/]")
            replies = LiveReplies(out)
            while (text := _ask(conversation, "you> ")) is not None:
                _chat_turn(conversation, text, replies)


def _ask(conversation: Conversation, prompt: str) -> str | None:
    """The next line typed, or None at an empty line or end of input; Ctrl-C ends the process."""
    try:
        text = input(prompt)
    except EOFError:
        return None
    except KeyboardInterrupt:
        stop(conversation.say_how_to_resume)
        raise SystemExit(EXIT_INTERRUPTED) from None  # not reached: stop() ends the process
    return text if text.strip() else None


def _chat_turn(conversation: Conversation, text: str, replies: LiveReplies) -> None:
    """One message of the chat, its replies written as they arrive, then the person's part while the
    thread waits for one; a refusal is printed and the chat goes on."""
    try:
        checked_message(text, "message")
        result, escalation = conversation.turn(
            lambda session: (session.send(text, on_event=replies.handoff, on_token=replies.token),
                             escalation_of(session)),
            replies.handoff, replies.reply)
    except InputRefused as exc:
        err.print(f"[yellow]not sent[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        return
    except ThreadBusy as exc:
        err.print(f"[yellow]not sent[/]: {escape(str(exc))}; send it again in a moment",
                  highlight=False, soft_wrap=True)
        return
    replies.reply(with_escalation(result, escalation))
    while escalation is not None:
        show_escalation(escalation)
        reply = _ask(conversation, "person> ") or "A colleague will follow up."
        hand_back = (_ask(conversation, "hand back to (agent or empty)> ") or "").strip() or None
        try:
            person = HumanAnswer(reply=reply, hand_back_to=hand_back)
            result = conversation.turn(lambda session, person=person: _answer(session, person), show_event)
        except (CliError, ThreadBusy) as exc:
            err.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        except ValidationError as exc:
            err.print(f"[red]{escape(validation_message(exc))}[/]", highlight=False, soft_wrap=True)
        else:
            show_reply(result)
        escalation = conversation.turn(escalation_of, None)


@app.command()
def demo(graph: GraphArg = "customer-service", db: DbOpt = None) -> None:
    """Play the graph's scripted demo conversation, showing every handoff."""
    with cli_errors():
        entry = get_graph(graph)
        if load_settings().uses_real_model:
            out.print("[dim]using the configured OpenAI-compatible model[/]")
        else:
            out.print("[bold yellow]offline model[/]: deterministic rules, no LLM, no key, no network")
        with open_conversation(graph, None, db or "memory", WAIT_SECONDS) as conversation:
            out.print(f"[bold]{entry.title}[/]: {entry.flow}\n")
            agents: list[str] = []
            replies = LiveReplies(out)
            for text in entry.demo:
                out.print(f"[bold blue]you[/]: {escape(text)}", highlight=False)
                result = conversation.turn(
                    lambda session, text=text: session.send(text, on_event=replies.handoff, on_token=replies.token),
                    replies.handoff)
                replies.reply(result)
                out.print()
                agents.extend(n for n in result.path if n in _agent_names(conversation.session))
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
