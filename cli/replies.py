"""Replies written as the agents write them, under the speaking agent's name, with each handoff on a
line of its own between one agent's text and the next.

Plain console writes, no live display: on a terminal the agent's name is styled; piped, Rich writes
no escape codes at all, so the output is the same text, arriving as incrementally.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from handoff.cli.app import show_event, show_reply
from handoff.graphs.session import TurnResult
from handoff.graphs.streaming import TokenEvent
from handoff.state import HandoffEvent

SNIPPET_CHARS = 40
"""How much of a withdrawn reply is quoted to say which one it was."""
INTERRUPTED = "[interrupted]"
"""Written after the text of a reply that broke off, or that its step did not keep: it was not stored."""


class LiveReplies:
    """Writes one conversation's token and handoff events in the order they come (one turn at a time)."""

    def __init__(self, console: Console) -> None:
        self.out = console
        self._writing: str | None = None
        """The message whose text the current line holds (None at the start of a line)."""
        self._spaced = True
        """The line so far ends with a space (or is empty)."""
        self._began: dict[str, str] = {}
        """How each message written so far began, to name one withdrawn after its line ended."""

    def token(self, event: TokenEvent) -> None:
        if event.kind == "delta":
            if event.message_id != self._writing:
                self._end_line()
                self.out.print(f"[bold magenta]{escape(event.agent)}[/]: ", end="", highlight=False)
                self._writing = event.message_id
                self._spaced = True
            self._write(event.text)
            began = self._began.get(event.message_id, "")
            if len(began) < SNIPPET_CHARS:
                self._began[event.message_id] = began + event.text
        elif event.message_id == self._writing:
            if event.kind == "interrupted":
                self._write(INTERRUPTED if self._spaced else f" {INTERRUPTED}", style="yellow")
            self._writing = None
            self.out.print()
        elif event.kind == "interrupted" and event.message_id in self._began:  # its line has ended
            self._end_line()
            began = " ".join(self._began[event.message_id].split())
            snippet = began if len(began) <= SNIPPET_CHARS else began[:SNIPPET_CHARS].rstrip() + "\u2026"
            self.out.print(f'{INTERRUPTED} {event.agent}\'s reply "{snippet}" above was not kept', style="yellow",
                           markup=False, highlight=False, soft_wrap=True)

    def handoff(self, event: HandoffEvent) -> None:
        self._end_line()
        show_event(event)

    def reply(self, result: TurnResult) -> None:
        """The turn's reply, unless it was already written as it arrived; the turn is over."""
        self._end_line()
        self._began.clear()
        if not result.streamed:
            show_reply(result)

    def _write(self, text: str, style: str | None = None) -> None:
        # soft_wrap: the terminal wraps; Rich would cut each piece at the width as if it began a line.
        self.out.print(text, end="", style=style, markup=False, highlight=False, soft_wrap=True)
        self.out.file.flush()
        self._spaced = text[-1:].isspace()

    def _end_line(self) -> None:
        if self._writing is not None:
            self._writing = None
            self.out.print()
