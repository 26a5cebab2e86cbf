"""Shared fixtures: no test ever reaches a real model or a LangSmith key."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.openai_stub import OpenAIStub

MODEL_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_MODEL", "HANDOFF_FALLBACK_MODEL",
             "HANDOFF_OFFLINE", "HANDOFF_MODEL_TIMEOUT", "HANDOFF_MODEL_RETRIES",
             "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "HANDOFF_DB",
             "HANDOFF_API_TOKENS")


@pytest.fixture
def _tracing_left_as_found() -> Iterator[None]:
    """A test that turns LangSmith tracing on must turn it off again (later tests and the notebooks
    run offline). Set up before ``monkeypatch``, so it checks after monkeypatch's own undo."""
    before = os.environ.get("LANGSMITH_TRACING")
    yield
    assert os.environ.get("LANGSMITH_TRACING") == before, "the test left LANGSMITH_TRACING changed"


@pytest.fixture(autouse=True)
def _offline_environment(_tracing_left_as_found: None, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HANDOFF_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub()
    with stub.running():
        yield stub


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, the loop the service runs on."""
    return "asyncio"
