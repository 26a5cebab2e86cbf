"""The four lab notebooks also run against a real OpenAI-compatible model that answers without tool calls.

nbmake runs them on the offline model (``make test`` collects ``notebooks/``); here each runs top to
bottom with ``OPENAI_BASE_URL`` pointing at the local stub, through the real ``ChatOpenAI`` client. A
notebook teaches the handoff machinery, so what it asserts must hold whatever the model decides.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.openai_stub import OpenAIStub, text_reply

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_against_a_model_that_never_calls_a_tool(
    path: Path, openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_stub.default = text_reply("Thanks for your message. I am looking into it for you.")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "stub-key")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    assert openai_stub.requests, "the notebook used the configured model, not the offline one"
