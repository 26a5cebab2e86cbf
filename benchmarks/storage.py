"""Storage and turn cost: this project against the floor and its peers, one conversation, one run.

Run with ``python -m benchmarks.storage`` (``make bench``); ``--quick`` for a short run,
``--peers project,floor --turns 1000`` for the long check of linear storage and flat turn cost.
Every peer plays the same scripted customer-service conversation (benchmarks/conversation.py)
with a zero-latency scripted model, each on a SQLite file of its own, open at once in one
process. The peers alternate turn by turn (the order rotating every turn), so a slow moment of
the machine falls on all of them alike. The heavy peers (``HEAVY``: swarm, supervisor, the Agents
SDK) play a second pass with the floor again, since their long turns between the fast peers' slow
those unevenly (``--one-pass`` plays everything together); every ratio is to its own pass's floor:

- ``project``: this project's graph through ``graph.invoke``; ``session``: through
  ``HandoffSession.send`` (each step durable, the turn's result read back), as the CLI and the
  service run it;
- ``floor``: a one-node LangGraph chat graph keeping the last 12 messages in state and the
  transcript in the store, on the same SQLite checkpointer, serializer and store, a checkpoint
  per step: what any LangGraph chat with a bounded window pays;
- ``swarm``: langgraph-swarm 0.1 and ``supervisor``: langgraph-supervisor, the same three
  agents, with LangGraph's stock serializer as their users get them (the supervisor plays
  fewer turns: its storage grows quadratically);
- ``agents-sdk``: the OpenAI Agents SDK, the same three agents with handoffs, on its
  ``SQLiteSession`` (no checkpoints: it cannot resume mid-turn or travel in time);
- ``before``: this project as it was before issue 18's persistence changes (zlib with the
  ``d1`` dictionary, 4 KiB pages), ``before-codec`` and ``before-pages`` one change at a time,
  for a before/after in the same run (only when named in ``--peers``).

Columns: stored bytes (every value in every table; and the file plus its WAL on disk), growth
(bytes stored in the second half over the first: 1.0 is linear, quadratic nears 3.0), wall ms per
turn (mean, p95, median of the first and of the last 10 turns), CPU ms per turn (the whole
process), prompt characters per model call (mean, and at the last turn), model calls per turn,
and the ratio to the floor's wall and CPU time (benchmarks/measure.py). The model costs
nothing, so the times are the framework's and the database's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import peers
from benchmarks.agents_sdk import agents_sdk
from benchmarks.conversation import Turn, script
from benchmarks.measure import BLOCK, Run, disk_bytes, logical_bytes, page_size, table_of_passes
from benchmarks.old_codec import before


@dataclass(frozen=True)
class Peer:
    """A peer the benchmark can play: its label, how to open it, and how many turns it plays."""

    name: str
    opener: Callable[[Path], AbstractContextManager[Any]]
    max_turns: int | None = None


def catalogue(supervisor_turns: int) -> dict[str, Peer]:
    """Every peer by its ``--peers`` key."""
    return {
        "project": Peer("handoff (graph.invoke)", peers.project),
        "session": Peer("handoff (HandoffSession.send)", peers.session),
        "floor": Peer("floor: one-node LangGraph chat", peers.floor),
        "swarm": Peer("langgraph-swarm 0.1", peers.swarm),
        "supervisor": Peer("langgraph-supervisor 0.0", peers.supervisor, supervisor_turns),
        "agents-sdk": Peer("OpenAI Agents SDK, SQLiteSession", agents_sdk),
        "before": Peer("handoff (graph.invoke), before: zlib d1, 4 KiB pages, WAL 1000 pages", before),
        "before-codec": Peer("handoff (graph.invoke), zlib d1", partial(before, pages=False)),
        "before-pages": Peer("handoff (graph.invoke), 4 KiB pages, WAL 1000 pages", partial(before, codec=False)),
    }


DEFAULT_PEERS = "project,session,floor,swarm,supervisor,agents-sdk"

HEAVY = frozenset({"swarm", "supervisor", "agents-sdk"})
"""Peers whose turns take 25-120 ms and grow with the conversation. Alternated with the fast peers
they slow them unevenly: beside langgraph-swarm the project took 1.65x the floor's time, on its own
with the floor 1.42x, the same code minutes apart (with the collector off too, so it is not garbage
collection; a long turn in between leaves the next peer's code and data out of the CPU's caches, and
the project's turn touches more of both than the floor's). So by default they play a second pass,
with the floor again, and each ratio is to the floor of its own pass."""


def split_passes(keys: list[str], *, one_pass: bool = False) -> list[list[str]]:
    """The passes to play: the fast peers, then the heavy ones with the floor again (one pass when
    asked, when there is no floor, or when one group is empty)."""
    light = [k for k in keys if k not in HEAVY]
    heavy = [k for k in keys if k in HEAVY]
    if one_pass or "floor" not in keys or not heavy or light == ["floor"]:
        return [keys]
    return [light, [*heavy, "floor"]]


def play(chosen: list[Peer], turns: list[Turn], folder: Path) -> list[Run]:
    """Play the script through every peer at once, alternating turn by turn."""
    runs = [Run(name=p.name, db=folder / f"peer{i}.sqlite", turns=min(len(turns), p.max_turns or len(turns)))
            for i, p in enumerate(chosen)]
    with ExitStack() as stack:
        sides = [stack.enter_context(p.opener(run.db)) for p, run in zip(chosen, runs, strict=True)]
        for index, turn in enumerate(turns):
            order = list(range(len(runs)))
            order = order[index % len(order):] + order[:index % len(order)]
            for k in order:
                run, side = runs[k], sides[k]
                if turn.number > run.turns:
                    continue
                started, cpu_started = time.perf_counter(), time.process_time()
                side.send(turn.text)
                run.seconds.append(time.perf_counter() - started)
                run.cpu_seconds.append(time.process_time() - cpu_started)
                made = side.drain()
                run.calls.append(len(made))
                run.chars.append(made)
                if turn.number in (run.turns // 2, run.turns):
                    run.logical_at[turn.number] = logical_bytes(run.db)
        for run in runs:
            (run.file, run.wal), run.page_size = disk_bytes(run.db), page_size(run.db)
    for run in runs:  # closing the last connection folds the WAL into the file
        run.at_rest = sum(disk_bytes(run.db))
    return runs


def machine() -> str:
    """What the numbers were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    versions = []
    for package in ("langgraph", "langgraph-checkpoint-sqlite", "langgraph-swarm", "langgraph-supervisor",
                    "openai-agents", "zstandard"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} CPUs ({cpu or platform.processor() or platform.machine()}), "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {', '.join(versions)}; 1-minute load average {load:.2f} at the end")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def main(argv: list[str] | None = None) -> None:
    """Play the conversation through the chosen peers and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--every", type=int, default=5, help="a handoff every N turns")
    parser.add_argument("--supervisor-turns", type=int, default=100,
                        help="turns langgraph-supervisor plays (its storage grows quadratically)")
    parser.add_argument("--peers", default=DEFAULT_PEERS,
                        help=f"comma-separated, from: {', '.join(catalogue(0))}")
    parser.add_argument("--quick", action="store_true", help="30 turns, the supervisor 20")
    parser.add_argument("--one-pass", action="store_true",
                        help="play every peer in one pass, the heavy ones between the fast ones (see HEAVY)")
    args = parser.parse_args(argv)
    if args.quick:
        args.turns, args.supervisor_turns = 30, 20
    if args.turns < BLOCK or args.every < 2 or args.supervisor_turns < BLOCK:
        parser.error(f"--turns and --supervisor-turns must be at least {BLOCK}, --every at least 2")
    known = catalogue(args.supervisor_turns)
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        parser.error(f"unknown peer(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}")
    passes = []
    for chosen in split_passes(keys, one_pass=args.one_pass):
        with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
            runs = play([known[k] for k in chosen], script(args.turns, args.every), Path(tmp))
        floor = next((r for k, r in zip(chosen, runs, strict=True) if k == "floor"), None)
        if passes and floor is not None:
            floor.name += ", beside the heavy peers"
        passes.append((runs, floor))
    print(f"{args.turns} turns, a handoff every {args.every} turns, zero-latency scripted model, "
          f"a SQLite file per peer, peers alternating turn by turn"
          + (", the heavy peers in a second pass with the floor again" if len(passes) > 1 else ""))
    print(table_of_passes(passes))
    print(f"\nmeasured on {machine()}")


if __name__ == "__main__":
    main()
