"""Storage and turn cost: this project vs langgraph-swarm on one scripted conversation.

Run with ``python -m benchmarks.storage`` (``make bench``). Every peer plays the
same scripted customer-service conversation (benchmarks/conversation.py) with a
zero-latency scripted model, on a ``SqliteSaver`` of its own (same file
settings: WAL, synchronous=NORMAL), in one process, one after the other:

- this project through ``graph.invoke`` and through ``HandoffSession.send``
  (durable steps, every handoff record read back each turn), and once more with
  uncompressed checkpoints, to separate structure from compression;
- langgraph-swarm 0.1 with LangGraph's stock serializer (as its users run it),
  and with this project's compressing serializer.

The table reports: stored bytes after the last turn (checkpoints + pending
writes; the store holding this project's transcript and handoff log); growth
(bytes added in the second half / in the first half: 1.0 is linear, quadratic
approaches 3.0); graph overhead per turn as the median wall and CPU time of
turns 1-10 and of the last 10 (the model costs nothing, so this is the
framework's and the database's cost); model calls per turn and on the turns
the conversation moves from Technical to Billing (a keyword rule here, a
transfer tool call in swarm); prompt characters per model call at turn 10 and
at the last turn. Timings are only compared as ratios, on the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from benchmarks.conversation import CYCLE, Turn, prompt_chars, script, scripted_model
from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import STATE_TYPES, open_persistence
from handoff.graphs.session import HandoffSession


@dataclass
class Run:
    """What one peer did on the conversation."""

    name: str
    db: Path
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    chars: list[list[int]] = field(default_factory=list)
    bytes_at: dict[int, dict[str, int]] = field(default_factory=dict)
    rule_turns: list[int] = field(default_factory=list)


Send = Callable[[str], None]
STOCK = JsonPlusSerializer()
"""LangGraph's default checkpoint serializer: what a swarm user gets."""
UNCOMPRESSED = JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)
"""This project's serializer without compression, to separate structure from compression."""


@contextmanager
def project_peer(db: Path, model: ScriptedChatModel, serde: SerializerProtocol | None = None) -> Iterator[Send]:
    """This project's customer-service graph on SQLite (checkpointer + store), via ``graph.invoke``."""
    with open_persistence(f"sqlite:///{db}", serde=serde) as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store
        )
        config = {"configurable": {"thread_id": "bench"}}
        yield lambda text: graph.invoke({"messages": [HumanMessage(text)]}, config) and None


@contextmanager
def session_peer(db: Path, model: ScriptedChatModel) -> Iterator[Send]:
    """The same graph through ``HandoffSession.send``: durable steps, every record read back per turn."""
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store
        )
        session = HandoffSession(graph, "bench")
        yield lambda text: session.send(text) and None


@contextmanager
def swarm_peer(db: Path, model: ScriptedChatModel, serde: SerializerProtocol | None = STOCK) -> Iterator[Send]:
    """The same three agents as a langgraph-swarm graph, on SqliteSaver with the same file settings."""
    from langchain.agents import create_agent
    from langgraph_swarm import create_handoff_tool, create_swarm

    from handoff.agents.customer_service.specialists import customer_service_agents
    from handoff.agents.prompt_markers import AGENT_MARKER

    specs = {s.name: s for s in customer_service_agents()}
    agents = [
        create_agent(
            model,
            tools=[create_handoff_tool(agent_name=t, description=specs[t].description)
                   for t in CYCLE if t != spec.name],
            system_prompt=f"{spec.instructions}\n\n{AGENT_MARKER} {spec.name}",
            name=spec.name,
        )
        for spec in specs.values()
    ]
    with open_persistence(f"sqlite:///{db}", serde=serde) as persistence:
        graph = create_swarm(agents, default_active_agent=CYCLE[0]).compile(
            checkpointer=persistence.checkpointer
        )
        config = {"configurable": {"thread_id": "bench"}}
        yield lambda text: graph.invoke({"messages": [{"role": "user", "content": text}]}, config) and None


def stored_bytes(db: Path) -> dict[str, int]:
    """Bytes of checkpoints, pending writes and store items in a SQLite file."""
    conn = sqlite3.connect(str(db))
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        sizes = {
            "checkpoints": conn.execute(
                "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints"
            ).fetchone()[0],
            "writes": conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes").fetchone()[0],
            "store": conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM store").fetchone()[0]
            if "store" in tables else 0,
        }
    finally:
        conn.close()
    sizes["total"] = sum(sizes.values())
    return sizes


