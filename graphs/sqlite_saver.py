"""LangGraph's SQLite saver with short channel versions.

``SqliteSaver`` numbers channel versions as a 32-digit counter plus a random fraction
(``00000000000000000000000000000042.0.7315...``), the format of the savers that key stored channel
values by version. The SQLite saver stores every value inside its checkpoint and keys nothing by
version, so the random half only costs bytes: a checkpoint lists a version for every channel and
every node's view of them, some forty numbers, and random digits do not compress. A plain counter
is what LangGraph's ``BaseCheckpointSaver`` itself hands out.

Versions are compared, never parsed, so one thread must keep one format: a thread begun before this
saver keeps the long format (the next version of a string is a string), a new one counts in ints.
LangGraph derives every new version from the highest in the checkpoint, so the two never mix.
"""

from __future__ import annotations

from langgraph.checkpoint.sqlite import SqliteSaver


class CompactSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose new threads number channel versions 1, 2, 3..."""

    def get_next_version(self, current: str | int | None, channel: None) -> str | int:  # type: ignore[override]
        """The version after ``current``: an int for a new thread, the long string for an old one."""
        if isinstance(current, str):
            return super().get_next_version(current, channel)
        return (current or 0) + 1
