"""The offline model behaves like a careful agent (issue 16).

It asks for a field a handoff needs by its human name and carries the earlier request out when the
field arrives (across a restart too), turns an unknown id into a question, escalates to a person by
meaning but not on "manager" said in passing, moves every graph forward on ordinary wording, and
answers from its tool results instead of echoing the customer. Each phrase is tested with
paraphrases that appear nowhere in the offline model's rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.offline import OFFLINE_LABEL, OfflineChatModel, decide
from handoff.agents.person_request import asks_for_a_person
from handoff.agents.problem_solving.specialists import ANALYST, DESIGNER, IMPLEMENTER
from handoff.agents.sales.specialists import CLOSER, QUALIFIER, SPECIALIST
from handoff.graphs.content_creation import build_content_creation_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.escalation import pending_escalation
from handoff.graphs.human import HUMAN
from handoff.graphs.persistence import open_persistence
from handoff.graphs.problem_solving import build_problem_solving_graph
from handoff.graphs.sales import build_sales_graph
from handoff.graphs.session import HandoffSession, TurnResult
from tests.support.domains import accepted, session_of

INTERNAL_TEXT = ("BackOfficeError", "Handoff rejected", "Handoff failed", "init_failed", "invalid_payload",
                 "Field required", "error:", "Traceback")


def support() -> HandoffSession:
    return session_of(build_customer_service_graph, OfflineChatModel())


def speaker(session: HandoffSession, result: TurnResult) -> str:
    """Who answered the turn: a person when the thread waits for one, else the last agent that ran."""
    if pending_escalation(session.graph, session.config) is not None:
        return HUMAN
    return [n for n in result.path if n not in ("intake", "handoff_gate")][-1]


def assert_customer_facing(reply: str) -> None:
    assert reply.startswith(OFFLINE_LABEL)
    assert not [t for t in INTERNAL_TEXT if t in reply], reply


# --- a missing field is asked for, and the earlier request carried out ------------------------------

@pytest.mark.parametrize("problem", [
    "my wifi keeps cutting out",
    "the broadband has been dropping on and off all afternoon",
    "videos stall every few seconds and pages hang",
])
def test_a_fault_without_an_account_asks_for_it_and_carries_on_when_it_arrives(problem: str) -> None:
    session = support()

    asked = session.send(problem)

    assert speaker(session, asked) == GENERAL
    assert "your account id" in asked.reply and asked.reply.rstrip().endswith("?")
    assert problem not in asked.reply  # asks, does not echo
    assert_customer_facing(asked.reply)
    assert accepted(asked.handoffs) == []

    carried = session.send("it's ACC-1001")

    assert speaker(session, carried) == TECHNICAL
    handoff = next(r for r in carried.handoffs if r.outcome == "accepted")
    assert (handoff.source, handoff.target) == (GENERAL, TECHNICAL)
    assert handoff.request.payload["account_id"] == "ACC-1001"
    assert handoff.request.payload["symptoms"] == problem  # the earlier problem, not "it's ACC-1001"
    # The specialist carries on with that problem: it runs the diagnostics and says what it found.
    assert carried.case_file["steps_tried"] == ["line diagnostics"]
    assert "packet loss" in carried.reply
    assert_customer_facing(carried.reply)


def test_a_billing_question_without_an_account_is_carried_on_to_billing() -> None:
    session = support()

    asked = session.send("why was I billed two times in October?")
    assert speaker(session, asked) == GENERAL and "your account id" in asked.reply

    carried = session.send("sure, account acc-1001")

    assert speaker(session, carried) == BILLING
    assert (GENERAL, BILLING) in accepted(carried.handoffs)
    assert "INV-2002" in carried.reply  # what the billing expert found: the duplicate charge


def test_the_pending_request_survives_a_restart(tmp_path: Path) -> None:
    url = str(tmp_path / "handoff.sqlite")
    with open_persistence(url) as first:
        graph = build_customer_service_graph(model=OfflineChatModel()).compile(
            checkpointer=first.checkpointer, store=first.store)
        thread = HandoffSession(graph).thread_id
        asked = HandoffSession(graph, thread).send("no internet since this morning")
        assert "your account id" in asked.reply
    with open_persistence(url) as second:  # a new process: nothing but what the store kept
        graph = build_customer_service_graph(model=OfflineChatModel()).compile(
            checkpointer=second.checkpointer, store=second.store)
        carried = HandoffSession(graph, thread).send("ACC-1002")

    assert carried.active_agent == TECHNICAL
    assert carried.handoffs[-1].request.payload["symptoms"] == "no internet since this morning"


# --- an unknown id is a question, never internal error text ---------------------------------------

def test_an_unknown_account_gets_a_question_and_no_failed_handoff() -> None:
    session = support()

    asked = session.send("my connection is dead, account ACC-9999")

    assert speaker(session, asked) == GENERAL
    assert "ACC-9999" in asked.reply and "check the number" in asked.reply
    assert_customer_facing(asked.reply)
    assert [r for r in asked.handoffs if r.outcome == "failed"] == []

    fixed = session.send("sorry, typo: ACC-1003")

    assert speaker(session, fixed) == TECHNICAL
    assert fixed.handoffs[-1].request.payload["account_id"] == "ACC-1003"
    assert fixed.handoffs[-1].request.payload["symptoms"] == "my connection is dead, account ACC-9999"


def test_a_receiver_that_cannot_find_the_account_becomes_a_question() -> None:
    """The gate's init failure reaches the model as internal text; the customer gets a question."""
    call = {"name": "transfer_to_technical_specialist", "id": "t1", "type": "tool_call",
            "args": {"reason": "fault", "account_id": "ACC-9999", "symptoms": "no internet"}}
    messages = [
        SystemMessage("You help.\n\nAGENT: general_support\nYou are General Support.\nCASE FILE (JSON): {}"),
        HumanMessage("no internet, ACC-9999"),
        AIMessage("", tool_calls=[call], name=GENERAL),
        ToolMessage("Handoff failed [init_failed]: technical_specialist failed while taking over: "
                    "BackOfficeError: no account 'ACC-9999'.", tool_call_id="t1"),
    ]

    reply = str(decide(messages, []).content)

    assert "ACC-9999" in reply and reply.rstrip().endswith("?")
    assert_customer_facing(reply)


