"""LangSmith telemetry: handoff metadata on runs, no handoff as an error, sensitive text masked.

The traced tests send real langsmith client traffic to a collector on
127.0.0.1 (tests/support/langsmith_collector.py); nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, cast

import pytest
from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.langchain import LangChainTracer

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL, SupportCaseFile
from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.graphs.customer_service import SENSITIVITY, build_customer_service_graph
from handoff.graphs.gate import GATE
from handoff.graphs.human import HUMAN
from handoff.graphs.masking import MASKED, Masker, Sensitivity
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession
from handoff.graphs.telemetry import (
    TRACE_KEY,
    HandoffTracer,
    TraceOptions,
    flush_traces,
    run_config,
    shared_masking_client,
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
SENSITIVE = ("ACC-1001", "dana@example.com", "Dana", "Reyes", "90210")


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
    graph = build_customer_service_graph(model=OfflineChatModel()).compile()
    with tracing_to_local_collector():
        assert tracing_enabled()
        assert _handoff_tracers(run_config(graph, None))

    assert not tracing_enabled()
    assert "callbacks" not in run_config(graph, None)
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


# ------------------------------------------------------------ run_config: one tracer, whoever calls


def _handoff_tracers(config: dict[str, Any]) -> list[HandoffTracer]:
    return [h for h in config.get("callbacks") or [] if isinstance(h, HandoffTracer)]


@pytest.fixture
def support_graph() -> Any:
    return build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile()


def test_run_config_adds_graph_and_thread_without_changing_the_callers_config(support_graph: Any) -> None:
    reset_langsmith_caches()
    given = {"configurable": {"thread_id": "t-9"}, "tags": ["mine"], "metadata": {"user": "u1"}}

    config = run_config(support_graph, given)

    assert config["metadata"] == {"handoff_graph": "customer-service", "thread_id": "t-9", "user": "u1"}
    assert config["tags"] == ["mine", "graph:customer-service", "thread:t-9"]
    assert config["run_name"] == "customer-service"
    assert "callbacks" not in config  # tracing is off
    assert given == {"configurable": {"thread_id": "t-9"}, "tags": ["mine"], "metadata": {"user": "u1"}}


def test_run_config_adds_one_masking_handoff_tracer_when_tracing_is_on(
    collector: LangSmithCollector, support_graph: Any
) -> None:
    config = run_config(support_graph, {"configurable": {"thread_id": "t-1"}})

    [tracer] = config["callbacks"]
    assert isinstance(tracer, HandoffTracer) and tracer.masker is SENSITIVITY.masker()
    assert tracer.client is shared_masking_client(sensitivity=SENSITIVITY)


def test_run_config_replaces_a_callers_plain_tracer_and_keeps_a_handoff_tracer(
    collector: LangSmithCollector, support_graph: Any
) -> None:
    handler = BaseCallbackHandler()
    plain = LangChainTracer(project_name="their-project")

    [kept, replaced] = run_config(support_graph, {"callbacks": [handler, plain]})["callbacks"]

    assert kept is handler
    assert isinstance(replaced, HandoffTracer) and replaced.project_name == "their-project"
    assert replaced.client is not plain.client and replaced.masker is not None
    assert replaced.run_map is plain.run_map  # same parent runs, so nothing is traced twice
    own = HandoffTracer(client=shared_masking_client())
    assert run_config(support_graph, {"callbacks": [own]})["callbacks"] == [own]


def test_run_config_leaves_a_run_inside_a_traced_run_to_its_tracer(
    collector: LangSmithCollector, support_graph: Any
) -> None:
    manager = CallbackManager(handlers=[LangChainTracer()])
    assert run_config(support_graph, {"callbacks": manager})["callbacks"] is manager

    token = var_child_runnable_config.set({"callbacks": manager})
    try:
        assert "callbacks" not in run_config(support_graph, None)  # LangChain would merge in a second one
    finally:
        var_child_runnable_config.reset(token)


def test_a_run_can_turn_masking_off_in_its_configurable(collector: LangSmithCollector, support_graph: Any) -> None:
    config = run_config(support_graph, {"configurable": {TRACE_KEY: {"mask": False}}})

    [tracer] = _handoff_tracers(config)
    assert tracer.masker is None and tracer.client is not shared_masking_client(sensitivity=SENSITIVITY)


def test_a_sessions_config_is_plain_data_even_with_tracing_on(collector: LangSmithCollector) -> None:
    config = tracing_config(graph_name="customer-service", thread_id="t-1", options=TraceOptions(mask=False))

    assert json.loads(json.dumps(config)) == config
    assert config["configurable"] == {"thread_id": "t-1", TRACE_KEY: TraceOptions(mask=False).model_dump(mode="json")}
    assert TraceOptions.of_run(config["configurable"]) == TraceOptions(mask=False)


# ------------------------------------------------------------ what a domain declares sensitive


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Hi, this is Dana, postcode 90210.", "Hi, this is [name], postcode [postcode]."),
        ("ACC-1001: Dana Reyes, plan Fiber 500", "[account]: [name], plan Fiber 500"),
        ("my name is Jo Miller, zip code is 12345", "my name is [name], zip code is [postcode]"),
        ('{"postcode": "60601", "region": "central"}', '{"postcode": "[postcode]", "region": "central"}'),
        ('{\\"postcode\\": \\"12345\\"}', '{\\"postcode\\": \\"[masked]\\"}'),
        ("{'customer_name': 'Jo Miller'}", "{'customer_name': '[masked]'}"),
        ("write to dana@example.com", "write to [email]"),
        ("This is useless, invoice 10001 of 2024", "This is useless, invoice [postcode] of 2024"),
        ("order 12345 for Danaher", "order 12345 for Danaher"),  # no context, not a known value
    ],
)
def test_customer_service_masks_names_and_postcodes(text: str, masked: str) -> None:
    assert SENSITIVITY.masker().text(text) == masked


def test_customer_service_masks_the_identity_secret_as_a_tool_argument() -> None:
    call = {"tool_calls": [{"name": "verify_identity", "args": {"account_id": "x", "postcode": "55555"}}],
            "case_file": {"customer_name": "Jo Miller", "region": "west"}}

    masked = SENSITIVITY.masker()(call)

    assert masked["tool_calls"][0]["args"] == {"account_id": MASKED, "postcode": MASKED}
    assert masked["case_file"] == {"customer_name": MASKED, "region": "west"}


def test_a_sensitivity_names_only_fields_its_case_file_has() -> None:
    with pytest.raises(ValueError, match="no field"):
        Sensitivity.for_case_file(SupportCaseFile, ("customer_nmae",))
    assert "customer_name" in Sensitivity.for_case_file(SupportCaseFile, ("customer_name",)).keys


def test_a_graph_that_declares_a_sensitivity_is_masked_by_default() -> None:
    assert build_customer_service_graph(model=OfflineChatModel()).sensitivity is SENSITIVITY
    assert TraceOptions().masks("any-graph", declared=True)
    assert not TraceOptions(mask=False).masks("any-graph", declared=True)


def test_errors_metadata_and_inputs_are_masked_too(collector: LangSmithCollector) -> None:
    def fail(text: str) -> str:
        raise LookupError(f"no account for {text}")

    tracer = HandoffTracer(client=shared_masking_client(sensitivity=SENSITIVITY), masker=SENSITIVITY.masker())
    with pytest.raises(LookupError):
        RunnableLambda(fail).invoke("Dana Reyes, postcode 90210", {
            "callbacks": [tracer], "metadata": {"note": "card 4111 1111 1111 1111 of ACC-1001"}})
    flush_traces()

    [run] = collector.runs().values()
    assert "LookupError('no account for [name], postcode [postcode]')" in run["error"]
    assert metadata(run)["note"] == "card [card] of [account]"
    assert [v for v in ("Dana", "Reyes", "90210", "4111", "ACC-1001") if v in collector.payload()] == []


def test_a_thread_id_made_of_sensitive_text_is_masked_in_tags_too(collector: LangSmithCollector) -> None:
    graph = compile_memory(build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()))

    graph.invoke({"messages": [HumanMessage("hello")]}, {"configurable": {"thread_id": "dana@example.com"}})
    flush_traces()

    assert all("thread:[email]" in run["tags"] for run in collector.runs().values())
    assert "dana@example.com" not in collector.payload()
