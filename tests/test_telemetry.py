"""LangSmith telemetry: handoff metadata on runs, no handoff as an error, sensitive text masked.

The traced tests send real langsmith client traffic to a collector on
127.0.0.1 (tests/support/langsmith_collector.py); nothing leaves the machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest

from agents.back_office import BackOffice
from agents.customer_service import BILLING, GENERAL, TECHNICAL
from agents.offline import OfflineChatModel
from agents.scripted import ScriptedChatModel, calls, tool_call
from graphs.customer_service import build_customer_service_graph
from graphs.gate import GATE
from graphs.human import HUMAN
from graphs.masking import MASKED, Masker
from graphs.persistence import open_persistence
from graphs.session import HandoffSession
from graphs.telemetry import (
    HandoffTracer,
    TraceOptions,
    flush_traces,
    tracing_config,
    tracing_enabled,
)
from tests.helpers import compile_memory
from tests.support.langsmith_collector import (
    LangSmithCollector,
    reset_langsmith_caches,
    tracing_to_local_collector,
)

DANA = "Hi, this is Dana, account ACC-1001, postcode 90210, email dana@example.com."
CONVERSATION = (
    DANA,
    "My internet keeps dropping every evening.",
    "Thanks. Also I was charged twice on invoice INV-2002 and want a refund.",
    "This is useless, I want to speak to a real person.",
)
SENSITIVE = ("ACC-1001", "dana@example.com")


@pytest.fixture
def collector() -> Iterator[LangSmithCollector]:
    with tracing_to_local_collector() as server:
        yield server


def run_conversation(messages: tuple[str, ...], **session: Any) -> HandoffSession:
    """The customer-service graph on the offline model, one turn per message."""
    with open_persistence("memory") as persistence:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        chat = HandoffSession(graph, **session)
        for text in messages:
            chat.send(text)
    return chat


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("extra") or {}).get("metadata") or {}


def test_traced_conversation_has_handoff_metadata_no_errors_and_no_sensitive_text(
    collector: LangSmithCollector,
) -> None:
    session = run_conversation(CONVERSATION)
    flush_traces()

    runs = list(collector.runs().values())
    names = {r["name"] for r in runs}
    assert {GENERAL, TECHNICAL, BILLING, GATE, HUMAN, "customer-service"} <= names
    assert all(metadata(r).get("thread_id") == session.thread_id for r in runs)
    assert all(metadata(r).get("handoff_graph") == "customer-service" for r in runs)
    assert [r["name"] for r in runs if r.get("error")] == []

    gate_runs = [r for r in runs if r["name"] == GATE]
    records = session.records()
    assert sorted(metadata(r)["handoff_id"] for r in gate_runs) == sorted(h.request.id for h in records)
    for run in gate_runs:
        meta = metadata(run)
        record = next(h for h in records if h.request.id == meta["handoff_id"])
        assert (meta["handoff_source"], meta["handoff_target"], meta["handoff_outcome"]) == (
            record.source, record.target, record.outcome)
        assert {"handoff", f"handoff:{record.request.id}", f"outcome:{record.outcome}"} <= set(run["tags"])

    billing = next(r for r in runs if r["name"] == BILLING)
    to_billing = next(h for h in records if h.target == BILLING)
    assert metadata(billing)["active_agent"] == BILLING
    assert metadata(billing)["handoff_id"] == to_billing.request.id
    model_runs = [r for r in runs if r.get("run_type") == "llm" and metadata(r).get("active_agent") == BILLING]
    assert model_runs and all(metadata(r)["handoff_id"] == to_billing.request.id for r in model_runs)

    human = next(r for r in runs if r["name"] == HUMAN)
    assert metadata(human)["paused"] == "GraphInterrupt" and not human.get("error")

    payload = collector.payload()
    assert "[account]" in payload and "[email]" in payload
    for value in SENSITIVE:
        assert value not in payload


def test_masking_is_on_by_default_only_for_customer_service(collector: LangSmithCollector) -> None:
    run_conversation((DANA,), trace=TraceOptions(mask=False))
    flush_traces()

    assert "ACC-1001" in collector.payload()  # the collector does see raw text when masking is off
    assert TraceOptions().masks("customer-service") and not TraceOptions().masks("sales")
    assert TraceOptions(hide_io=True, mask=False).masks("sales")


def test_rejected_and_failed_handoffs_are_recorded_without_error_runs(collector: LangSmithCollector) -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", {"reason": "line drops"})),
                  calls(tool_call("transfer_to_billing_expert", {"reason": "refund", "account_id": "ACC-9999"})),
                  "I will help you myself."],
    })
    session = HandoffSession(compile_memory(build_customer_service_graph(model=model, office=BackOffice())))
    session.send("my line drops and I want a refund")
    flush_traces()

    gate_runs = [r for r in collector.runs().values() if r["name"] == GATE]
    assert sorted(metadata(r)["handoff_outcome"] for r in gate_runs) == ["failed", "rejected"]
    assert sorted(metadata(r)["handoff_rejection"] for r in gate_runs) == ["init_failed", "invalid_payload"]
    assert [r for r in collector.runs().values() if r.get("error")] == []
    assert "ACC-9999" not in collector.payload()  # not even in the scripted model's serialized form


def test_tracing_is_off_again_after_the_collector_is_gone() -> None:
    with tracing_to_local_collector():
        assert tracing_enabled()
        assert "callbacks" in tracing_config(graph_name="sales", thread_id="t-1")

    assert not tracing_enabled()
    assert "LANGSMITH_ENDPOINT" not in os.environ and "LANGSMITH_TRACING" not in os.environ


def test_no_tracer_is_attached_when_tracing_is_off() -> None:
    reset_langsmith_caches()
    config = tracing_config(graph_name="customer-service", thread_id="t-1")

    assert "callbacks" not in config
    assert config["metadata"] == {"handoff_graph": "customer-service", "thread_id": "t-1"}
    assert {"graph:customer-service", "thread:t-1"} <= set(config["tags"])


def test_the_checkpoint_metadata_names_the_graph() -> None:
    session = HandoffSession(compile_memory(build_customer_service_graph(model=OfflineChatModel())))
    session.send("hello")

    history = list(session.graph.get_state_history(session.state_config))
    assert {h.metadata.get("handoff_graph") for h in history} == {"customer-service"}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("account ACC-1001 please", "account [account] please"),
        ("write to dana.reyes+cs@example.co.uk", "write to [email]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [card] exp 12/29"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("order 1234 5678 9012 3456", "order 1234 5678 9012 3456"),  # not a card: fails the Luhn check
        ("CVV: 123", "CVV: [code]"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN [iban]"),
        ("account number 12345678", "account number [account]"),
        ("invoice INV-2002, ticket TKT-5001", "invoice INV-2002, ticket TKT-5001"),
    ],
)
def test_masker_masks_sensitive_text_and_keeps_the_rest(text: str, masked: str) -> None:
    assert Masker().text(text) == masked


def test_masker_masks_values_under_sensitive_keys_and_api_keys() -> None:
    data = {"case_file": {"account_id": "whatever-format", "email": ["x@y.z"], "region": "west"},
            "note": "key sk-" + "a1B2" * 10}

    masked = Masker()(data)

    assert masked["case_file"] == {"account_id": MASKED, "email": [MASKED], "region": "west"}
    assert "a1B2a1B2" not in masked["note"]


def test_a_tracer_copied_for_inherited_metadata_keeps_its_masker() -> None:
    masker = Masker()
    tracer = HandoffTracer(client=cast(Any, object()), masker=masker)  # no client is needed to copy it

    copy = tracer.copy_with_metadata_defaults(metadata={"ls_agent_type": "handoff"})

    assert isinstance(copy, HandoffTracer) and copy.masker is masker
