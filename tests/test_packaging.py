"""The project installs one import namespace, ``handoff``, and lives beside other agent libraries."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FOLDERS = ("state", "agents", "graphs", "monitoring", "cli", "service")


def test_the_wheel_installs_exactly_one_top_level_package(tmp_path: Path) -> None:
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    finally:
        if not had_build:  # setuptools builds in the source tree; leave it as it was
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = tmp_path.glob("handoff_agents-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"handoff"}
    for folder in FOLDERS:
        assert any(n.startswith(f"handoff/{folder}/") for n in names), folder
    assert "handoff/service/static/index.html" in names
    assert any(n.startswith("handoff/graphs/") and n.endswith(".zdict") for n in names)


def test_no_module_imports_a_top_level_name_the_project_no_longer_installs() -> None:
    for path in [*ROOT.glob("*/**/*.py")]:
        if ".venv" in path.parts or path.parts[len(ROOT.parts)] not in (*FOLDERS, "tests", "benchmarks", "scripts"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert node.module.split(".")[0] not in FOLDERS, f"{path}: from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in FOLDERS, f"{path}: import {alias.name}"


def test_it_runs_beside_the_openai_agents_sdk_in_one_environment(tmp_path: Path) -> None:
    """openai-agents (a dev dependency) installs a top-level ``agents``; the project must not care."""
    env = {**os.environ, "HANDOFF_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": ""}
    both = subprocess.run([sys.executable, "-c", "import agents, handoff.agents.models as m; "
                           "print(agents.Agent.__module__, m.__name__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert both.returncode == 0, both.stderr[-2000:]
    assert both.stdout.split() == ["agents.agent", "handoff.agents.models"]
    run = subprocess.run([str(BIN / "handoff"), "run", "customer-service", "--json",
                          "--message", "My internet keeps dropping, account ACC-1001"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["active_agent"] == "technical_specialist"


def test_the_wheel_and_the_openai_agents_sdk_install_into_one_fresh_venv(tmp_path: Path) -> None:
    """Not the project's own environment: a new venv gets the built wheel (not an editable install) and
    openai-agents from the package registry, as a user's application would; both import, and
    ``handoff run`` works."""
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True,
                       timeout=300)
    finally:
        if not had_build:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = (tmp_path / "dist").glob("handoff_agents-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    sdk = f"openai-agents=={metadata.version('openai-agents')}"
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                "--disable-pip-version-check", str(wheel), sdk],
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HANDOFF_", "VIRTUAL_ENV"))}
    env.update(HANDOFF_DATA_DIR=str(tmp_path / "data"), PYTHONPATH="")
    both = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import agents, handoff.agents.models as m, handoff; "
                           "print(agents.Agent.__module__, m.__name__, m.__file__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert both.returncode == 0, both.stderr[-2000:]
    sdk_module, ours, path = both.stdout.split()
    assert (sdk_module, ours) == ("agents.agent", "handoff.agents.models")
    assert Path(path).is_relative_to(venv)  # the wheel's copy, not this checkout
    run = subprocess.run([str(venv / "bin" / "handoff"), "run", "customer-service", "--json",
                          "--message", "My internet keeps dropping, account ACC-1001"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["active_agent"] == "technical_specialist"
