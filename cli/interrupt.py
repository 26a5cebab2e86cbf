"""Ctrl-C stops a turn at once, even one that waits on a model that never answers.

A turn's model call runs in one of LangGraph's worker threads, and Python only raises
KeyboardInterrupt in the main thread; unwinding from there waits for the workers, i.e. for the
model's timeout and every retry (minutes). So the turn runs in a thread of its own while the main
thread waits in short slices, and Ctrl-C ends the process right away with ``os._exit``.

That is safe for the stored thread: every step is checkpointed before the next one starts
(``durability="sync"``) and SQLite and PostgreSQL keep each commit atomic, so the thread is left
at its last finished step, exactly as after a crash; the next turn on it completes the run first
(cli/turns.py). The turn lock goes with the process (a record lock, a database session).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from handoff.cli.errors import EXIT_INTERRUPTED

T = TypeVar("T")

SLICE = 0.1
"""Seconds the main thread waits at a time, so Ctrl-C is seen at once."""


def interruptible(work: Callable[[], T], on_interrupt: Callable[[], None]) -> T:
    """``work()``, run so that Ctrl-C ends the process within a moment.

    Args:
        work: What to run (a turn); its result is returned and its exception raised here.
        on_interrupt: Called on Ctrl-C before the process exits with code 130 (prints how to resume).
    """
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(work)
        except BaseException as exc:  # handed to the main thread, which raises it
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="handoff-turn", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(SLICE)
    except KeyboardInterrupt:
        stop(on_interrupt)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def stop(on_interrupt: Callable[[], None]) -> None:
    """Say how to resume and end the process now (exit code 130), leaving running threads behind."""
    try:
        on_interrupt()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe must not keep the process alive
                stream.flush()
        os._exit(EXIT_INTERRUPTED)
