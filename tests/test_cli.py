"""The `handoff` command line: output contracts and clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from handoff.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_graphs_lists_customer_service() -> None:
    result = invoke("graphs")
    assert result.exit_code == 0
    assert "customer-service" in result.stdout


def test_run_json_offline_has_the_documented_fields() -> None:
    result = invoke("run", "customer-service", "--message",
                    "My internet keeps dropping, account ACC-1001", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"thread_id", "reply", "active_agent", "handoffs", "case_file"}
    assert data["reply"].startswith("[offline model]")
    assert data["active_agent"] == "technical_specialist"
    handoff = data["handoffs"][0]
    assert handoff["request"]["source"] == "general_support"
    assert handoff["request"]["trigger"] == "tool"
    assert handoff["outcome"] == "accepted"
    assert handoff["init_result"]["action"] == "check_region_status"


def test_thread_resumes_from_the_sqlite_default() -> None:
    first = json.loads(invoke("run", "customer-service", "-m", "internet drops, ACC-1001", "--json").stdout)
    second = invoke("run", "customer-service", "-m", "I was charged twice, refund please",
                    "--thread", first["thread_id"], "--json")
    data = json.loads(second.stdout)
    assert data["thread_id"] == first["thread_id"]
    assert [h["request"]["target"] for h in data["handoffs"]] == ["technical_specialist", "billing_expert"]
    assert data["case_file"]["account_id"] == "ACC-1001"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["run", "no-such-graph", "-m", "hi"], {}, "unknown graph 'no-such-graph'"),
        (["run", "customer-service", "-m", "   "], {}, "--message is empty"),
        (["run", "customer-service", "-m", "hi"], {"OPENAI_BASE_URL": "not a url"}, "OPENAI_BASE_URL"),
        (["run", "customer-service", "-m", "hi"], {"HANDOFF_MODEL_TIMEOUT": "soon"}, "HANDOFF_MODEL_TIMEOUT"),
        (["run", "customer-service", "-m", "hi", "--db", "postgres.txt"], {}, "unrecognised persistence URL"),
    ],
)
def test_bad_input_gives_a_clear_error_and_exit_code_2(
    args: list[str], env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = invoke(*args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_demo_shows_general_to_technical_to_billing_on_the_offline_model() -> None:
    result = invoke("demo", "customer-service")
    assert result.exit_code == 0, result.output
    assert "offline model" in result.stdout
    assert "general_support -> technical_specialist -> billing_expert" in result.stdout
