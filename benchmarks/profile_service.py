"""Where a service worker's CPU goes under load: the load benchmark with its workers under cProfile.

Run with ``python -m benchmarks.profile_service [--conversations 100 --turns 6 --top 40]``.
It runs benchmarks/load.py as usual (PostgreSQL, two workers, the offline model), but each
worker is ``python -m benchmarks.profile_service --port P --db URL``: the service exactly as
``python -m handoff.service`` serves it, with a cProfile on its event loop's thread (and one on
each thread it starts, e.g. the threadpool) switched on when the first turn arrives, so
thread creation and start-up are left out. Each worker also counts the SQL statements it sends
(psycopg cursors' ``execute`` and ``executemany``, by statement). At shutdown the workers write
their profiles; this process merges them and prints, per turn: own time by where the code lives,
the costliest functions, and the statements.

cProfile adds a cost to every Python call, so Python-heavy parts read larger than they run
(compare the load table's CPU ms/turn, printed too, which is the unprofiled-equivalent wall
of a profiled run); use it to find where to look, and measure a change with benchmarks/load.py.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.profile_turns import WAITING, ThreadProfiles, own_time_by_category

PROFILE_DIR = "HANDOFF_PROFILE_DIR"
"""Where a profiled worker writes its profile and statement counts (set by the harness)."""
TURN_SUFFIX = "/messages"


class StatementCounter:
    """Counts the statements psycopg's async cursors send, by the statement's first words."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        import psycopg

        counts = self.counts
        execute, executemany = psycopg.AsyncCursor.execute, psycopg.AsyncCursor.executemany

        async def counted_execute(cur: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            counts[_label(query)] += 1
            return await execute(cur, query, params, **kwargs)

        async def counted_executemany(cur: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            params_seq = list(params_seq)
            counts[f"{_label(query)} (x{len(params_seq)} rows, many)"] += 1
            return await executemany(cur, query, params_seq, **kwargs)

        psycopg.AsyncCursor.execute = counted_execute  # type: ignore[method-assign]
        psycopg.AsyncCursor.executemany = counted_executemany  # type: ignore[method-assign]


def _label(query: Any) -> str:
    text = query if isinstance(query, str) else getattr(query, "_obj", None) or repr(query)
    if not isinstance(text, str):
        text = repr(text)
    return " ".join(text.split())[:90]


def worker(argv: list[str]) -> None:
    """The service as ``python -m handoff.service`` runs it, profiled from its first turn."""
    import uvicorn

    from handoff.service.app import create_app
    from handoff.service.gc_policy import tune_for_serving

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    out = Path(os.environ[PROFILE_DIR])
    statements = StatementCounter()
    statements.install()
    profiler = cProfile.Profile(time.thread_time)
    state = {"on": False, "turns": 0}
    app = create_app(args.db)
    tune_for_serving()  # as the service's own main does

    async def profiled(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(TURN_SUFFIX):
            if not state["on"]:
                statements.counts.clear()
                state["on"] = True
                profiler.enable()
            state["turns"] += 1
        await app(scope, receive, send)

    import logging

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn raises the signal that stopped it again once it is done; ignored here, so the
    # worker lives on to write its profile
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    with ThreadProfiles() as threads:
        uvicorn.run(profiled, host=args.host, port=args.port, log_level="info")
    profiler.disable()
    stats = pstats.Stats(profiler, *threads.profiles) if state["on"] else None
    if stats is not None:
        stats.dump_stats(str(out / f"worker-{args.port}.prof"))
    (out / f"worker-{args.port}.json").write_text(json.dumps(
        {"turns": state["turns"], "statements": dict(statements.counts)}))


def report(out: Path, top: int) -> str:
    profiles = sorted(out.glob("worker-*.prof"))
    if not profiles:
        return "no profile was written"
    stats = pstats.Stats(*map(str, profiles))
    turns, statements = 0, Counter[str]()
    for path in out.glob("worker-*.json"):
        data = json.loads(path.read_text())
        turns += data["turns"]
        statements.update(data["statements"])
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_category = own_time_by_category(raw)
    blocked = by_category.pop("blocked (waiting, not working)", 0.0)
    total = sum(by_category.values())
    per = 1000 / max(turns, 1)
    lines = [f"{turns} turn requests profiled over {len(profiles)} workers; {total * per:.2f} ms of work a turn "
             f"(under cProfile), {blocked * per:.2f} ms blocked", "",
             "| where | share | ms/turn |", "|---|---|---|"]
    lines += [f"| {label} | {seconds / total:.0%} | {seconds * per:.2f} |"
              for label, seconds in by_category.most_common()]
    lines += ["", "| costliest functions (own time) | calls/turn | own ms/turn | cumulative ms/turn |",
              "|---|---|---|---|"]
    working = [(k, e) for k, e in raw.items() if not any(w in k[2] for w in WAITING)]
    for (file, line, name), entry in sorted(working, key=lambda kv: -kv[1][2])[:top]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "builtin"
        lines.append(f"| {name} ({where}) | {entry[1] * per / 1000:.1f} | {entry[2] * per:.3f} "
                     f"| {entry[3] * per:.3f} |")
    lines += ["", "| cumulative (project and service code) | calls/turn | cumulative ms/turn |", "|---|---|---|"]
    ours = [(k, e) for k, e in raw.items() if "/handoff" in k[0] or "/work/main/" in k[0] and "/.venv/" not in k[0]]
    for (file, line, name), entry in sorted(ours, key=lambda kv: -kv[1][3])[:top]:
        lines.append(f"| {name} ({Path(file).parent.name}/{Path(file).name}:{line}) | "
                     f"{entry[1] * per / 1000:.1f} | {entry[3] * per:.3f} |")
    lines += ["", f"SQL statements a turn: {sum(statements.values()) / max(turns, 1):.1f}", "",
              "| statement | per turn |", "|---|---|"]
    lines += [f"| `{label}` | {n / max(turns, 1):.2f} |" for label, n in statements.most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load benchmark on profiled workers and print where their CPU went."""
    from benchmarks.load import LoadConfig, run_load

    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=40, help="functions listed")
    parser.add_argument("--keep", type=Path, default=None, help="also copy the profiles into this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="handoff-profile-") as tmp:
        os.environ[PROFILE_DIR] = tmp
        load = run_load(LoadConfig(conversations=args.conversations, turns=args.turns, workers=args.workers,
                                   probe=0, worker_module="benchmarks.profile_service"))
        print(load.table())
        print()
        print(report(Path(tmp), args.top))
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in Path(tmp).iterdir():
                (args.keep / path.name).write_bytes(path.read_bytes())
    return 0 if load.clean else 1


if __name__ == "__main__":
    if "--port" in sys.argv:
        worker(sys.argv[1:])
    else:
        sys.exit(main())
