"""Every log record of a test, at DEBUG, formatted as a log file would hold it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = logging.Formatter("%(levelname)s %(name)s %(message)s")


class Records(logging.Handler):
    """Every record that reaches it, and its formatted line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(FORMAT)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@contextmanager
def root_debug_logs() -> Iterator[Records]:
    """Root logging at DEBUG into a handler added now (after the graph modules were imported)."""
    root, handler = logging.getLogger(), Records()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
