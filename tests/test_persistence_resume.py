"""A conversation survives SIGKILL: a new process resumes it from SQLite and from PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WORKER = "tests.support.resume_worker"


def _worker(phase: str, url: str, thread: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HANDOFF_DATA_DIR": str(data_dir)}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_DB", "LANGSMITH_TRACING"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", WORKER, phase, url, thread], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_then_kill(url: str, thread: str, data_dir: Path) -> dict[str, Any]:
    proc = _worker("start", url, thread, data_dir)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"start phase printed nothing: {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    return json.loads(line)


def _resume(url: str, thread: str, data_dir: Path) -> dict[str, Any]:
    proc = _worker("resume", url, thread, data_dir)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_conversation_resumes_with_agent_case_file_and_handoffs(backend: str, tmp_path: Path) -> None:
    url = "default" if backend == "sqlite" else POSTGRES_URL
    thread = f"resume-{backend}-{uuid.uuid4().hex}"

    started = _start_then_kill(url, thread, tmp_path / "data")
    if backend == "sqlite":
        assert (tmp_path / "data" / "handoff.sqlite").exists(), "the CLI's default file holds the thread"
    assert started["active_agent"] == TECHNICAL
    assert [(h["request"]["source"], h["request"]["target"], h["outcome"]) for h in started["handoffs"]] == [
        (GENERAL, TECHNICAL, "accepted")]
    assert started["case_file"]["account_id"] == "ACC-1001"
    assert started["case_file"]["identity_verified"] is True

    resumed = _resume(url, thread, tmp_path / "data")

    before = resumed["before"]
    assert before["active_agent"] == started["active_agent"]
    assert before["case_file"] == started["case_file"]
    assert before["handoffs"] == started["handoffs"]
    assert resumed["answered_by"] == TECHNICAL
    # The model that answers after the restart is told the facts learned before it ...
    system = resumed["prompt"][0]["content"]
    assert "Dana Reyes" in system
    # ... and the prompt still carries what the user said only in the first process's first turn.
    assert "555-0199" not in json.dumps(started["case_file"]) + json.dumps(started["handoffs"])
    assert "555-0199" in " ".join(m["content"] for m in resumed["prompt"])
    assert '"account_id": "ACC-1001"' in system
    assert "From General Support" in system
