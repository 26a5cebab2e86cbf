"""`handoff`: run, chat with and inspect the handoff graphs."""

from handoff.cli import conversation, draw, evaluate, inspect, threads  # noqa: F401  (each module registers its commands)
from handoff.cli.app import app

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
