"""What a turn's input may carry into the graph (filled in below by the input-schema work)."""

from __future__ import annotations

from typing import Any


def admit(graph_input: Any) -> Any:
    """The input as the graph may take it; raises a clear error for anything else."""
    return graph_input
