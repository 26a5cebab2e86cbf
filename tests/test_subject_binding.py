"""Facts bound to their subject: a verification is of one account's owner, in one conversation.

The case file resets a bound fact when its subject changes (``CaseFile.bound_facts``),
and the privileged tool checks the ledger's own record (agents/ledger.py) rather
than the case file: no sequence of tool calls, handoff payloads and case-file
updates, forged or not, pays a refund on an account whose owner was not
verified in that conversation.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.store.memory import InMemoryStore

from handoff.agents.content_creation.specialists import ContentCaseFile
from handoff.agents.customer_service.back_office import ACCOUNTS, INVOICES, BackOffice
from handoff.agents.customer_service.specialists import (
    BILLING,
    GENERAL,
    SupportCaseFile,
    customer_service_agents,
)
from handoff.agents.ledger import Ledger
from handoff.agents.sales.specialists import SalesCaseFile
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.tooling import ToolContext
from handoff.graphs.agent_calls import ToolCall
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.gate import GatePolicy, decide
from handoff.graphs.journal import Journal
from handoff.graphs.session import HandoffSession
from handoff.state import CaseFile, CaseFileError, HandoffRequest, checked_update, merge_case_file
from tests.helpers import compile_memory

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "handoff-hypothesis")

WRONG_POSTCODE = "00000"


# --- the case file's binding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "update", "expected"),
    [
        ({"account_id": "ACC-1002", "identity_verified": True}, {"account_id": "ACC-1001"},
         {"account_id": "ACC-1001", "identity_verified": False}),
        ({"account_id": "ACC-1002", "identity_verified": True}, {"account_id": "ACC-1002", "region": "east"},
         {"account_id": "ACC-1002", "region": "east"}),
        ({"account_id": "ACC-1002", "identity_verified": True},
         {"account_id": "ACC-1001", "identity_verified": True},
         {"account_id": "ACC-1001", "identity_verified": True}),
        ({"identity_verified": True}, {"account_id": "ACC-1001"},
         {"account_id": "ACC-1001", "identity_verified": False}),
        ({"account_id": "ACC-1002"}, {"account_id": "ACC-1001"}, {"account_id": "ACC-1001"}),
        ({"account_id": "ACC-1002", "identity_verified": True}, {"account_id": None}, {"account_id": None}),
    ],
)
def test_a_new_subject_resets_the_fact_unless_the_update_sets_it(
    current: dict[str, Any], update: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert checked_update(SupportCaseFile, current, update) == expected


def test_other_domains_bind_their_facts_to_their_subjects() -> None:
    quoted = {"seats": 40, "recommended_plan": "Team", "quote_id": "QUO-801", "quote_current": True}
    approved = {"draft_version": 2, "draft": "text", "approved": True}

    assert checked_update(SalesCaseFile, quoted, {"seats": 60}) == {"seats": 60, "quote_current": False}
    assert checked_update(SalesCaseFile, quoted, {"recommended_plan": "Enterprise"})["quote_current"] is False
    assert checked_update(SalesCaseFile, quoted, {"needs": ["sso"]}) == {"needs": ["sso"]}
    assert checked_update(ContentCaseFile, approved, {"draft_version": 3})["approved"] is False
    assert checked_update(ContentCaseFile, approved, {"draft": "other text"})["approved"] is False
    assert checked_update(ContentCaseFile, approved, {"stage": "approved"}) == {"stage": "approved"}


def test_a_bound_fact_must_be_a_boolean_of_the_model_bound_to_its_fields() -> None:
    with pytest.raises(TypeError, match="'owner' must be a bool field"):
        type("Bad", (CaseFile,), {"__annotations__": {"owner": "str | None"}, "owner": None,
                                  "bound_facts": {"owner": "account_id"}})
    with pytest.raises(TypeError, match="unknown field"):
        type("Bad", (CaseFile,), {"__annotations__": {"ok": "bool | None"}, "ok": None,
                                  "bound_facts": {"ok": "nowhere"}})


# --- through the graph ----------------------------------------------------------------------------


def verify(account_id: str, postcode: str, call_id: str) -> AIMessage:
    return calls(tool_call("verify_identity", {"account_id": account_id, "postcode": postcode}, call_id))


def to_billing(account_id: str, call_id: str, *, wants_refund: bool = False) -> AIMessage:
    return calls(tool_call("transfer_to_billing_expert", {"reason": "a billing matter", "account_id": account_id,
                                                          "wants_refund": wants_refund}, call_id))


def refund_call(call_id: str, invoice_id: str = "INV-2002") -> AIMessage:
    return calls(tool_call("issue_refund", {"invoice_id": invoice_id}, call_id))


def run(model: ScriptedChatModel, *texts: str) -> tuple[HandoffSession, BackOffice]:
    office = BackOffice()
    session = HandoffSession(compile_memory(build_customer_service_graph(model=model, office=office)))
    for text in texts:
        session.send(text)
    return session, office


def tool_results(session: HandoffSession) -> dict[str, str]:
    values = session.graph.get_state(session.config).values
    messages = Journal(session.graph.store, session.thread_id).messages(values["transcript_len"])
    return {m.tool_call_id: str(m.content) for m in messages if isinstance(m, ToolMessage)}


def test_verified_for_one_account_then_a_payload_switches_to_another_pays_nothing() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [verify("ACC-1002", "10001", "v"), to_billing("ACC-1001", "t")],
        BILLING: [refund_call("r")],
    }, default="Done.")

    session, office = run(model, "I am Sam, ACC-1002, postcode 10001; Dana's invoice INV-2002 please")

    case = session.result().case_file
    assert tool_results(session)["v"] == "identity verified"
    assert (case["account_id"], case["identity_verified"]) == ("ACC-1001", False)
    assert tool_results(session)["r"] == "refused: the customer's identity is not verified"
    assert office.refunds(session.graph.store) == []


def test_verified_for_one_account_then_a_lookup_of_another_pays_nothing() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [verify("ACC-1002", "10001", "v"),
                  calls(tool_call("lookup_account", {"account_id": "ACC-1001"}, "l")),
                  to_billing("ACC-1001", "t")],
        BILLING: [refund_call("r")],
    }, default="Done.")

    session, office = run(model, "ACC-1002, 10001, then look at ACC-1001")

    assert session.result().case_file["identity_verified"] is False
    assert tool_results(session)["r"] == "refused: the customer's identity is not verified"
    assert office.refunds(session.graph.store) == []


def test_a_forged_case_file_does_not_make_the_back_office_pay() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [verify("ACC-1002", "10001", "v"), to_billing("ACC-1002", "t", wants_refund=True)],
    }, default="Done.")
    session, office = run(model, "ACC-1002, postcode 10001, refund please")
    assert session.result().active_agent == BILLING

    session.graph.update_state(session.config, {"case_file": {"account_id": "ACC-1001", "identity_verified": True}})
    model.add(BILLING, [refund_call("r")])
    session.send("refund INV-2002")

    assert session.result().case_file["identity_verified"] is True, "the forgery did not land"
    assert tool_results(session)["r"] == "refused: the owner of ACC-1001 has not been verified in this conversation"
    assert office.refunds(session.graph.store) == []


def test_a_refund_handoff_for_another_account_than_the_verified_one_is_refused() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [verify("ACC-1002", "10001", "v"), to_billing("ACC-1001", "t", wants_refund=True)],
    }, default="I will verify that account first.")

    session, _ = run(model, "ACC-1002, 10001, refund ACC-1001's invoice")

    [record] = session.result().handoffs
    assert record.rejection is not None and record.rejection.code == "precondition_failed"
    assert "ACC-1001 is not the account verified in this conversation (ACC-1002)" in record.rejection.message


def test_the_owner_verified_in_this_conversation_is_paid() -> None:
    model = ScriptedChatModel(scripts={
        GENERAL: [verify("ACC-1001", "90210", "v"), to_billing("ACC-1001", "t", wants_refund=True)],
        BILLING: [refund_call("r")],
    }, default="Done.")

    session, office = run(model, "Dana, ACC-1001, 90210: refund INV-2002")

    assert tool_results(session)["r"] == "refund RF-3001 of 59.00 issued for INV-2002"
    assert [r.account_id for r in office.refunds(session.graph.store)] == ["ACC-1001"]


def test_a_verification_in_another_conversation_does_not_count_here() -> None:
    office, store = BackOffice(), InMemoryStore()
    office.verify_owner(store, thread_id="theirs", account_id="ACC-1001", postcode="90210")
    office.verify_owner(store, thread_id="mine", account_id="ACC-1001", postcode="90210")
    office.verify_owner(store, thread_id="mine", account_id="ACC-1001", postcode=WRONG_POSTCODE)
    tools = tools_of(office)
    forged = {"account_id": "ACC-1001", "identity_verified": True}

    here = run_tool(tools["issue_refund"], {"invoice_id": "INV-2002"}, "mine", forged, store)
    elsewhere = run_tool(tools["issue_refund"], {"invoice_id": "INV-2002"}, "ours", forged, store)

    assert here[0] == elsewhere[0] == "refused: the owner of ACC-1001 has not been verified in this conversation"
    assert office.refunds(store) == []


# --- the property ---------------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
THREADS = ("t1", "t2")
threads = st.sampled_from(THREADS)
accounts = st.sampled_from(sorted(ACCOUNTS))
invoices = st.sampled_from(sorted(INVOICES))
amounts = st.none() | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 0.004, 1e308]) | st.floats(0.01, 80)
forgeries = st.fixed_dictionaries({}, optional={"account_id": accounts, "identity_verified": st.booleans(),
                                                "invoice_id": invoices})
steps = st.lists(st.one_of(
    st.tuples(st.just("verify"), threads, accounts, st.booleans()),
    st.tuples(st.just("lookup"), threads, accounts),
    st.tuples(st.just("handoff"), threads, accounts, st.booleans()),
    st.tuples(st.just("forge"), threads, forgeries),
    st.tuples(st.just("refund"), threads, invoices, amounts),
), max_size=14)


def tools_of(office: BackOffice) -> dict[str, BaseTool]:
    return {t.name: t for spec in customer_service_agents(office) for t in spec.tools}


def run_tool(tool: BaseTool, args: dict[str, Any], thread: str, case: dict[str, Any],
             store: InMemoryStore) -> tuple[str, dict[str, Any]]:
    ctx = ToolContext(thread_id=thread, agent="any", case_file=case, store=store)
    message, updates = ToolCall(tool, {"name": tool.name, "args": args, "id": uuid.uuid4().hex}, ctx).run()
    return str(message.content), updates


def applied(case: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """What the agent node does with a tool's updates: checked against the model, then merged."""
    try:
        return merge_case_file(case, checked_update(SupportCaseFile, case, updates))
    except CaseFileError:
        return case


