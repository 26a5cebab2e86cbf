"""The real langchain-openai client against a local OpenAI-compatible stub."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from handoff.agents.customer_service.specialists import TECHNICAL
from handoff.agents.models import make_chat_model
from handoff.cli.main import app
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.session import HandoffSession
from tests.helpers import compile_memory
from tests.support.openai_stub import OpenAIStub, Status, text_reply, tool_reply

TRANSFER = tool_reply("transfer_to_technical_specialist", {
    "reason": "connection drops", "summary": "drops nightly",
    "account_id": "ACC-1001", "symptoms": "drops every night"}, call_id="call_transfer")


@pytest.fixture
def real_model_env(monkeypatch: pytest.MonkeyPatch, openai_stub: OpenAIStub) -> OpenAIStub:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("HANDOFF_MODEL", "stub-model")
    return openai_stub


def test_receiver_request_carries_its_instructions_and_the_transfer_result(real_model_env: OpenAIStub) -> None:
    stub = real_model_env
    stub.add(TRANSFER, text_reply("Technical here, checking your line."))
    graph = compile_memory(build_customer_service_graph(model=make_chat_model()))
    result = HandoffSession(graph).send("my connection drops every night, ACC-1001")

    assert result.active_agent == TECHNICAL
    assert result.reply == "Technical here, checking your line."
    assert len(stub.requests) == 2
    first, second = stub.requests
    assert first["model"] == "stub-model"
    assert "transfer_to_technical_specialist" in {t["function"]["name"] for t in first["tools"]}
    system = second["messages"][0]
    assert system["role"] == "system" and "You diagnose connection problems" in system["content"]
    tool_results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_results] == ["call_transfer"]
    assert "Handoff accepted" in tool_results[0]["content"]
    assert "run_diagnostics" in {t["function"]["name"] for t in second["tools"]}
    assert "issue_refund" not in {t["function"]["name"] for t in second["tools"]}


def test_server_error_then_success_is_recovered_by_the_retry_policy(real_model_env: OpenAIStub) -> None:
    stub = real_model_env
    stub.add(Status(500), text_reply("Hello, how can I help?"))
    graph = compile_memory(build_customer_service_graph(model=make_chat_model()))
    result = HandoffSession(graph).send("hello")

    assert result.reply == "Hello, how can I help?"
    assert len(stub.requests) == 2


def test_cli_run_json_against_an_openai_compatible_server(real_model_env: OpenAIStub) -> None:
    real_model_env.add(TRANSFER, text_reply("Technical specialist here."))
    out = CliRunner().invoke(app, ["run", "customer-service", "--message", "line drops, ACC-1001",
                                   "--json", "--db", "memory"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["reply"] == "Technical specialist here."
    assert data["active_agent"] == TECHNICAL
    assert data["handoffs"][0]["outcome"] == "accepted"
    assert data["case_file"]["account_id"] == "ACC-1001"
