"""A process killed in the middle of a handoff resumes without paying twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_phase(phase: str, tmp_path: Path, when: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "tests.support.crash_refund", phase,
            f"sqlite:///{tmp_path / 'graph.sqlite'}", "thread-1", when]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("when", ["before_refund", "after_refund"])
def test_kill_between_gate_and_receiver_resumes_with_one_refund(tmp_path: Path, when: str) -> None:
    crashed = run_phase("crash", tmp_path, when)
    assert crashed.returncode == 137, crashed.stderr

    resumed = run_phase("resume", tmp_path, when)
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert data["next_before_resume"] == ["billing_expert"]
    assert len(data["refunds"]) == 1
    assert data["refunds"][0]["invoice_id"] == "INV-2002"
    assert data["reply"] == "Your refund is confirmed."
    assert data["active_agent"] == "billing_expert"
    assert data["handoffs"] == [["general_support", "billing_expert", "accepted"]]
