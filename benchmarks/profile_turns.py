"""Where a turn's CPU time goes: the storage benchmark's conversation under cProfile, in every thread.

Run with ``python -m benchmarks.profile_turns [--peer project|session|floor] [--turns 300]``.
After 20 warm-up turns it profiles the next ``--turns`` turns of one peer, in the main thread
and in the worker threads LangGraph starts for each run (where it writes checkpoints), timing
each thread by its own CPU clock, so a thread waiting for a lock, the GIL or work costs
nothing. It prints each function's own time summed by where the function lives (SQLite's C
calls, the codec, msgpack, LangGraph's loop and its checkpointer, langchain-core, pydantic,
this project's code, the scripted model), a builtin such as ``isinstance`` charged to whoever
called it; then the costliest functions, then the database calls a turn makes.

cProfile adds a cost to every Python call, so Python-heavy parts read larger than they run
(a turn reads about three times its real CPU time); C calls such as SQLite's and zstd's read
about right. For what a part costs in a real run, switch it off and compare, alternating
(``python -m benchmarks.ablation``); the storage benchmark's table says what a change gained.
A sampling profiler in Python was tried and dropped: it can only charge a thread's CPU to where
the thread is when looked at, and worker threads that write a checkpoint in a burst and park
then charge their work to the parking.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import peers
from benchmarks.conversation import script

WARM_UP = 20

ROOT = str(Path(__file__).resolve().parents[1]) + "/"
"""The repository: the project's own code, unless under its virtual environment."""

WAITING = ("acquire' of '_thread.lock", "get' of '_queue.SimpleQueue", "acquire' of '_thread.RLock")
"""Builtins in which a thread blocks rather than works."""

CATEGORIES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("blocked (waiting, not working)", lambda file, name: any(w in name for w in WAITING)),
    ("SQLite (C calls)", lambda file, name: "sqlite3" in name),
    ("codec: zstd / zlib", lambda file, name: any(c in name for c in ("zstandard", "zlib.", "Decompress"))),
    ("msgpack and LangGraph's serializer", lambda file, name: "ormsgpack" in name or "checkpoint/serde" in file),
    ("LangGraph checkpointer and store (Python)",
     lambda file, name: any(p in file for p in ("checkpoint/sqlite", "langgraph/store", "checkpoint/base"))),
    ("LangGraph loop (pregel, channels, graph)", lambda file, name: "langgraph/" in file),
    ("langchain-core", lambda file, name: "langchain_core" in file),
    ("pydantic", lambda file, name: "pydantic" in file or "pydantic_core" in name),
    ("embeddings (semantic triggers)", lambda file, name: any(p in file for p in (
        "agents/embeddings", "wordllama", "numpy")) or "tokenizers" in name or "numpy" in name),
    ("scripted model and benchmark", lambda file, name: "agents/scripted" in file or "/benchmarks/" in file),
    ("this project", lambda file, name: file.startswith(ROOT) and "/.venv/" not in file),
    ("threads, locks, executors", lambda file, name: any(p in file for p in ("threading", "concurrent/", "queue"))
     or "lock" in name),
    ("copy, uuid, json, other stdlib", lambda file, name: "python3." in file and "site-packages" not in file),
)


def category(file: str, name: str) -> str:
    return next((label for label, test in CATEGORIES if test(file, name)), "other")


def own_time_by_category(raw: dict[Any, Any]) -> Counter[str]:
    """Each function's own time under its category; a builtin of no category of its own is
    charged to its callers' categories, in proportion to the time each caller spent in it."""
    out: Counter[str] = Counter()
    for (file, _, name), (_, _, own, _, callers) in raw.items():
        label = category(file, name)
        if file == "~" and label == "other" and callers:
            for (caller_file, _, caller_name), caller_entry in callers.items():
                out[category(caller_file, caller_name)] += caller_entry[2]
        else:
            out[label] += own
    return out


class ThreadProfiles:
    """A cProfile per thread started while active: LangGraph writes checkpoints on worker threads."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._run = threading.Thread.run

    def __enter__(self) -> ThreadProfiles:
        profiles, run = self.profiles, self._run

        def profiled_run(thread: threading.Thread) -> None:
            profile = cProfile.Profile(time.thread_time)
            profiles.append(profile)
            profile.enable()
            try:
                run(thread)
            finally:
                profile.disable()

        threading.Thread.run = profiled_run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.run = self._run  # type: ignore[method-assign]


OPENERS = {"project": peers.project, "session": peers.session, "floor": peers.floor}


def profile(peer: str, turns: int) -> tuple[pstats.Stats, Counter[str]]:
    """Play ``turns`` turns of ``peer`` under cProfile, counting the database calls the graph made."""
    opener = OPENERS[peer]
    lines = script(WARM_UP + turns, 5)
    counts: Counter[str] = Counter()
    profiler = cProfile.Profile(time.thread_time)
    with tempfile.TemporaryDirectory(prefix="handoff-profile-") as tmp, opener(Path(tmp) / "p.sqlite") as side:
        for line in lines[:WARM_UP]:
            side.send(line.text)
            side.drain()
        with ThreadProfiles() as threads:
            profiler.enable()
            for line in lines[WARM_UP:]:
                side.send(line.text)
                side.drain()
            profiler.disable()
    stats = pstats.Stats(profiler, *threads.profiles)
    for (file, _, name), (_, calls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        if file.endswith(("checkpoint/sqlite/__init__.py", "store/sqlite/base.py")) and name in (
                "put", "put_writes", "get_tuple", "batch"):
            counts[f"{Path(file).parent.name}.{name}"] += calls
    return stats, counts


def report(stats: pstats.Stats, counts: Counter[str], turns: int) -> str:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_category = own_time_by_category(raw)
    blocked = by_category.pop(CATEGORIES[0][0], 0.0)
    total = sum(by_category.values())
    out = [f"{turns} turns profiled; {total / turns * 1000:.2f} ms of work a turn across threads (under "
           f"cProfile), and {blocked / turns * 1000:.2f} ms blocked", "",
           "| where | share | ms/turn |", "|---|---|---|"]
    out += [f"| {label} | {seconds / total:.0%} | {seconds / turns * 1000:.2f} |"
            for label, seconds in by_category.most_common()]
    out += ["", "| costliest functions (own time) | calls/turn | ms/turn |", "|---|---|---|"]
    working = [(key, entry) for key, entry in raw.items() if not any(w in key[2] for w in WAITING)]
    for (file, line, name), entry in sorted(working, key=lambda kv: -kv[1][2])[:20]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "builtin"
        out.append(f"| {name} ({where}) | {entry[1] / turns:.1f} | {entry[2] / turns * 1000:.3f} |")
    out += ["", "database calls a turn: " + ", ".join(f"{k} {v / turns:.1f}" for k, v in sorted(counts.items()))]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=("project", "session", "floor"), default="project")
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"peer: {args.peer}")
    print(report(*profile(args.peer, args.turns), args.turns))


if __name__ == "__main__":
    main()