OFFICE = BackOffice()
SPECS = {spec.name: spec for spec in customer_service_agents(OFFICE)}
TOOLS = tools_of(OFFICE)


def handed_to_billing(case: dict[str, Any], account_id: str, wants_refund: bool) -> dict[str, Any]:
    """The gate's own decision on a transfer to billing with this payload, applied if accepted."""
    request = HandoffRequest(source=GENERAL, target=BILLING, reason="a billing matter", trigger="tool",
                             payload={"reason": "a billing matter", "account_id": account_id,
                                      "wants_refund": wants_refund})
    state = {"case_file": case, "hops": 0, "handoffs": [], "handoff_count": 0, "active_agent": GENERAL}
    decision = decide(request, specs=SPECS, state=state, policy=GatePolicy(),  # type: ignore[arg-type]
                      case_file_model=SupportCaseFile)
    return case if decision.rejection else merge_case_file(case, decision.case_file_updates)


@PROPERTY
@example(steps=[("verify", "t1", "ACC-1002", True), ("handoff", "t1", "ACC-1001", False),
                ("refund", "t1", "INV-2002", None)])
@example(steps=[("verify", "t1", "ACC-1002", True), ("forge", "t1", {"account_id": "ACC-1001"}),
                ("forge", "t1", {"identity_verified": True}), ("refund", "t1", "INV-2001", None)])
