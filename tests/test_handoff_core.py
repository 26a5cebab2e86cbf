"""The handoff core: triggers, the gate's checks, initialisation, records."""

from __future__ import annotations

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from tests.helpers import TECH_PAYLOAD, agents_in, support_session, technical_handoff


def test_tool_trigger_hands_over_with_typed_payload() -> None:
    _, _, result = technical_handoff()

    assert result.path == [GENERAL, "handoff_gate", TECHNICAL]
    assert result.active_agent == TECHNICAL
    assert result.reply == "Looking at your line now."
    [record] = result.handoffs
    assert (record.source, record.target, record.outcome) == (GENERAL, TECHNICAL, "accepted")
    assert record.request.trigger == "tool"
    assert record.request.payload["symptoms"] == "drops every evening"
    assert result.case_file["account_id"] == "ACC-1001"


def test_rule_trigger_spends_no_model_call_on_the_wrong_agent() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH_PAYLOAD))],
        TECHNICAL: ["Diagnostics look fine."],
        BILLING: ["I see two charges; let me look."],
    })
    session = support_session(model)
    session.send("internet drops, account ACC-1001")
    technical_calls = len(model.calls_by(TECHNICAL))

    result = session.send("I was charged twice, I want a refund")

    assert agents_in(result.path) == [BILLING]
    assert len(model.calls_by(TECHNICAL)) == technical_calls
    last = result.handoffs[-1]
    assert (last.request.trigger, last.request.trigger_name) == ("rule", "money_words")
    assert last.outcome == "accepted" and result.active_agent == BILLING


def test_unknown_target_is_rejected_with_a_readable_reason_and_no_state_change() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_legal_team", {"reason": "contract question"})),
                  "Sorry, I can help you with that myself."],
    })
    session = support_session(model)
    result = session.send("Question about my contract")

    [record] = result.handoffs
    assert record.outcome == "rejected" and record.rejection is not None
    assert record.rejection.code == "unknown_target"
    assert "legal_team" in record.rejection.message
    assert result.active_agent == GENERAL
    assert result.case_file == {"sentiment": "calm"}  # only what intake noted
    seen = model.calls_by(GENERAL)[-1]["messages"]
    assert any("Handoff rejected [unknown_target]" in str(m.content) for m in seen)


def test_invalid_payload_names_the_missing_field() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", {"reason": "line drops"})),
                  "I need your account id first."],
    })
    session = support_session(model)
    result = session.send("My line drops")

    [record] = result.handoffs
    assert record.rejection is not None and record.rejection.code == "invalid_payload"
    assert "account_id" in record.rejection.message and "symptoms" in record.rejection.message
    assert result.active_agent == GENERAL and result.reply == "I need your account id first."
    assert record.init_result is None


def test_initialisation_action_runs_and_its_result_is_recorded() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("transfer_to_technical_specialist", TECH_PAYLOAD))],
        TECHNICAL: ["ok"],
    })
    session = support_session(model)
    result = session.send("internet drops, ACC-1001")

    init = result.handoffs[0].init_result
    assert init is not None and init.action == "check_region_status"
    assert "degraded" in init.summary
    assert result.case_file["service_status"].startswith("degraded")
    receiver_prompt = str(model.calls_by(TECHNICAL)[0]["messages"][0].content)
    assert "check_region_status" in receiver_prompt and "line keeps dropping" in receiver_prompt


def test_whole_customer_service_flow_follows_the_exact_path() -> None:
    office = BackOffice()
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("lookup_account", {"account_id": "ACC-1001"}, "c1"),
                        tool_call("verify_identity", {"account_id": "ACC-1001", "postcode": "90210"}, "c2")),
                  "Thanks Dana, you are verified.",
                  calls(tool_call("transfer_to_technical_specialist", TECH_PAYLOAD, "c3"))],
        TECHNICAL: [calls(tool_call("run_diagnostics", {"account_id": "ACC-1001"}, "c4")),
                    "Packet loss in the evenings; congestion on node W-7."],
        BILLING: [calls(tool_call("issue_refund", {"invoice_id": "INV-2002"}, "c5")),
                  "Refunded the duplicate charge."],
    })
    session = support_session(model, office=office)
    paths = [agents_in(session.send(text).path) for text in (
        "Hi, account ACC-1001, postcode 90210",
        "My internet keeps dropping",
        "I was charged twice on INV-2002, refund please",
    )]

    assert paths == [[GENERAL], [GENERAL, TECHNICAL], [BILLING]]
    result = session.result()
    assert [(r.source, r.target) for r in result.handoffs] == [(GENERAL, TECHNICAL), (TECHNICAL, BILLING)]
    assert result.case_file["identity_verified"] is True
    assert result.case_file["steps_tried"] == ["line diagnostics"]
    assert [r.invoice_id for r in office.refunds(session.graph.store)] == ["INV-2002"]
