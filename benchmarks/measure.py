"""What the storage benchmark measures per peer, and the one table it prints.

Timings are compared only as ratios within one run: the peers alternate turn by turn, so
each 10-turn block of a peer is set against the floor's same 10 turns, played moments apart
on the same machine, and the ratio is given as the median over blocks with its 10th-90th
percentile spread.
"""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 10
"""Turns per block when setting a peer against the floor."""


@dataclass
class Run:
    """What one peer did on the conversation."""

    name: str
    db: Path
    turns: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    chars: list[list[int]] = field(default_factory=list)
    logical_at: dict[int, int] = field(default_factory=dict)
    file: int = 0
    wal: int = 0
    at_rest: int = 0
    page_size: int = 0


def logical_bytes(db: Path) -> int:
    """Bytes of every value in every table of a SQLite file: what it stores before pages and indexes
    (0 for a peer that keeps no file)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        total = 0
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            if columns:
                sizes = " + ".join(f'COALESCE(LENGTH(CAST("{c}" AS BLOB)), 0)' for c in columns)
                total += conn.execute(f'SELECT COALESCE(SUM({sizes}), 0) FROM "{table}"').fetchone()[0]
        return int(total)
    finally:
        conn.close()


def disk_bytes(db: Path) -> tuple[int, int]:
    """The SQLite file and its write-ahead log, as they are on disk (the WAL only while the peer is open)."""
    wal = db.with_name(db.name + "-wal")
    return (db.stat().st_size if db.exists() else 0), (wal.stat().st_size if wal.exists() else 0)


def page_size(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def _ms(seconds: float) -> float:
    return seconds * 1000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def block_ratios(run: list[float], floor: list[float]) -> list[float]:
    """Median of each 10-turn block of ``run`` over the floor's median of the same turns."""
    n = min(len(run), len(floor))
    return [statistics.median(run[i:i + BLOCK]) / statistics.median(floor[i:i + BLOCK])
            for i in range(0, n - BLOCK + 1, BLOCK)]


def ratio(run: list[float], floor: list[float]) -> str:
    """``3.1x (2.8-3.5)``: the median block ratio and its 10th-90th percentile spread."""
    ratios = block_ratios(run, floor)
    if not ratios:
        return "-"
    mid = statistics.median(ratios)
    return f"{mid:.2f}x ({_percentile(ratios, 0.1):.2f}-{_percentile(ratios, 0.9):.2f})"


def growth(run: Run) -> float:
    """Bytes stored in the second half of the run over the first half: 1.0 is linear, quadratic nears 3."""
    half, end = run.logical_at[run.turns // 2], run.logical_at[run.turns]
    return (end - half) / max(half, 1)


COLUMNS = (
    "peer", "turns", "stored MB logical", "on disk MB: file + WAL (file closed)", "page size", "growth 2nd/1st half",
    "ms/turn mean", "p95", "median first 10 -> last 10", "CPU ms/turn", "prompt chars/call (last turn)",
    "model calls/turn", "x floor ms/turn (p10-p90)", "x floor CPU",
)


def table_of_passes(passes: list[tuple[list[Run], Run | None]]) -> str:
    """The markdown table the benchmark prints, one row per peer, the passes one after another; each
    peer's ratios are to the floor of its own pass."""
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for runs, floor in passes:
        rows.extend(_row(run, floor) for run in runs)
    return "\n".join(rows)


def _row(run: Run, floor: Run | None) -> str:
    seconds = [_ms(s) for s in run.seconds]
    all_chars = [c for turn in run.chars for c in turn]
    cells = (
        run.name, str(run.turns),
        f"{run.logical_at[run.turns] / 1e6:.3f}",
        f"{run.file / 1e6:.2f} + {run.wal / 1e6:.2f} ({run.at_rest / 1e6:.2f})", str(run.page_size),
        f"{growth(run):.2f}",
        f"{statistics.mean(seconds):.1f}", f"{_percentile(seconds, 0.95):.1f}",
        f"{statistics.median(seconds[:BLOCK]):.1f} -> {statistics.median(seconds[-BLOCK:]):.1f}",
        f"{_ms(statistics.mean(run.cpu_seconds)):.1f}",
        f"{statistics.mean(all_chars or [0]):,.0f} ({statistics.mean(run.chars[-1] or [0]):,.0f})",
        f"{sum(run.calls) / run.turns:.2f}",
        ratio(run.seconds, floor.seconds) if floor else "-",
        ratio(run.cpu_seconds, floor.cpu_seconds) if floor else "-",
    )
    return "| " + " | ".join(cells) + " |"
