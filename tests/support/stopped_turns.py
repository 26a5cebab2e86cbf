"""A turn whose worker "dies" part-way: its event stream read up to a step, then closed."""

from __future__ import annotations

from collections.abc import Iterable

from handoff.service.models import StepEvent, TurnEvent


def stop_after_steps(stream: Iterable[TurnEvent], steps: int) -> int:
    """Read ``stream`` until its ``steps``-th step event (or its end), then close it; returns the steps
    read. Closing stops the run at its last checkpoint, as a killed worker would leave it."""
    seen = 0
    try:
        for event in stream:
            if isinstance(event, StepEvent):
                seen += 1
                if seen == steps:
                    break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return seen
