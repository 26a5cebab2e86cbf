"""Stored text shown in a table: one short line, whatever was stored.

Thread ids are checked on the way in now (graphs/boundary.check_thread_id), but a store may hold
ids written before that rule, or by another program: a newline or a 5,000-character id must not
break a table's rows.
"""

from __future__ import annotations

from rich.text import Text

SHOWN_CHARS = 48
"""Longest id shown in a table; longer ones are cut with an ellipsis (``--json`` has them whole)."""


def shown(value: str, limit: int = SHOWN_CHARS) -> Text:
    """``value`` as one line of at most ``limit`` characters, control characters escaped (``\\n``),
    as plain text (never read as rich markup)."""
    visible = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)
    if len(visible) > limit:
        visible = visible[: limit - 1] + "\u2026"
    return Text(visible)
