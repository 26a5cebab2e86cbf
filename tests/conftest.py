"""Shared fixtures: no test ever reaches a real model or a LangSmith key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.openai_stub import OpenAIStub

MODEL_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_MODEL", "HANDOFF_FALLBACK_MODEL",
             "HANDOFF_OFFLINE", "HANDOFF_MODEL_TIMEOUT", "HANDOFF_MODEL_RETRIES",
             "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "HANDOFF_DB",
             "HANDOFF_API_TOKENS")


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HANDOFF_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub()
    with stub.running():
        yield stub
