"""Stored conversations: `handoff threads`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Column, Table

from handoff.cli.app import DbOpt, app, cli_errors, out
from handoff.cli.display import shown
from handoff.cli.storage import open_store
from handoff.graphs.persistence import list_threads


@app.command()
def threads(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many threads.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List stored conversations, most recently active first; resume one with `chat GRAPH --thread ID`."""
    with cli_errors(), open_store(db) as persistence:
        found = list_threads(persistence.checkpointer, limit=limit)
    if as_json:
        sys.stdout.write(json.dumps([asdict(t) for t in found], indent=2) + "\n")
        return
    if not found:
        out.print("[dim]no stored conversations[/]")
        return
    table = Table(Column("thread", no_wrap=True), Column("active agent", no_wrap=True), "turns",
                  "handoffs", Column("updated", no_wrap=True),
                  box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for t in found:
        table.add_row(shown(t.thread_id), shown(t.active_agent), str(t.turns), str(t.handoffs),
                      _local_time(t.updated_at))
    out.print(table)


def _local_time(iso: str) -> str:
    """``MM-DD HH:MM`` in local time, from a checkpoint's UTC timestamp."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return iso
