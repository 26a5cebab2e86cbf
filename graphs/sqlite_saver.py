"""LangGraph's SQLite saver with channel versions that compress.

``SqliteSaver`` numbers channel versions as a 32-digit counter plus a random fraction
(``00000000000000000000000000000042.0.7315...``), the format of the savers that key stored channel
values by version. The SQLite saver stores every value inside its checkpoint and keys nothing by
version, so the random half only costs bytes: a checkpoint lists a version for every channel and
every node's view of them, some forty numbers, and random digits do not compress.

This saver keeps the counter and drops the fraction. The versions stay strings in LangGraph's own
format, ordered the same way (a counter without a fraction sorts before the same counter with one,
and after every smaller counter), so LangGraph's stock ``SqliteSaver`` and ``AsyncSqliteSaver`` (the
service's) can continue a thread this saver began, and the other way round.
"""

from __future__ import annotations

from langgraph.checkpoint.sqlite import SqliteSaver


def next_version(current: str | int | None) -> str:
    """The version after ``current``: the next counter, zero-padded to 32 digits like LangGraph's."""
    if current is None:
        counter = 0
    elif isinstance(current, int):
        counter = current
    else:
        counter = int(current.split(".")[0])
    return f"{counter + 1:032}"


class CompactSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose channel versions carry no random digits."""

    def get_next_version(self, current: str | int | None, channel: None) -> str:  # type: ignore[override]
        """The next version: the counter only (see the module's note)."""
        return next_version(current)
