"""What each part of a turn costs in a real run: switch it off and compare, alternating.

Run with ``python -m benchmarks.ablation [--turns 300]``. The project's graph plays the storage
benchmark's conversation several ways at once, alternating turn by turn (benchmarks/storage.py
plays them), each set against the project as it ships (``graph.invoke`` on SQLite, a checkpoint
per step, compressed):

- the same graph on LangGraph's in-memory saver and store: what SQLite and the codec cost;
- on SQLite without compression: what the codec costs (and saves);
- with ``durability="exit"``, one checkpoint per turn instead of one per step: what the
  per-step checkpoints cost (not an option for the product, which resumes mid-turn);
- with LangGraph's default thread pool for a run instead of one worker (graphs/compiled.py);
- through ``HandoffSession.send`` (each step written before the next starts, then the turn's
  result read back), and the same stream without reading the result: what ``sync`` durability
  and the read-back cost;
- the floor (benchmarks/peers.py), for scale.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from benchmarks import peers
from benchmarks.conversation import reply_policy, script
from benchmarks.measure import Run, ratio
from benchmarks.storage import Peer, play
from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import STATE_TYPES, open_persistence
from handoff.graphs.session import HandoffSession


@contextmanager
def stream_only(db: Path) -> Iterator[peers.Side]:
    """What ``HandoffSession.send`` streams, without reading the turn's result back."""
    model = ScriptedChatModel(default=reply_policy(typed_payloads=True))
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        config = HandoffSession(graph, "bench").config

        def send(text: str) -> None:
            for _ in graph.stream({"messages": [HumanMessage(text)]}, config, **HandoffSession.STREAM):
                pass

        yield peers.Side(send, model)


@contextmanager
def default_workers(db: Path) -> Iterator[peers.Side]:
    """The project through ``graph.invoke`` with LangGraph's default thread pool for a run (a thread per
    save that finds none idle) instead of the one worker a handoff graph's sync runs use."""
    model = ScriptedChatModel(default=reply_policy(typed_payloads=True))
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        config = {**peers.THREAD, "max_concurrency": min(32, (os.cpu_count() or 1) + 4)}  # ThreadPoolExecutor's
        yield peers.Side(lambda text: graph.invoke({"messages": [HumanMessage(text)]}, config) and None, model)


VARIANTS = (
    Peer("project as shipped (graph.invoke, SQLite, zstd)", peers.project),
    Peer("in-memory saver and store", partial(peers.project, url="memory")),
    Peer("SQLite, uncompressed", partial(peers.project, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))),
    Peer("one checkpoint per turn (durability=exit)", partial(peers.project, durability="exit")),
    Peer("LangGraph's default run thread pool", default_workers),
    Peer("HandoffSession.send", peers.session),
    Peer("HandoffSession's stream, no read-back", stream_only),
    Peer("floor", peers.floor),
)


def checkpoints(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM handoff_checkpoints").fetchone()[0])


def table(runs: list[Run], counts: list[int]) -> str:
    reference = runs[0]
    rows = ["| variant | ms/turn median | CPU ms/turn mean | x as shipped, ms (p10-p90) | x as shipped, CPU "
            "| checkpoints/turn |", "|---|---|---|---|---|---|"]
    for run, count in zip(runs, counts, strict=True):
        rows.append(f"| {run.name} | {statistics.median(run.seconds) * 1000:.1f} "
                    f"| {statistics.mean(run.cpu_seconds) * 1000:.1f} | {ratio(run.seconds, reference.seconds)} "
                    f"| {ratio(run.cpu_seconds, reference.cpu_seconds)} | {count / run.turns:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="handoff-ablation-") as tmp:
        runs = play(list(VARIANTS), script(args.turns, 5), Path(tmp))
        counts = [checkpoints(run.db) for run in runs]
    print(f"{args.turns} turns, variants alternating turn by turn")
    print(table(runs, counts))


if __name__ == "__main__":
    main()