def play(name: str, peer: Callable[..., Any], turns: list[Turn], db: Path, *, typed_payloads: bool) -> Run:
    """Play the whole script through one peer, measuring every turn."""
    model = scripted_model(typed_payloads=typed_payloads)
    run = Run(name=name, db=db)
    half = len(turns) // 2
    with peer(run.db, model) as send:
        for turn in turns:
            before = len(model.calls)
            started, cpu_started = time.perf_counter(), time.process_time()
            send(turn.text)
            run.seconds.append(time.perf_counter() - started)
            run.cpu_seconds.append(time.process_time() - cpu_started)
            made = model.calls[before:]
            run.calls.append(len(made))
            run.chars.append([prompt_chars(c["messages"]) for c in made])
            if turn.handoff and turn.answered_by == CYCLE[2]:  # Technical -> Billing
                run.rule_turns.append(turn.number - 1)
            if turn.number in (half, len(turns)):
                run.bytes_at[turn.number] = stored_bytes(run.db)
    return run


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def table(runs: list[Run], turns: int) -> str:
    """The markdown table the benchmark prints; the first run is the reference for "x smaller"."""
    half = turns // 2
    rows = [
        "| peer | checkpoint bytes | store bytes | total vs first row | growth 2nd/1st half "
        "| wall ms/turn first 10 -> last 10 | CPU ms/turn first 10 -> last 10 | model calls/turn "
        "| model calls on Technical->Billing turns | prompt chars/call turn 10 -> end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = runs[0].bytes_at[turns]["total"]
    for run in runs:
        end, mid = run.bytes_at[turns], run.bytes_at[half]
        growth = (end["total"] - mid["total"]) / max(mid["total"], 1)
        rule_calls = statistics.mean(run.calls[i] for i in run.rule_turns) if run.rule_turns else 0
        rows.append(
            f"| {run.name} | {_mb(end['checkpoints'] + end['writes'])} | {_mb(end['store'])} "
            f"| {end['total'] / reference:.1f}x | {growth:.2f} | {_first_last(run.seconds)} "
            f"| {_first_last(run.cpu_seconds)} | {sum(run.calls) / turns:.2f} | {rule_calls:.2f} "
            f"| {statistics.mean(run.chars[9] or [0]):,.0f} -> {statistics.mean(run.chars[-1] or [0]):,.0f} |"
        )
    return "\n".join(rows)


def _first_last(seconds: list[float]) -> str:
    first, last = _median_ms(seconds[:10]), _median_ms(seconds[-10:])
    return f"{first:.1f} -> {last:.1f} ({last / first:.2f}x)"


def machine() -> str:
    """One line naming what the numbers were measured on."""
    versions = []
    for package in ("langgraph", "langgraph-checkpoint-sqlite", "langgraph-swarm"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return (f"{platform.machine()} x {os.cpu_count()} CPUs, {platform.system()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def main(argv: list[str] | None = None) -> None:
    """Play the conversation through every peer and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--every", type=int, default=5, help="a handoff every N turns")
    parser.add_argument("--no-swarm", action="store_true", help="measure this project only")
    args = parser.parse_args(argv)
    if args.turns < 20 or args.every < 2:
        parser.error("--turns must be at least 20 and --every at least 2")
    turns = script(args.turns, args.every)
    peers: list[tuple[str, Callable[..., Any], bool]] = [
        ("handoff (graph.invoke)", project_peer, True),
        ("handoff (HandoffSession.send)", session_peer, True),
        ("handoff, uncompressed checkpoints", partial(project_peer, serde=UNCOMPRESSED), True),
    ]
    if not args.no_swarm:
        peers += [
            ("langgraph-swarm 0.1, stock SqliteSaver", swarm_peer, False),
            ("langgraph-swarm 0.1, this project's compressing serializer", partial(swarm_peer, serde=None),
             False),
        ]
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
        runs = [play(name, peer, turns, Path(tmp) / f"peer{i}.sqlite", typed_payloads=typed)
                for i, (name, peer, typed) in enumerate(peers)]
    print(f"{args.turns} turns, a handoff every {args.every} turns, zero-latency scripted model, "
          f"SqliteSaver on a file per peer")
    print(table(runs, args.turns))
    print(f"\nmeasured on {machine()}")


if __name__ == "__main__":
    main()
