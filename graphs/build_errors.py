"""The one error a handoff graph's construction raises."""

from __future__ import annotations


class GraphBuildError(ValueError):
    """The declared agents do not form a valid handoff graph."""
