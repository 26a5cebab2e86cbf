"""Shared fixtures: no test ever reaches a real model or a LangSmith key."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tests.support.openai_stub import OpenAIStub

MODEL_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HANDOFF_MODEL", "HANDOFF_FALLBACK_MODEL",
             "HANDOFF_OFFLINE", "HANDOFF_MODEL_TIMEOUT", "HANDOFF_MODEL_RETRIES",
             "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "HANDOFF_DB",
             "HANDOFF_API_TOKENS", "HANDOFF_EMBEDDING_MODEL")


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


@pytest.fixture(scope="session", autouse=True)
def _semantic_triggers_off() -> Iterator[None]:
    """Tests written before the semantic triggers script each model's transfers, which a semantic trigger
    would pre-empt; the tests of semantic routing turn it on themselves. Session-wide, because module
    fixtures build graphs too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HANDOFF_SEMANTIC_TRIGGERS", "0")
        yield


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub()
    with stub.running():
        yield stub


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, the loop the service runs on."""
    return "asyncio"


class _SerdeWarnings(logging.Handler):
    """Collects LangGraph's "unregistered type" and "Blocked deserialization" log records."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@pytest.fixture(autouse=True)
def _checkpoints_need_no_registered_types() -> Iterator[None]:
    """No test's checkpoints hold a type LangGraph's serializer would warn about or block: the state
    keeps plain data (state/handoff.py), so any checkpointer loads it in strict mode."""
    handler = _SerdeWarnings()
    serde_log = logging.getLogger("langgraph.checkpoint.serde.jsonplus")
    serde_log.addHandler(handler)
    try:
        yield
    finally:
        serde_log.removeHandler(handler)
    assert not handler.seen, f"checkpoint serializer complained: {handler.seen[:3]}"
