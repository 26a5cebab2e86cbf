"""How every command fails: one line on stderr that names what is wrong, and an exit code.

| exit | meaning |
|---|---|
| 1 | something unexpected failed (the line names the exception; ``--debug`` shows the traceback) |
| 2 | bad input or settings: unknown graph, empty or too long message, bad thread id, bad model or storage settings |
| 3 | the thread is busy with another turn (another `handoff` process or a service worker) |
| 130 | interrupted with Ctrl-C |
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from handoff.agents.models import ModelConfigError
from handoff.cli.turn_lock import LockUnavailable, ThreadBusy
from handoff.graphs.boundary import InputRefused
from handoff.graphs.persistence import PersistenceError
from handoff.graphs.registry import UnknownGraphError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as shells report a process stopped by Ctrl-C."""

err = Console(stderr=True)


class CliError(Exception):
    """An error to print on stderr as one line, with exit code ``exit_code`` (2: bad input)."""

    exit_code = EXIT_BAD_INPUT


class Options:
    """Process-wide switches set by the top-level options."""

    debug = False


def one_line(text: str) -> str:
    """``text`` on one line: a multi-line message (a database's, a server's) must not break the
    one-line error contract."""
    return " ".join(text.split())


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    if Options.debug:
        trace = traceback.format_exc()
        if not trace.startswith("NoneType: None"):
            err.print(trace, end="", markup=False, highlight=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn every exception of a command into one line and an exit code (see the module docstring)."""
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except ThreadBusy as exc:
        fail(f"{exc} (another `handoff` command or a service worker); try again, or wait longer with --wait",
             EXIT_BUSY)
    except CliError as exc:
        fail(str(exc), exc.exit_code)
    except (UnknownGraphError, ModelConfigError, PersistenceError, LockUnavailable, InputRefused) as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(validation_message(exc))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        hint = "" if Options.debug else " (run `handoff --debug ...` for the traceback)"
        fail(f"{type(exc).__name__}{': ' + first if first else ''}{hint}", EXIT_FAILED)
