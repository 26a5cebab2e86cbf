"""Sales: qualification -> product specialist -> closing, and the specialist on call."""

from __future__ import annotations

from handoff.agents.offline import OfflineChatModel
from handoff.agents.sales.specialists import CLOSER, QUALIFIER, SPECIALIST
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.sales import build_sales_graph
from handoff.graphs.session import HandoffSession
from tests.support.domains import accepted, agents_of, play_demo, run_json, session_of, use

GATE = "handoff_gate"
NORTHWIND = "Hi, I'm Priya Nair from Northwind Traders, evaluating a CRM."
TINY = "Hi, I'm Sam from Tiny Studio. We're two people looking for a simple CRM."


def _quoted(model: ScriptedChatModel) -> HandoffSession:
    """Northwind qualified, advised by the specialist, quoted by the closer."""
    model.add(QUALIFIER, [use("qualify_lead", {"company": "Northwind Traders"}, call_id="q1"), "Qualified."])
    model.add(SPECIALIST, [use("answer_product_question", {"question": "SSO with Okta?"}, call_id="s1"),
                           "Team fits.",
                           use("transfer_to_closer", {"reason": "wants a quote", "company": "Northwind Traders",
                                                      "seats": 40, "recommended_plan": "Team"}, call_id="s2c")])
    model.add(CLOSER, [use("create_quote", {"plan": "Team", "seats": 40}, call_id="c1"), "Here is QUO-801."])
    session = session_of(build_sales_graph, model)
    assert session.send(NORTHWIND).path == [QUALIFIER]
    advised = session.send("Do you have SSO with Okta?")
    assert advised.path == ["intake", GATE, SPECIALIST]
    assert advised.handoffs[-1].request.trigger_name == "qualified_lead"
    quoted = session.send("Great, a quote please.")
    assert quoted.path == [SPECIALIST, GATE, CLOSER]
    assert quoted.case_file["quote_id"] == "QUO-801"
    return session


def test_closer_pulls_the_specialist_back_in_and_the_quote_stays_on_file() -> None:
    model = ScriptedChatModel()
    session = _quoted(model)
    model.add(CLOSER, [use("transfer_to_product_specialist",
                           {"reason": "product question", "company": "Northwind Traders", "seats": 40,
                            "question": "audit logs?"}, call_id="c2s")])
    model.add(SPECIALIST, [use("answer_product_question", {"question": "audit logs?"}, call_id="s3"),
                           "Audit logs need Enterprise."])

    result = session.send("Does Team include audit logs?")

    assert result.path == [CLOSER, GATE, SPECIALIST]
    record = result.handoffs[-1]
    assert (record.source, record.target, record.outcome) == (CLOSER, SPECIALIST, "accepted")
    assert record.init_result is not None and record.init_result.action == "load_open_deal"
    assert "QUO-801" in record.init_result.summary
    prompt = str(model.calls_by(SPECIALIST)[-2]["messages"][0].content)
    assert "QUO-801" in prompt
    assert result.case_file["quote_id"] == "QUO-801" and result.case_file["quote_total"] == 15120.0
    assert result.case_file["recommended_plan"] == "Enterprise"
    assert accepted(result.handoffs) == [(QUALIFIER, SPECIALIST), (SPECIALIST, CLOSER), (CLOSER, SPECIALIST)]


def test_unqualified_lead_ends_politely_with_no_handoff() -> None:
    session = session_of(build_sales_graph, OfflineChatModel())

    first = session.send(TINY)
    second = session.send("Thanks anyway, bye.")

    assert first.path == [QUALIFIER] and second.path == [QUALIFIER]
    assert "Thank you for your interest" in first.reply and "not a fit" in first.reply
    assert first.case_file["qualified"] is False
    assert first.handoffs == [] and second.handoffs == []
    assert second.active_agent == QUALIFIER


def test_specialist_refuses_an_unqualified_lead() -> None:
    model = ScriptedChatModel(scripts={QUALIFIER: [
        use("qualify_lead", {"company": "Tiny Studio"}, call_id="q1"), "Sorry, not a fit today.",
        use("transfer_to_product_specialist", {"reason": "asks about features", "company": "Tiny Studio",
                                               "seats": 2}, call_id="q2s"),
        "Our free trial shows every feature.",
    ]})
    session = session_of(build_sales_graph, model)
    session.send(TINY)

    result = session.send("What features do you have?")

    assert result.path == [QUALIFIER, GATE, QUALIFIER]
    record = result.handoffs[-1]
    assert record.rejection is not None and record.rejection.code == "precondition_failed"
    assert "not qualified" in record.rejection.message
    assert model.calls_by(SPECIALIST) == []


def test_offline_demo_runs_the_chain_and_pulls_the_specialist_back() -> None:
    turns = play_demo("sales")

    assert accepted(turns[-1].handoffs) == [
        (QUALIFIER, SPECIALIST), (SPECIALIST, CLOSER), (CLOSER, SPECIALIST), (SPECIALIST, CLOSER)]
    assert [agents_of(t.path)[-1] for t in turns] == [QUALIFIER, SPECIALIST, CLOSER, SPECIALIST, CLOSER]
    assert turns[1].handoffs[-1].request.trigger == "rule"
    final = turns[-1].case_file
    assert final["quote_ids"] == ["QUO-801", "QUO-802"] and final["quoted_plan"] == "Enterprise"
    assert "audit log" in final["needs"] and final["order_id"].startswith("ORD-")


def test_run_json_works_for_sales() -> None:
    data = run_json("sales", NORTHWIND)

    assert data["active_agent"] == QUALIFIER
    assert data["case_file"]["qualified"] is True
    assert data["case_file"]["company"] == "Northwind Traders"
