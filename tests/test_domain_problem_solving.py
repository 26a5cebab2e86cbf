"""Problem solving: analysis -> design -> implementation, and back to design when infeasible."""

from __future__ import annotations

from handoff.agents.problem_solving.specialists import ANALYST, DESIGNER, IMPLEMENTER
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.problem_solving import build_problem_solving_graph
from handoff.graphs.session import HandoffSession
from tests.support.domains import accepted, agents_of, play_demo, run_json, session_of, use

GATE = "handoff_gate"
HAND_BACK = {"reason": "the plan cannot be built", "root_cause": "missing index on orders.customer_id",
             "infeasible_plan_id": "PLAN-401", "infeasible_reason": "the orders database is under a change freeze"}


def _designed(model: ScriptedChatModel) -> HandoffSession:
    """Analysed by the analyst's tools, then PLAN-401 proposed by the designer."""
    model.add(ANALYST, [use("find_root_cause", {"service": "checkout"}, call_id="a1"), "Missing index."])
    model.add(DESIGNER, [use("propose_plan", {"root_cause_code": "missing_index"}, call_id="d1"), "PLAN-401."])
    session = session_of(build_problem_solving_graph, model)
    assert session.send("Why is checkout slow?").path == [ANALYST]
    designed = session.send("Please design a fix.")
    assert designed.path == ["intake", GATE, DESIGNER]
    assert designed.handoffs[-1].request.trigger_name == "ready_for_design"
    assert designed.case_file["plan_id"] == "PLAN-401"
    return session


def _implement(model: ScriptedChatModel, session: HandoffSession, plan_id: str, call_id: str):
    model.add(DESIGNER, [use("transfer_to_implementer", {"reason": "approved", "plan_id": plan_id},
                             call_id=call_id)])
    return session.send("Go ahead and implement it.")


def test_implementer_hands_an_infeasible_plan_back_with_the_reason() -> None:
    model = ScriptedChatModel()
    session = _designed(model)
    model.add(IMPLEMENTER, ["PLAN-401 is blocked by the change freeze."])
    first = _implement(model, session, "PLAN-401", "d2i1")
    assert first.path == [DESIGNER, GATE, IMPLEMENTER]
    assert first.case_file["feasibility"] == "infeasible"

    model.add(IMPLEMENTER, [use("transfer_to_solution_designer", HAND_BACK, call_id="i2d")])
    model.add(DESIGNER, [use("propose_plan", {"root_cause_code": "missing_index"}, call_id="d2"), "PLAN-402."])
    back = session.send("Send it back to design.")

    assert back.path == [IMPLEMENTER, GATE, DESIGNER]
    record = back.handoffs[-1]
    assert (record.source, record.target, record.outcome) == (IMPLEMENTER, DESIGNER, "accepted")
    assert record.request.payload["infeasible_reason"] == HAND_BACK["infeasible_reason"]
    assert record.init_result is not None and record.init_result.action == "reopen_design"
    assert back.case_file["rejected_plan_ids"] == ["PLAN-401"]
    assert any(c.startswith("db_migration") for c in back.case_file["constraints"])
    assert back.case_file["plan_id"] == "PLAN-402"

    model.add(IMPLEMENTER, [use("apply_change", {"plan_id": "PLAN-402"}, call_id="i1"), "Done."])
    done = _implement(model, session, "PLAN-402", "d2i2")
    assert done.path == [DESIGNER, GATE, IMPLEMENTER]
    assert done.case_file["change_id"] == "CHG-502"
    assert accepted(done.handoffs) == [(ANALYST, DESIGNER), (DESIGNER, IMPLEMENTER), (IMPLEMENTER, DESIGNER),
                                       (DESIGNER, IMPLEMENTER)]


def test_hand_back_must_name_the_plan_with_its_reason() -> None:
    model = ScriptedChatModel()
    session = _designed(model)
    model.add(IMPLEMENTER, ["Blocked."])
    _implement(model, session, "PLAN-401", "d2i1")
    reason_only = {k: v for k, v in HAND_BACK.items() if k != "infeasible_plan_id"}
    model.add(IMPLEMENTER, [use("transfer_to_solution_designer", reason_only, call_id="i2d"),
                            "I need to name the plan."])

    result = session.send("Send it back to design.")

    assert result.path == [IMPLEMENTER, GATE, IMPLEMENTER]
    record = result.handoffs[-1]
    assert record.rejection is not None and record.rejection.code == "invalid_payload"
    assert "infeasible_plan_id" in record.rejection.message


def test_a_plan_found_infeasible_is_not_implemented_again() -> None:
    model = ScriptedChatModel()
    session = _designed(model)
    model.add(IMPLEMENTER, ["Blocked.", use("transfer_to_solution_designer", HAND_BACK, call_id="i2d")])
    _implement(model, session, "PLAN-401", "d2i1")
    model.add(DESIGNER, ["Let me think."])
    session.send("Send it back to design.")
    model.add(DESIGNER, [use("transfer_to_implementer", {"reason": "retry", "plan_id": "PLAN-401"},
                             call_id="d2i2"), "I will design another plan."])

    again = session.send("Try the index plan once more.")

    assert again.path == [DESIGNER, GATE, DESIGNER]
    record = again.handoffs[-1]
    assert record.rejection is not None and record.rejection.code == "precondition_failed"
    assert "already found infeasible" in record.rejection.message


def test_design_waits_for_a_root_cause() -> None:
    model = ScriptedChatModel(scripts={ANALYST: ["First I need to analyse the problem."]})
    session = session_of(build_problem_solving_graph, model)

    result = session.send("Just fix checkout.")

    assert result.path == ["intake", GATE, ANALYST]
    rejection = result.handoffs[-1].rejection
    assert rejection is not None and rejection.code == "invalid_payload" and "root_cause" in rejection.message
    assert model.calls_by(DESIGNER) == []


def test_offline_demo_runs_the_chain_and_hands_back_to_design() -> None:
    turns = play_demo("problem-solving")

    assert accepted(turns[-1].handoffs) == [
        (ANALYST, DESIGNER), (DESIGNER, IMPLEMENTER), (IMPLEMENTER, DESIGNER), (DESIGNER, IMPLEMENTER)]
    assert [agents_of(t.path)[-1] for t in turns] == [ANALYST, DESIGNER, IMPLEMENTER, DESIGNER, IMPLEMENTER]
    hand_back = turns[3].handoffs[-1]
    assert hand_back.request.payload["infeasible_plan_id"] == "PLAN-401"
    assert "change freeze" in hand_back.request.payload["infeasible_reason"]
    final = turns[-1].case_file
    assert final["rejected_plan_ids"] == ["PLAN-401"] and final["plan_id"] == "PLAN-402"
    assert final["change_id"] == "CHG-502" and final["feasibility"] == "feasible"


def test_run_json_works_for_problem_solving() -> None:
    data = run_json("problem-solving", "Checkout is slow. Can you analyse why?")

    assert data["active_agent"] == ANALYST
    assert data["case_file"]["root_cause_code"] == "missing_index"
    assert data["handoffs"] == []
