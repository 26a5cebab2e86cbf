"""Notebooks are stored clean: no outputs, no execution counts, the python3 kernel.

CI runs them (``pytest --nbmake notebooks``); what is committed is only the
source, so a stale output can never pass for a result.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
CLEAR_COMMAND = (
    ".venv/bin/python -c \"import nbformat, sys; p = sys.argv[1]; nb = nbformat.read(p, 4); "
    "[c.update(outputs=[], execution_count=None) for c in nb.cells if c.cell_type == 'code']; "
    "nbformat.write(nb, p)\""
)


def test_the_lab_notebooks_are_there() -> None:
    names = {p.name for p in ALL}
    for lab in ("01_basic_handoff.ipynb", "02_context_preservation.ipynb", "03_multi_level_handoff.ipynb"):
        assert lab in names, f"notebooks/{lab} is missing"


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        f"cell {i} ({'outputs' if cell.get('outputs') else 'execution_count'})"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name} is stored with outputs in {', '.join(dirty)}; clear them before committing "
        f"(Jupyter: Edit > Clear Outputs of All Cells, or: {CLEAR_COMMAND} notebooks/{path.name})"
    )
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state; clear it before committing"


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_uses_the_python3_kernel(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name} must name the python3 kernel so CI runs it in the project's environment"
    )
