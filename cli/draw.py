"""`handoff draw`: a picture of a graph, as Mermaid text or a PNG, made offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from handoff.agents.offline import OfflineChatModel
from handoff.cli.app import CliError, GraphArg, app, cli_errors, out
from handoff.graphs.registry import get_graph
from handoff.monitoring.drawing import mermaid_text, write_png

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="FILE.png for a picture, FILE.mmd or FILE.md for Mermaid; stdout if omitted."),
]


@app.command()
def draw(graph: GraphArg, out_file: OutOpt = None) -> None:
    """Draw a graph's topology: every agent, the gate, and every allowed handoff."""
    with cli_errors():
        # The topology does not depend on the model, so drawing never reads model settings.
        built = get_graph(graph).build(model=OfflineChatModel())
        if out_file is None:
            sys.stdout.write(mermaid_text(built))
            return
        suffix = out_file.suffix.lower()
        if suffix == ".png":
            write_png(built, out_file)
        elif suffix in (".mmd", ".md"):
            text = mermaid_text(built)
            out_file.parent.mkdir(parents=True, exist_ok=True)
            out_file.write_text(f"```mermaid\n{text}```\n" if suffix == ".md" else text, encoding="utf-8")
        else:
            raise CliError(f"--out must end in .png, .mmd or .md, not {out_file.name!r}")
    out.print(f"wrote {out_file}")
