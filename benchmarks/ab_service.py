"""Two versions of the service under one load, side by side: what a change to service/ saves.

Run with ``python -m benchmarks.ab_service [--before REV] [--rounds 3] [--conversations 100 --turns 6]``.
Each round is one run of benchmarks/load.py with two workers on PostgreSQL: one serves
``handoff.service`` as it was at git revision ``--before`` (read with ``git show``, nothing in the
checkout changes), the other as it is in the working tree; everything else (graphs, agents,
libraries) is the working tree's for both. The load sends turn ``k`` of conversation ``c`` to
worker ``(c + k) mod 2``, so both get the same mix of turns at the same time, and each
worker's CPU per turn it answered is compared within the run. The two swap places every round.
Both workers share the machine, the database and the thread locks, so a change that only
shortens waits shows in the full load table, not here: ``--full`` prints it for both versions,
one whole default run each (both workers on ``--before``, then both on the working tree).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from importlib.util import spec_from_file_location
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "handoff.service"


class ServiceFrom(MetaPathFinder):
    """Imports ``handoff.service`` and its modules from another folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname == PACKAGE:
            return spec_from_file_location(fullname, self.folder / "__init__.py",
                                           submodule_search_locations=[str(self.folder)])
        if fullname.startswith(PACKAGE + "."):
            return PathFinder.find_spec(fullname, [str(self.folder)])
        return None


def worker(argv: list[str]) -> None:
    """``python -m handoff.service --port P --db URL``, optionally with the service from ``--service-dir``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--service-dir", type=Path, default=None)
    args, rest = parser.parse_known_args(argv)
    if args.service_dir is not None:
        sys.meta_path.insert(0, ServiceFrom(args.service_dir))
    from handoff.service.app import main

    sys.argv = ["handoff.service", *rest]
    main()


def snapshot(revision: str, into: Path) -> None:
    """service/ as it was at ``revision`` (its static files from the working tree)."""
    names = subprocess.run(["git", "ls-tree", "--name-only", revision, "service/"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            (into / Path(name).name).write_text(text)
    (into / "static").symlink_to(ROOT / "service" / "static")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.load import LoadConfig, run_load

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab_service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD", help="git revision of the service to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--full", action="store_true",
                        help="instead: the default load run (200 x 10, probe) on each version in turn")
    args = parser.parse_args(argv)
    if args.full:
        with tempfile.TemporaryDirectory(prefix="handoff-ab-") as tmp:
            snapshot(args.before, Path(tmp))
            for label, extra in ((args.before, ("--service-dir", tmp)), ("working tree", ())):
                report = run_load(LoadConfig(worker_module="benchmarks.ab_service", worker_args=(extra, extra)))
                print(f"service at {label}; load average before the run {report.machine['load_before']}")
                print(report.table())
                print(report.first_token_line())
                print(f"retried: {report.retry_reasons}", flush=True)
        return 0
    before_ms: list[float] = []
    after_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="handoff-ab-") as tmp:
        snapshot(args.before, Path(tmp))
        old = ("--service-dir", tmp)
        for r in range(args.rounds):
            order = (old, ()) if r % 2 == 0 else ((), old)
            report = run_load(LoadConfig(conversations=args.conversations, turns=args.turns, probe=0,
                                         worker_module="benchmarks.ab_service", worker_args=order))
            each = report.worker_cpu_ms_per_turn_each
            b, a = (each[0], each[1]) if r % 2 == 0 else (each[1], each[0])
            before_ms.append(b)
            after_ms.append(a)
            print(f"round {r + 1}: {args.before} {b:.1f} ms/turn, working tree {a:.1f} ms/turn "
                  f"({a / b - 1:+.0%}); {report.throughput:.1f} turns/s, p95 {report.p95_ms:.0f} ms, "
                  f"lost {report.lost}, corrupted {report.corrupted}, failed {report.errors}", flush=True)
            if not report.clean:
                print("  problems:", *report.problems[:5], sep="\n    ")
    b, a = statistics.median(before_ms), statistics.median(after_ms)
    print(f"median worker CPU per turn: {args.before} {b:.1f} ms, working tree {a:.1f} ms ({a / b - 1:+.0%})")
    return 0


if __name__ == "__main__":
    if "--port" in sys.argv:
        worker(sys.argv[1:])
    else:
        sys.exit(main())
