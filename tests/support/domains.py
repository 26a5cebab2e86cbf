"""Shared by the domain-graph tests: sessions, demo runs, `handoff run --json`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from typer.testing import CliRunner

from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import calls, tool_call
from handoff.cli.main import app
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession, TurnResult
from handoff.state import HandoffRecord
from tests.helpers import compile_memory


def session_of(build: Callable[..., StateGraph], model: BaseChatModel) -> HandoffSession:
    """A conversation with ``build(model=model)``, compiled in memory."""
    return HandoffSession(compile_memory(build(model=model)))


def play_demo(name: str) -> list[TurnResult]:
    """Every turn of the registry demo of graph ``name`` on the offline model."""
    entry = get_graph(name)
    session = HandoffSession(compile_memory(entry.build(model=OfflineChatModel())))
    return [session.send(text) for text in entry.demo]


def accepted(records: Sequence[HandoffRecord]) -> list[tuple[str, str]]:
    """(source, target) of the accepted handoffs, in order."""
    return [(r.source, r.target) for r in records if r.outcome == "accepted"]


def agents_of(path: Sequence[str]) -> list[str]:
    """The nodes of a path that are agents (not intake or the gate)."""
    return [n for n in path if n not in ("intake", "handoff_gate")]


def use(name: str, args: dict[str, Any] | None = None, *, call_id: str) -> Any:
    """A scripted reply that makes one tool call with a unique id."""
    return calls(tool_call(name, args or {}, call_id=call_id))


def run_json(graph: str, message: str, *, db: str = "memory") -> dict[str, Any]:
    """`handoff run GRAPH --message MESSAGE --json --db DB`, parsed; asserts exit code 0."""
    result = CliRunner().invoke(app, ["run", graph, "--message", message, "--json", "--db", db])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
