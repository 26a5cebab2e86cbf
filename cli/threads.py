"""Stored conversations: `handoff threads`."""

from __future__ import annotations

from rich.table import Table

from cli.app import DbOpt, app, cli_errors, out
from cli.settings import CliSettings
from graphs.persistence import open_persistence


@app.command()
def threads(db: DbOpt = None) -> None:
    """List stored conversations."""
    with cli_errors(), open_persistence(db or CliSettings().db_url) as persistence:
        latest: dict[str, dict] = {}
        for item in persistence.checkpointer.list(None):
            thread_id = item.config["configurable"]["thread_id"]
            if thread_id not in latest:
                values = item.checkpoint["channel_values"]
                latest[thread_id] = {"agent": values.get("active_agent", ""),
                                     "turns": values.get("turn", 0), "at": item.checkpoint["ts"]}
        table = Table("thread", "active agent", "turns", "last step")
        for thread_id, info in latest.items():
            table.add_row(thread_id, info["agent"], str(info["turns"]), info["at"])
        out.print(table)