@example(steps=[("verify", "t2", "ACC-1001", True), ("forge", "t1", {"account_id": "ACC-1001",
                                                                     "identity_verified": True}),
                ("refund", "t1", "INV-2002", 10.0), ("refund", "t2", "INV-2002", None)])
@given(steps=steps)
def test_no_sequence_pays_a_refund_to_an_account_not_verified_in_its_conversation(steps: list[tuple]) -> None:
    store = InMemoryStore()
    cases: dict[str, dict[str, Any]] = {t: {} for t in THREADS}
    verified: dict[str, set[str]] = {t: set() for t in THREADS}  # owners verified here, and not withdrawn
    ever: dict[str, set[str]] = {t: set() for t in THREADS}  # owners who ever gave the right postcode here
    for step in steps:
        kind, thread = step[0], step[1]
        case = cases[thread]
        if kind == "verify":
            account, right = step[2], step[3]
            postcode = ACCOUNTS[account].postcode if right else WRONG_POSTCODE
            _, updates = run_tool(TOOLS["verify_identity"], {"account_id": account, "postcode": postcode},
                                  thread, case, store)
            (verified[thread].add if right else verified[thread].discard)(account)
            if right:
                ever[thread].add(account)
            cases[thread] = applied(case, updates)
        elif kind == "lookup":
            cases[thread] = applied(case, run_tool(TOOLS["lookup_account"], {"account_id": step[2]},
                                                   thread, case, store)[1])
        elif kind == "handoff":
            cases[thread] = handed_to_billing(case, step[2], step[3])
        elif kind == "forge":  # as update_state or a Command(update=...) would: no checks at all
            cases[thread] = merge_case_file(case, step[2])
        else:
            invoice, amount = INVOICES[step[2]], step[3]
            untouched = OFFICE.refunds(store, invoice.invoice_id) == []
            text, updates = run_tool(TOOLS["issue_refund"], {"invoice_id": invoice.invoice_id,
                                                             **({} if amount is None else {"amount": amount})},
                                     thread, case, store)
            assert not text.startswith("error:"), f"the refund tool crashed: {text}"
            owner_here = invoice.account_id in verified[thread]
            if text.startswith("refund RF-"):
                assert owner_here, f"paid {invoice.invoice_id} in {thread} without its owner verified: {steps}"
            elif (owner_here and amount is None and untouched and case.get("identity_verified") is True
                  and case.get("account_id") == invoice.account_id):
                raise AssertionError(f"a refund the owner is entitled to was refused: {text}")
            cases[thread] = applied(case, updates)

    paid = Ledger(store).records("refund")
    for record in paid:
        assert record.data["account_id"] in ever[record.data["thread_id"]]
    for invoice in INVOICES.values():
        amounts_paid = [r.data["amount"] for r in paid if r.data["invoice_id"] == invoice.invoice_id]
        assert all(math.isfinite(a) and a > 0 for a in amounts_paid)
        assert round(sum(amounts_paid), 2) <= invoice.amount


