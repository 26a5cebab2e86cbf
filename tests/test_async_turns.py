"""The async path: graphs run with ``astream``, model calls awaited on the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import PrivateAttr

from handoff.agents.customer_service.specialists import TECHNICAL
from handoff.agents.models import make_chat_model
from handoff.agents.offline import OfflineChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.session import HandoffSession
from handoff.service.embedding import HandoffService
from tests.helpers import compile_memory
from tests.support.openai_stub import OpenAIStub, text_reply, tool_reply

pytestmark = pytest.mark.anyio

HELLO = "Hi, this is Dana Reyes, account ACC-1001."
TURNS = 60
"""More turns at once than any thread pool here has threads (the loop's default executor has
min(32, cores + 4); anyio's has 40)."""


class GatedModel(OfflineChatModel):
    """The offline model's answers, given only on the async path and only once the gate opens."""

    _gate: asyncio.Event = PrivateAttr(default_factory=asyncio.Event)
    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model call took the sync path")

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            await self._gate.wait()
        finally:
            self._in_flight -= 1
        return super()._generate(messages, *args, **kwargs)


async def test_sixty_turns_wait_on_their_model_calls_at_once_without_a_thread_each() -> None:
    model = GatedModel()
    async with HandoffService.open("memory", model=model) as service:
        threads = [(await service.start_thread()).thread_id for _ in range(TURNS)]
        before = threading.active_count()
        turns = [asyncio.create_task(service.result(await service.send(t, HELLO))) for t in threads]
        async with asyncio.timeout(60):
            while model._in_flight < TURNS:
                await asyncio.sleep(0.05)
        assert model._peak == TURNS
        assert threading.active_count() - before < 16, "a waiting model call is holding a thread"
        model._gate.set()
        results = await asyncio.gather(*turns)
    assert [r.active_agent for r in results] == ["general_support"] * TURNS
    assert all(r.reply.startswith("[offline model]") for r in results)
    assert len({r.thread_id for r in results}) == TURNS


async def test_async_session_drives_the_real_openai_client(
    monkeypatch: pytest.MonkeyPatch, openai_stub: OpenAIStub
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("HANDOFF_MODEL", "stub-model")
    openai_stub.add(
        tool_reply("transfer_to_technical_specialist", {
            "reason": "connection drops", "summary": "drops nightly",
            "account_id": "ACC-1001", "symptoms": "drops every night"}, call_id="call_transfer"),
        text_reply("Technical here, checking your line."),
    )
    graph = compile_memory(build_customer_service_graph(model=make_chat_model()))
    session = HandoffSession(graph)
    result = await session.asend("my connection drops every night, ACC-1001")

    assert result.active_agent == TECHNICAL
    assert result.reply == "Technical here, checking your line."
    assert [e.kind for e in result.events][:1] == ["requested"]
    assert [r.outcome for r in result.handoffs] == ["accepted"]
    second = openai_stub.requests[1]
    assert "You diagnose connection problems" in second["messages"][0]["content"]
    assert "issue_refund" not in {t["function"]["name"] for t in second["tools"]}
    again = HandoffSession(graph, session.thread_id)
    assert (await again.aresult()).active_agent == TECHNICAL
