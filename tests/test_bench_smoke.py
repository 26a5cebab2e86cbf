"""The storage benchmark (benchmarks/storage.py) at a tiny scale: one table, every peer, every column."""

from __future__ import annotations

import re

import pytest

from benchmarks.measure import COLUMNS, block_ratios
from benchmarks.storage import DEFAULT_PEERS, catalogue, main, split_passes

NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_benchmark_prints_one_row_per_peer_with_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--turns", "10", "--supervisor-turns", "10"])
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert cells(table[0]) == list(COLUMNS)
    rows = [cells(line) for line in table[2:]]
    names = [catalogue(10)[key].name for key in DEFAULT_PEERS.split(",")]
    second_floor = catalogue(10)["floor"].name + ", beside the heavy peers"
    assert [row[0] for row in rows] == [*names, second_floor], "the heavy peers play a second pass, with the floor"
    assert dict(zip(COLUMNS, rows[-1], strict=True))["x floor ms/turn (p10-p90)"] == "1.00x (1.00-1.00)"
    rows = rows[:-1]
    for row in rows:
        assert len(row) == len(COLUMNS) and all(row), row
        by_column = dict(zip(COLUMNS, row, strict=True))
        assert by_column["turns"] == "10"
        for column in ("stored MB logical", "ms/turn mean", "p95", "CPU ms/turn", "model calls/turn"):
            assert NUMBER.match(by_column[column]), (row[0], column, by_column[column])
        assert float(by_column["stored MB logical"]) > 0
        assert re.match(r"^\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)$", by_column["x floor ms/turn (p10-p90)"]), row
    floor = dict(zip(COLUMNS, rows[names.index(catalogue(10)["floor"].name)], strict=True))
    assert floor["x floor ms/turn (p10-p90)"] == "1.00x (1.00-1.00)"
    assert floor["model calls/turn"] == "1.00"
    assert any(line.startswith("measured on ") for line in lines)


def test_the_heavy_peers_play_apart_unless_one_pass_is_asked() -> None:
    keys = DEFAULT_PEERS.split(",")
    assert split_passes(keys) == [["project", "session", "floor"], ["swarm", "supervisor", "agents-sdk", "floor"]]
    assert split_passes(keys, one_pass=True) == [keys]
    assert split_passes(["project", "floor"]) == [["project", "floor"]]
    assert split_passes(["swarm", "floor"]) == [["swarm", "floor"]]
    assert split_passes(["project", "swarm"]) == [["project", "swarm"]], "no floor: nothing to set them against"


def test_unknown_peers_are_refused_with_the_known_ones_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--peers", "project,nobody"])
    assert "unknown peer(s) nobody" in capsys.readouterr().err


def test_each_block_is_set_against_the_floors_same_turns() -> None:
    floor = [1.0] * 10 + [2.0] * 10
    peer = [3.0] * 10 + [4.0] * 10
    assert block_ratios(peer, floor) == [3.0, 2.0]
