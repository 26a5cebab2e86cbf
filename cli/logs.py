"""Log records while a command runs: errors as one line each on stderr; with ``--debug``, warnings
too, with their tracebacks.

Without a handler Python prints every warning with its whole traceback (a model server that cannot
be reached made about a hundred lines per turn). The graph's warnings are for operators (a retried
model call, a skipped router); a command tells its user what matters in its own words (the turn's
"(system)" message, and a line naming the model's URL, cli/turns.py).
"""

from __future__ import annotations

import logging
import sys

from handoff.cli.errors import one_line


def describe(exc: BaseException) -> str:
    """One line for an exception: its type and the first line of its message."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class OneLineHandler(logging.Handler):
    """Writes ``error: message: what failed`` for each error record; repeated lines are written once."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text = f"{text}: {describe(record.exc_info[1])}"
            elif record.exc_text:  # a masked record (graphs/log_safety.py) keeps only the text
                text = f"{text}: {record.exc_text.strip().splitlines()[-1][:200]}"
            line = f"{record.levelname.lower()}: {one_line(text)}"
            if line in self._seen:
                return
            self._seen.add(line)
            # sys.stderr at the time of writing: a test runner may swap it per command.
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def install(debug: bool) -> logging.Handler:
    """Attach the command's log handler to the root logger; remove it with ``uninstall``."""
    if debug:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler = OneLineHandler()
    logging.getLogger().addHandler(handler)
    return handler


def uninstall(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