# --- escalation by meaning ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Can I talk to someone please?",
    "I need an agent, not this robot",
    "could you put me through to a human being",
    "enough of the bot, I want a living person on the line",
    "is there any real person I could speak with?",
])
def test_asking_for_a_person_escalates(text: str) -> None:
    session = support()
    session.send("Hi, account ACC-1001")

    result = session.send(text)

    assert speaker(session, result) == HUMAN
    assert accepted(result.handoffs)[-1][1] == HUMAN


@pytest.mark.parametrize("text", [
    "send a copy of invoice INV-2001 to my manager",
    "my supervisor wants a copy of invoice INV-2001",
    "please forward invoice INV-2001 to our office manager",
])
def test_a_person_mentioned_in_passing_does_not_escalate(text: str) -> None:
    session = support()
    session.send("Hi, account ACC-1001")

    result = session.send(text)

    assert speaker(session, result) == BILLING
    assert HUMAN not in [target for _, target in accepted(result.handoffs)]


@pytest.mark.parametrize(("text", "asks"), [
    ("get me a supervisor right now", True),
    ("I'd much rather chat with a real human", True),
    ("my manager asked me to sort out the bill", False),
    ("can someone review the draft before Friday?", False),
    ("we need the CRM for 150 people", False),
])
def test_the_escalation_judgement(text: str, asks: bool) -> None:
    assert asks_for_a_person(text) is asks


# --- every graph moves forward on natural wording ------------------------------------------------------

@pytest.mark.parametrize("intro", [
    "Hi, Priya from Northwind Traders. We want to replace our CRM this quarter.",
    "Northwind Traders here, our spreadsheets are not cutting it and we need a proper CRM soon",
])
@pytest.mark.parametrize("price", [
    "What would it cost for 40 seats?",
    "what kind of money are we talking about for our 40 people?",
])
def test_sales_qualifies_a_plain_description_and_takes_pricing_to_the_closer(intro: str, price: str) -> None:
    session = session_of(build_sales_graph, OfflineChatModel())

    qualified = session.send(intro)
    assert speaker(session, qualified) == QUALIFIER and qualified.case_file["qualified"] is True

    priced = session.send(price)

    assert speaker(session, priced) == CLOSER
    assert accepted(priced.handoffs)[-2:] == [(QUALIFIER, SPECIALIST), (SPECIALIST, CLOSER)]
    assert priced.case_file["quote_id"].startswith("QUO-")
    assert priced.case_file["quote_id"] in priced.reply


@pytest.mark.parametrize("ask", [
    "Turn that into a short article for parents",
    "lovely, now shape those notes into a short story for our readers",
])
def test_content_goes_from_research_to_the_writer_on_plain_wording(ask: str) -> None:
    session = session_of(build_content_creation_graph, OfflineChatModel())
    session.send("Can you find out what is known about heat pumps?")

    result = session.send(ask)

    assert result.active_agent == "writer"
    assert result.case_file["draft_version"] == 1 and "draft v1" in result.reply


@pytest.mark.parametrize("back", [
    "What can we do instead?",
    "rethink this",
    "that's a no-go then, is there some other route?",
    "ok, we'll need to reconsider the approach",
])
def test_an_infeasible_plan_goes_back_to_design_on_plain_wording(back: str) -> None:
    session = session_of(build_problem_solving_graph, OfflineChatModel())
    session.send("Checkout is slow since the release, why?")
    session.send("How should we fix it?")
    built = session.send("ok, go ahead")
    assert built.active_agent == IMPLEMENTER and built.case_file["feasibility"] == "infeasible"

    result = session.send(back)

    assert result.active_agent == DESIGNER
    record = result.handoffs[-1]
    assert (record.source, record.target, record.outcome) == (IMPLEMENTER, DESIGNER, "accepted")
    assert record.request.payload["infeasible_plan_id"] == "PLAN-401"
    assert result.case_file["plan_id"] != "PLAN-401"  # the new plan avoids the constraint


def test_an_analysis_is_followed_by_design_and_the_designer_picks_the_plan_it_hands_on() -> None:
    session = session_of(build_problem_solving_graph, OfflineChatModel())
    assert session.send("logins keep timing out at peak").active_agent == ANALYST
    session.send("list the options")

    result = session.send("good, build the first one")

    assert result.active_agent == IMPLEMENTER
    assert result.handoffs[-1].request.payload["plan_id"].startswith("PLAN-")


# --- replies come from tool results and say what happens next --------------------------------------------

def test_replies_report_tool_results_and_next_steps_without_echoing() -> None:
    session = support()
    message = "Hello, this is Dana: account ACC-1001, postcode 90210"

    result = session.send(message)

    assert "Dana Reyes" in result.reply and "identity verified" in result.reply
    assert "Next" in result.reply or "bring in" in result.reply
    assert message not in result.reply and "You said" not in result.reply
    assert_customer_facing(result.reply)


def test_the_offline_model_is_deterministic() -> None:
    def run() -> list[str]:
        session = support()
        return [session.send(t).reply for t in ("my wifi keeps cutting out", "ACC-1001", "thanks")]

    assert run() == run()
