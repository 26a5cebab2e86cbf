"""The gate's steps one by one: validate, decide (payload + initialisation), route."""

from __future__ import annotations

import pytest

from handoff.agents.customer_service.specialists import (
    BILLING,
    GENERAL,
    TECHNICAL,
    SupportCaseFile,
    customer_service_agents,
)
from handoff.graphs.gate import GatePolicy, decide, route, validate
from handoff.state import HandoffRecord, HandoffRejection, HandoffRequest

SPECS = {s.name: s for s in customer_service_agents()}
GOOD = {"reason": "line drops", "account_id": "ACC-1001", "symptoms": "drops nightly"}


def request(target: str = TECHNICAL, payload: dict | None = None, source: str = GENERAL) -> HandoffRequest:
    return HandoffRequest(source=source, target=target, reason="because", trigger="tool",
                          payload=GOOD if payload is None else payload)


def accepted(source: str, target: str) -> HandoffRecord:
    return HandoffRecord(request=request(target, source=source), outcome="accepted", routed_to=target,
                         latency_ms=0)


@pytest.mark.parametrize(
    ("req", "state", "code"),
    [
        (request(), {"hops": 3}, "hop_budget_spent"),
        (request("legal"), {}, "unknown_target"),
        (request(GENERAL, source=GENERAL), {}, "edge_not_allowed"),
        (request(payload={"reason": "x"}), {}, "invalid_payload"),
        (request(BILLING, {"reason": "refund it", "account_id": "ACC-1001", "wants_refund": True}), {},
         "precondition_failed"),
        (request(), {"handoffs": [accepted(GENERAL, TECHNICAL), accepted(TECHNICAL, GENERAL),
                                  accepted(GENERAL, TECHNICAL)]}, "ping_pong"),
    ],
)
def test_validate_names_each_rejection(req: HandoffRequest, state: dict, code: str) -> None:
    payload, rejection = validate(req, specs=SPECS, state=state, policy=GatePolicy())
    assert payload is None and rejection is not None and rejection.code == code
    assert rejection.message


def test_validate_returns_the_receivers_typed_payload() -> None:
    payload, rejection = validate(request(), specs=SPECS, state={}, policy=GatePolicy())
    assert rejection is None and type(payload).__name__ == "TechnicalHandoff"


def test_decide_runs_initialisation_and_merges_its_facts() -> None:
    decision = decide(request(), specs=SPECS, state={}, policy=GatePolicy(), case_file_model=SupportCaseFile)
    assert decision.rejection is None and decision.init is not None
    assert decision.case_file_updates["account_id"] == "ACC-1001"
    assert decision.case_file_updates["region"] == "west"


def test_decide_reports_a_failing_initialisation_as_init_failed() -> None:
    unknown_account = {**GOOD, "account_id": "ACC-9999"}
    decision = decide(request(payload=unknown_account), specs=SPECS, state={}, policy=GatePolicy(),
                      case_file_model=SupportCaseFile)
    assert decision.rejection is not None and decision.rejection.code == "init_failed"
    assert "ACC-9999" in decision.rejection.message and decision.case_file_updates == {}


@pytest.mark.parametrize(
    ("code", "expected"),
    [(None, TECHNICAL), ("invalid_payload", GENERAL), ("ping_pong", "human"), ("hop_budget_spent", "human")],
)
def test_route_sends_unrecoverable_rejections_to_the_fallback(code: str | None, expected: str) -> None:
    rejection = HandoffRejection(code=code, message="m") if code else None
    assert route(request(), rejection, specs=SPECS, fallback="human") == expected
