"""Every Python example in the README and docs/ runs as written, offline, from a fresh folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLES = [(doc, n, code) for doc in DOCS for n, code in enumerate(BLOCK.findall(doc.read_text()), start=1)]


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize(("doc", "number", "code"), EXAMPLES,
                         ids=[f"{d.relative_to(ROOT)}#{n}" for d, n, _ in EXAMPLES])
def test_example_runs(doc: Path, number: int, code: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_", "HANDOFF_"))}
    env.update(HANDOFF_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{doc.name} example {number} failed:\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{doc.name} example {number} printed nothing"
