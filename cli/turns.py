"""One turn of a stored thread from the command line: checked input, the thread's turn lock, a run
an earlier process left unfinished completed first, Ctrl-C honoured at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar, overload

import typer
from rich.markup import escape

from handoff.agents.models import load_settings, make_chat_model
from handoff.agents.settings import ModelSettings
from handoff.cli.errors import CliError, err
from handoff.cli.interrupt import interruptible
from handoff.cli.storage import open_store
from handoff.cli.turn_lock import turn_lock
from handoff.graphs.boundary import InputRefused, admit, check_thread_id
from handoff.graphs.escalation import pending_escalation
from handoff.graphs.human import EscalationRequest
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession, TurnResult
from handoff.service.transcript import unfinished
from handoff.state import HandoffEvent

T = TypeVar("T")

WAIT_SECONDS = 30.0
"""How long a turn waits for a thread that another turn holds, unless ``--wait`` says otherwise."""
WaitOpt = Annotated[float, typer.Option(
    "--wait", min=0, help="Seconds to wait while another turn holds the thread (0: refuse at once; "
    "exit code 3 when still busy).")]

OPENAI_API = "https://api.openai.com/v1"
"""Where the OpenAI client sends requests when ``OPENAI_BASE_URL`` is not set."""
SPEAKER_SYSTEM = "system"
"""The ``speaker`` of a reply the CLI writes itself (a person has been asked)."""


@overload
def checked_thread(thread: str, option: str = ...) -> str: ...
@overload
def checked_thread(thread: None, option: str = ...) -> None: ...
@overload
def checked_thread(thread: str | None, option: str = ...) -> str | None: ...


def checked_thread(thread: str | None, option: str = "--thread") -> str | None:
    """``thread`` if it is a valid thread id (graphs/boundary.py), checked before anything is opened,
    so a refused id leaves no half-made thread behind.

    Raises:
        CliError: the id is empty, too long or has a character the rule does not allow.
    """
    if thread is None:
        return None
    try:
        return check_thread_id(thread)
    except InputRefused as exc:
        raise CliError(f"{option}: {exc}") from None


def checked_message(text: str, option: str = "--message") -> str:
    """``text`` if the graph would take it as a user's message (the boundary's own rule).

    Raises:
        InputRefused: it is empty or longer than the limit; the message names ``option`` and the limit.
    """
    if not text.strip():
        raise InputRefused(f"{option} is empty; give the user's message as text")
    try:
        admit({"messages": [text]})
    except InputRefused as exc:
        raise InputRefused(f"{option}: {str(exc).removeprefix('messages[0]: ')}") from None
    return text


@dataclass
class Conversation:
    """A thread of a graph on the command's store, and how long a turn waits for it."""

    session: HandoffSession
    graph_name: str
    url: str
    wait: float
    model: ModelSettings

    @property
    def thread_id(self) -> str:
        return self.session.thread_id

    def turn(
        self, work: Callable[[HandoffSession], T], on_event: Callable[[HandoffEvent], None] | None,
        on_finished: Callable[[TurnResult], None] | None = None,
    ) -> T:
        """``work(session)`` under the thread's turn lock, after completing an unfinished run (its
        result goes to ``on_finished``).

        Ctrl-C ends the process at once (exit 130) and says how to resume (cli/interrupt.py).

        Raises:
            ThreadBusy: another turn held the thread for longer than ``wait``.
        """
        def locked() -> T:
            with turn_lock(self.url, self.thread_id, wait=self.wait, on_wait=self._say_waiting):
                failed_before = self._model_failures()
                finished = self._complete_unfinished(on_event)
                if finished is not None and on_finished is not None:
                    on_finished(finished)
                done = work(self.session)
                if self._model_failures() > failed_before:
                    self._say_model_failed()
                return done

        return interruptible(locked, self.say_how_to_resume)

    def _complete_unfinished(self, on_event: Callable[[HandoffEvent], None] | None) -> TurnResult | None:
        """Finish a run that stopped before its end (a killed or interrupted process): new input
        on top of it would drop its saved writes and leave its user message unanswered."""
        if unfinished(self.session.graph.get_state(self.session.state_config)):
            err.print(f"[dim]thread {self.thread_id}: finishing the turn an earlier run left unfinished[/]",
                      highlight=False, soft_wrap=True)
            return self.session.resume(on_event)
        return None

    def _model_failures(self) -> int:
        """Agent answers the model failed to give, so far in this thread (the state's usage counters)."""
        usage = self.session.graph.get_state(self.session.state_config).values.get("usage") or {}
        return sum(int(counts.get("failures", 0)) for counts in usage.values())

    def _say_model_failed(self) -> None:
        """The turn's (system) message says what failed; this line says where to look."""
        if not self.model.uses_real_model:
            return
        url = self.model.openai_base_url
        where = f"{url} (OPENAI_BASE_URL)" if url else f"{OPENAI_API} (OPENAI_BASE_URL is not set)"
        err.print(f"[yellow]warning[/]: the model {escape(self.model.model)} at {escape(str(where))} did not "
                  "answer; check that the server is up and the URL and model are right (`handoff --debug "
                  "...` logs each failed call)", highlight=False, soft_wrap=True)

    def _say_waiting(self) -> None:
        err.print(f"[dim]thread {self.thread_id} is busy with another turn; waiting up to {self.wait:g}s "
                  "(--wait)[/]", highlight=False, soft_wrap=True)

    def say_how_to_resume(self) -> None:
        err.print(f"\n[yellow]interrupted[/]: the thread keeps every step that finished; resume it with "
                  f"`handoff chat {escape(self.graph_name)} --thread {self.thread_id}` (or `handoff run "
                  f"{escape(self.graph_name)} --thread {self.thread_id} --message ...`)",
                  highlight=False, soft_wrap=True)


@contextmanager
def open_conversation(
    graph_name: str, thread: str | None, db: str | None, wait: float
) -> Iterator[Conversation]:
    """A thread of ``graph_name`` on the command's store (a new thread when ``thread`` is None).

    ``thread`` must have been checked (``checked_thread``) before: nothing is opened for a bad id.
    """
    entry = get_graph(graph_name)
    settings = load_settings()
    model = make_chat_model(settings)
    # The back office records refunds and tickets in the conversation's own store, so an
    # in-memory conversation's side effects vanish with it and a file's outlive the process.
    with open_store(db) as persistence:
        graph = entry.build(model=model).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        yield Conversation(HandoffSession(graph, thread), entry.name, persistence.url, wait, settings)


def escalation_of(session: HandoffSession) -> EscalationRequest | None:
    return pending_escalation(session.graph, session.config)


def with_escalation(result: TurnResult, escalation: EscalationRequest | None) -> TurnResult:
    """The turn's result as the user should read it: when the turn ended waiting for a person, the
    reply says so (``speaker`` ``system``) instead of being empty."""
    if escalation is None:
        return result
    notice = (f"A person has been asked to take over this conversation (reason: "
              f"{escalation.reason.strip().rstrip('.')}); their answer will come here.")
    return result.model_copy(update={"reply": notice, "speaker": SPEAKER_SYSTEM, "streamed": False})