GRAPH_PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
turns = st.lists(st.one_of(
    st.tuples(st.just("verify_identity"), accounts, st.booleans()),
    st.tuples(st.just("lookup_account"), accounts),
    st.tuples(st.just("transfer_to_billing_expert"), accounts, st.booleans()),
    st.tuples(st.just("transfer_to_general_support")),
    st.tuples(st.just("issue_refund"), invoices),
    st.tuples(st.just("forge"), forgeries),
), min_size=1, max_size=7)


def scripted_reply(turn: tuple, n: int) -> AIMessage:
    name, call_id = turn[0], f"c{n}"
    if name == "verify_identity":
        return verify(turn[1], ACCOUNTS[turn[1]].postcode if turn[2] else WRONG_POSTCODE, call_id)
    if name == "lookup_account":
        return calls(tool_call(name, {"account_id": turn[1]}, call_id))
    if name == "transfer_to_billing_expert":
        return to_billing(turn[1], call_id, wants_refund=turn[2])
    if name == "transfer_to_general_support":
        return calls(tool_call(name, {"reason": "back to the front desk"}, call_id))
    return refund_call(call_id, turn[1])


@GRAPH_PROPERTY
@example(turns=[("verify_identity", "ACC-1002", True), ("transfer_to_billing_expert", "ACC-1001", False),
                ("issue_refund", "INV-2002")])
@example(turns=[("verify_identity", "ACC-1002", True), ("transfer_to_billing_expert", "ACC-1002", True),
                ("forge", {"account_id": "ACC-1001", "identity_verified": True}), ("issue_refund", "INV-2002")])
@given(turns=turns)
def test_through_the_graph_no_turn_sequence_pays_an_unverified_owner(turns: list[tuple]) -> None:
    model = ScriptedChatModel(default="Done.")
    office = BackOffice()
    session = HandoffSession(compile_memory(build_customer_service_graph(model=model, office=office)))
    for n, turn in enumerate(turns):
        if turn[0] == "forge":
            if session.graph.get_state(session.config).values:
                session.graph.update_state(session.config, {"case_file": turn[1]})
            continue
        active = (session.graph.get_state(session.config).values or {}).get("active_agent") or GENERAL
        model.add(active, [scripted_reply(turn, n)])
        session.send("next")

    values = session.graph.get_state(session.config).values
    messages = Journal(session.graph.store, session.thread_id).messages(values["transcript_len"])
    asked = {c["id"]: c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    verified = {asked[m.tool_call_id]["args"]["account_id"] for m in messages
                if isinstance(m, ToolMessage) and m.name == "verify_identity" and m.content == "identity verified"
                and asked[m.tool_call_id]["args"]["postcode"] == ACCOUNTS[asked[m.tool_call_id]["args"]["account_id"]].postcode}
    for paid in office.refunds(session.graph.store):
        assert paid.account_id in verified, f"{paid} paid, verified only {verified}: {turns}"
