"""A real `langgraph dev` server for tests: the project's langgraph.json, served on a free port.

The server runs from a scratch folder holding a copy of the config with every path made
absolute: the dev server writes its `.langgraph_api` data and our log into its working
folder, and it must not do that inside the project (a reloading server watches it, and
other engineers' edits would restart it mid-test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.service_worker import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "langgraph.json"
READY_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15
# Whatever the developer's shell holds for models, tracing and the service must not leak into a
# test server: it runs offline unless the caller's ``env`` says otherwise.
SCRUBBED_ENV_PREFIXES = ("OPENAI_", "LANGSMITH_", "LANGCHAIN_", "HANDOFF_")
BASE_ENV = {
    "HANDOFF_OFFLINE": "1",
    "LANGSMITH_TRACING": "false",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
}


class LangGraphDevError(RuntimeError):
    """The dev server exited or never became ready; the message ends with its log."""


def _absolute(target: str, base: Path) -> str:
    """``./path.py:attr`` (relative to ``base``) -> ``/abs/path.py:attr``; ``module:attr`` unchanged."""
    path, sep, attribute = target.partition(":")
    if not (path.startswith(".") or path.endswith(".py") or "/" in path):
        return target  # a dotted module path, resolved via sys.path
    return str((base / path).resolve()) + sep + attribute


def portable_config(config: Path, graphs: Collection[str] | None = None) -> dict[str, Any]:
    """``config`` with its graphs, auth handler and local dependencies made absolute.

    ``graphs`` keeps only those graph names (all of them when None).
    """
    data = json.loads(config.read_text())
    base = config.resolve().parent
    selected = data["graphs"] if graphs is None else {n: data["graphs"][n] for n in graphs}
    data["graphs"] = {name: _absolute(target, base) for name, target in selected.items()}
    data["dependencies"] = [
        str((base / dep).resolve()) if dep.startswith(".") else dep for dep in data.get("dependencies", [])
    ]
    if isinstance(data.get("auth"), dict) and data["auth"].get("path"):
        data["auth"]["path"] = _absolute(data["auth"]["path"], base)
    return data


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else "(no log)"


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise LangGraphDevError(f"langgraph dev exited with {process.returncode}:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LangGraphDevError(f"langgraph dev not ready after {READY_TIMEOUT_S}s:\n{_log_tail(log_path)}")
        time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group: `langgraph dev` runs its API in child processes."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def langgraph_dev(
    env: Mapping[str, str] | None = None,
    *,
    config: Path | None = None,
    graphs: Collection[str] | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run `langgraph dev --no-browser --no-reload` on a free port of 127.0.0.1; yield its base URL.

    ``config`` is a langgraph.json (the project's by default); its relative paths are taken
    relative to its own folder. ``graphs`` serves only those of its graphs. ``env`` is laid
    over an offline environment (no model key, no tracing, no HANDOFF_* settings from the
    shell, the back office's data in the scratch folder). The server's output goes to
    ``log_path`` (a scratch file when None; keep it outside the project); read it after the
    block for everything the server logged. On exit the whole process group is stopped.
    """
    with tempfile.TemporaryDirectory(prefix="langgraph-dev-") as scratch:
        workdir = Path(scratch)
        config_file = workdir / "langgraph.json"
        config_file.write_text(json.dumps(portable_config(config or CONFIG, graphs)))
        log_file = log_path or workdir / "langgraph-dev.log"
        server_env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
        server_env.update(BASE_ENV, PYTHONPATH=str(ROOT), HANDOFF_DATA_DIR=str(workdir / "data"))
        server_env.update(env or {})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload",
                   "--host", "127.0.0.1", "--port", str(port), "--config", str(config_file)]
        with log_file.open("wb") as log:
            process = subprocess.Popen(command, cwd=workdir, env=server_env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _wait_until_ready(process, url, log_file)
                yield url
            finally:
                _stop(process)
