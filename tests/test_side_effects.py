"""Side effects happen once: in the conversation's own store, across retries, restarts and workers.

The back office's refunds and tickets, and the other domains' quotes, orders,
publications and production changes, are ledger records (agents/ledger.py) in
the store the conversations use. A key pays once, an invoice is refunded at
most its amount across every conversation, ids are unique across connections
and processes, money must be money, and a replay works on a scratch ledger.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from handoff.agents.content_creation.specialists import content_creation_agents
from handoff.agents.customer_service.back_office import INVOICES, BackOffice, BackOfficeError
from handoff.agents.customer_service.specialists import BILLING, GENERAL, billing_tools, general_tools
from handoff.agents.ledger import Ledger, LedgerHome
from handoff.agents.ledger_scratch import ScratchLedgerStore
from handoff.agents.offline import OfflineChatModel
from handoff.agents.problem_solving.specialists import problem_solving_agents
from handoff.agents.sales.specialists import sales_agents
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.tooling import ToolContext
from handoff.graphs.agent_calls import ToolCall
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence, serializer
from handoff.graphs.registry import get_graph
from handoff.graphs.session import HandoffSession
from handoff.monitoring.replay import history, replay
from tests.helpers import compile_memory
from tests.support.postgres import postgres_schema
from tests.support.service_worker import Worker, post_message, running_workers

DEMO = get_graph("customer-service").demo
AGAIN = "Please refund invoice INV-2002 again."


def verified(office: BackOffice, store: BaseStore | None, thread_id: str, account_id: str = "ACC-1001") -> None:
    postcode = {"ACC-1001": "90210", "ACC-1002": "10001", "ACC-1003": "60601"}[account_id]
    assert office.verify_owner(store, thread_id=thread_id, account_id=account_id, postcode=postcode)


def refund(office: BackOffice, store: BaseStore | None, thread_id: str, invoice_id: str = "INV-2002",
           amount: float | None = None, account_id: str = "ACC-1001"):
    return office.refund(store, thread_id=thread_id, idempotency_key=f"{thread_id}:refund:{invoice_id}",
                         account_id=account_id, invoice_id=invoice_id, amount=amount)


# --- money ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf, 0.0, -5.0, 0.004])
def test_an_amount_that_is_not_money_is_refused_naming_it_and_the_limit(amount: float) -> None:
    office, store = BackOffice(), InMemoryStore()
    verified(office, store, "t")

    with pytest.raises(BackOfficeError) as refused:
        refund(office, store, "t", amount=amount)

    assert f"refund amount {amount}" in str(refused.value) and "at most 59.00" in str(refused.value)
    assert office.refunds(store) == []
    paid, new = refund(office, store, "t")  # the refusal left the invoice refundable
    assert new and paid.amount == 59.0 and paid.refund_id == "RF-3001"


def test_more_than_is_left_is_refused_and_partial_refunds_add_up_to_the_invoice() -> None:
    office, store = BackOffice(), InMemoryStore()
    for thread in ("a", "b", "c"):
        verified(office, store, thread)

    with pytest.raises(BackOfficeError, match=r"refund amount 1e\+308 is more than INV-2002 has left.*at most 59\.00"):
        refund(office, store, "a", amount=1e308)
    first, _ = refund(office, store, "a", amount=30.0)
    with pytest.raises(BackOfficeError, match=r"refund amount 30\.0 is more than INV-2002 has left.*at most 29\.00"):
        refund(office, store, "b", amount=30.0)
    second, _ = refund(office, store, "b")  # no amount: what is left
    with pytest.raises(BackOfficeError, match="already been refunded in full"):
        refund(office, store, "c", amount=0.01)

    assert (first.amount, second.amount) == (30.0, 29.0)
    assert sum(r.amount for r in office.refunds(store, "INV-2002")) == INVOICES["INV-2002"].amount


def test_the_same_key_answers_already_issued_and_another_conversation_is_refused() -> None:
    office, store = BackOffice(), InMemoryStore()
    verified(office, store, "first")
    verified(office, store, "second")

    paid, new = refund(office, store, "first")
    again, new_again = refund(office, store, "first", amount=1.0)  # the key decides, not the amount

    assert new and not new_again and again == paid
    with pytest.raises(BackOfficeError, match="INV-2002 has already been refunded in full"):
        refund(office, store, "second")
    assert [r.refund_id for r in office.refunds(store)] == [paid.refund_id]


def test_a_share_left_pending_by_a_dead_process_holds_its_room_until_its_key_comes_back() -> None:
    office, store = BackOffice(), InMemoryStore()
    for thread in ("dead", "other"):
        verified(office, store, thread)
    # What a process killed between the two writes of a refund leaves behind: a pending share.
    store.put(("handoff", "ledger", "records", "refund", "INV-2002"), "dead:refund:INV-2002",
              {"kind": "refund", "key": "dead:refund:INV-2002", "record_id": "", "state": "pending", "units": 5900})

    with pytest.raises(BackOfficeError, match="being paid at this moment"):
        refund(office, store, "other")
    paid, new = refund(office, store, "dead")  # the dead conversation's step runs again

    assert new and paid.amount == 59.0
    assert [r.refund_id for r in office.refunds(store)] == [paid.refund_id]


def test_a_nan_refund_through_the_graph_is_refused_with_a_message() -> None:
    office = BackOffice()
    model = ScriptedChatModel(scripts={
        GENERAL: [calls(tool_call("verify_identity", {"account_id": "ACC-1001", "postcode": "90210"}, "v")),
                  calls(tool_call("transfer_to_billing_expert", {"reason": "refund", "account_id": "ACC-1001"}, "t"))],
        BILLING: [calls(tool_call("issue_refund", {"invoice_id": "INV-2002", "amount": math.nan}, "nan")),
                  calls(tool_call("issue_refund", {"invoice_id": "INV-2002"}, "ok"))],
    }, default="Done.")
    session = HandoffSession(compile_memory(build_customer_service_graph(model=model, office=office)))
    session.send("ACC-1001, postcode 90210")
    session.send("refund please")

    results = tool_results(session)
    assert results["nan"].startswith("refused: refund amount nan") and "at most 59.00" in results["nan"]
    assert results["ok"] == "refund RF-3001 of 59.00 issued for INV-2002"
    assert [r.amount for r in office.refunds(session.graph.store)] == [59.0]


def tool_results(session: HandoffSession) -> dict[str, str]:
    from langchain_core.messages import ToolMessage

    from handoff.graphs.journal import Journal

    values = session.graph.get_state(session.config).values
    messages = Journal(session.graph.store, session.thread_id).messages(values["transcript_len"])
    return {m.tool_call_id: str(m.content) for m in messages if isinstance(m, ToolMessage)}


# --- races: ids and shares across connections -----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that several connections (as several workers would) share."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.sqlite'}"
    else:
        with postgres_schema("side_effects") as url:
            yield url


def race(url: str, count: int, work: Callable[[BaseStore, int], Any]) -> list[Any]:
    """Run ``work(store, n)`` for n in range(count) at once, each on a connection of its own."""
    with open_persistence(url):
        pass  # tables set up once, before the race
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(n: int) -> None:
        with open_persistence(url) as persistence:
            barrier.wait()
            try:
                results[n] = work(persistence.store, n)
            except BackOfficeError as exc:
                results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_refunds_on_separate_connections_never_exceed_an_invoice(shared_url: str) -> None:
    office = BackOffice()

    def ask(store: BaseStore, n: int) -> Any:
        thread = f"conversation-{n}"
        verified(office, store, thread)
        return refund(office, store, thread, amount=25.0)

    results = race(shared_url, 8, ask)

    paid = [r[0] for r in results if isinstance(r, tuple)]
    assert paid, f"no refund was paid at all: {results}"
    assert all(isinstance(r, tuple | BackOfficeError) for r in results)
    with open_persistence(shared_url) as persistence:
        stored = office.refunds(persistence.store)
    assert sorted(r.refund_id for r in stored) == sorted(r.refund_id for r in paid)
    assert len({r.refund_id for r in stored}) == len(stored)
    assert sum(r.amount for r in stored) <= INVOICES["INV-2002"].amount


def test_concurrent_tickets_on_separate_connections_get_distinct_ids(shared_url: str) -> None:
    office = BackOffice()

    def open_one(store: BaseStore, n: int) -> str:
        return office.open_ticket(store, idempotency_key=f"t{n}:ticket:ACC-1001", account_id="ACC-1001",
                                  subject=f"fault {n}")

    ids = race(shared_url, 8, open_one)

    assert len(set(ids)) == 8 and all(i.startswith("TKT-") for i in ids)
    with open_persistence(shared_url) as persistence:
        assert sorted(r.record_id for r in office.tickets(persistence.store)) == sorted(ids)


# --- restarts and workers -------------------------------------------------------------------------


def start_thread(worker: Worker) -> str:
    response = httpx.post(f"{worker.url}/threads", json={}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["thread_id"]


def say(worker: Worker, thread_id: str, text: str) -> dict[str, Any]:
    response = post_message(worker.url, thread_id, text, uuid.uuid4().hex)
    assert response.status_code == 200, response.text
    return response.json()


def refund_said(turn: dict[str, Any]) -> list[str]:
    return [m["text"] for m in turn["messages"] if m["role"] == "tool" and m["agent"] == "issue_refund"]


def stored_refunds(url: str) -> list[Any]:
    with open_persistence(url) as persistence:
        return BackOffice().refunds(persistence.store)


def test_a_refund_paid_before_a_restart_is_already_issued_after_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'handoff.sqlite'}"
    signals, logs = tmp_path / "signals", tmp_path / "logs"
    signals.mkdir()
    logs.mkdir()
    with running_workers(1, url, signals, logs) as [before]:
        thread = start_thread(before)
        turns = [say(before, thread, text) for text in DEMO]
    assert refund_said(turns[-1]) == ["refund RF-3001 of 59.00 issued for INV-2002"]

    with running_workers(1, url, signals, logs) as [after]:
        again = say(after, thread, AGAIN)

    assert refund_said(again) == ["refund RF-3001 of 59.00 already issued for INV-2002"]
    assert [(r.refund_id, r.amount) for r in stored_refunds(url)] == [("RF-3001", 59.0)]


def test_two_workers_on_postgresql_pay_a_refund_once(tmp_path: Path) -> None:
    signals, logs = tmp_path / "signals", tmp_path / "logs"
    signals.mkdir()
    logs.mkdir()
    with postgres_schema("side_effects") as url:
        # Tables set up first: two workers setting up an empty database at once deadlock (the
        # set-up lock's waiter blocks the other's CREATE INDEX CONCURRENTLY); see service/storage.py.
        with open_persistence(url):
            pass
        with running_workers(2, url, signals, logs) as [one, two]:
            thread = start_thread(one)
            turns = [say(one, thread, text) for text in DEMO]
            again = say(two, thread, AGAIN)
            other = start_thread(two)
            elsewhere = [say(two, other, text) for text in DEMO]
        refunds = stored_refunds(url)

    assert refund_said(turns[-1]) == ["refund RF-3001 of 59.00 issued for INV-2002"]
    assert refund_said(again) == ["refund RF-3001 of 59.00 already issued for INV-2002"]
    assert refund_said(elsewhere[-1]) == [
        "refused: INV-2002 has already been refunded in full (59.00); nothing is left to refund"]
    assert [(r.refund_id, r.idempotency_key) for r in refunds] == [("RF-3001", f"{thread}:refund:INV-2002")]


def test_a_graph_compiled_without_a_store_records_in_the_store_compile_gives_it() -> None:
    """Compiled with only an in-memory checkpointer, the graph gets an in-memory store of its own
    (graphs/compiled.py), and the ledger lives there, beside the transcript, not in the office."""
    office = BackOffice()
    graph = build_customer_service_graph(model=OfflineChatModel(), office=office).compile(
        checkpointer=InMemorySaver(serde=serializer()))
    session = HandoffSession(graph)
    for text in DEMO:
        session.send(text)
    session.send(AGAIN)

    assert [r.invoice_id for r in office.refunds(graph.store)] == ["INV-2002"]
    assert office.refunds(None) == []  # the office's own fallback store serves tools run without a graph


def test_tools_run_without_a_store_record_in_the_back_office_s_own_store() -> None:
    office = BackOffice()
    tools = {t.name: t for t in (*general_tools(office), *billing_tools(office))}
    ctx = ToolContext(thread_id="no-store", agent=GENERAL, case_file={})
    verified, _ = ToolCall(tools["verify_identity"], {"name": "verify_identity", "id": "v",
                           "args": {"account_id": "ACC-1001", "postcode": "90210"}}, ctx).run()
    assert "verified" in str(verified.content)
    ctx = ToolContext(thread_id="no-store", agent=BILLING,
                      case_file={"account_id": "ACC-1001", "identity_verified": True})
    paid, _ = ToolCall(tools["issue_refund"], {"name": "issue_refund", "id": "r",
                       "args": {"invoice_id": "INV-2002"}}, ctx).run()
    assert "RF-" in str(paid.content)

    assert [r.invoice_id for r in office.refunds(None)] == ["INV-2002"]
    assert BackOffice().refunds(None) == []  # another back office has a store of its own


# --- replay ---------------------------------------------------------------------------------------


def test_a_replayed_refund_is_paid_on_a_scratch_ledger_only() -> None:
    office = BackOffice()
    graph = compile_memory(build_customer_service_graph(model=OfflineChatModel(), office=office))
    session = HandoffSession(graph)
    session.send(DEMO[0])  # verified: Dana, ACC-1001
    end_of_turn = next(c for c in history(graph, session.thread_id) if c.turn == 1 and c.next == ())

    fork = replay(graph, session.thread_id, end_of_turn.checkpoint_id,
                  message="I was charged twice on invoice INV-2002 and want a refund.")

    assert "refund RF-3001 of 59.00 issued for INV-2002" in fork.turn.reply
    assert office.refunds(graph.store) == [], "the fork's refund reached the real ledger"
    assert not office.owner_verified(graph.store, thread_id=fork.thread_id, account_id="ACC-1001")
    paid = session.send(DEMO[2])  # the original conversation still pays, for real
    assert paid.case_file["refund_ids"] == ["RF-3001"]
    assert [r.refund_id for r in office.refunds(graph.store)] == ["RF-3001"]


def test_a_fork_inherits_only_the_facts_its_checkpoint_shows() -> None:
    store = InMemoryStore()
    ledger = Ledger(store)
    ledger.establish("orig", "identity_verified", "ACC-1001",
                     holds_when={"identity_verified": True, "account_id": "ACC-1001"})
    ledger.establish("orig", "quote", "QUO-801", holds_when={"quote_ids": "QUO-801"})

    kept = ledger.inherit_facts("orig", "fork-a", {"account_id": "ACC-1001", "identity_verified": False,
                                                   "quote_ids": ["QUO-801"]})
    none = ledger.inherit_facts("orig", "fork-b", {})

    assert [f.name for f in kept] == ["quote"] and none == []
    assert ledger.fact("fork-a", "identity_verified", "ACC-1001") is None
    assert ledger.fact("fork-a", "quote", "QUO-801") is not None


def test_the_scratch_store_reads_through_and_keeps_its_writes() -> None:
    real = InMemoryStore()
    office = BackOffice()
    verified(office, real, "orig")
    refund(office, real, "orig", amount=9.0)
    real.put(("handoff", "transcript", "x"), "000000000", {"text": "journal"})
    scratch = ScratchLedgerStore(real)

    verified(office, scratch, "fork")
    refund(office, scratch, "fork")  # what is left: 50.00, on the scratch ledger only
    office.verify_owner(scratch, thread_id="orig", account_id="ACC-1001", postcode="00000")  # revoked there
    scratch.put(("handoff", "transcript", "y"), "000000000", {"text": "journal too"})

    assert [r.amount for r in office.refunds(scratch)] in ([9.0, 50.0], [50.0, 9.0])
    assert [r.amount for r in office.refunds(real)] == [9.0]
    assert office.owner_verified(real, thread_id="orig", account_id="ACC-1001")
    assert not office.owner_verified(scratch, thread_id="orig", account_id="ACC-1001")
    assert real.get(("handoff", "transcript", "y"), "000000000") is not None, "the journal is the real store's"


# --- the other domains ----------------------------------------------------------------------------


def tools_of(specs: list[Any]) -> dict[str, BaseTool]:
    return {t.name: t for spec in specs for t in spec.tools}


def run_tool(tool: BaseTool, args: dict[str, Any], ctx: ToolContext) -> tuple[str, dict[str, Any]]:
    message, updates = ToolCall(tool, {"name": tool.name, "args": args, "id": uuid.uuid4().hex}, ctx).run()
    return str(message.content), updates


NORTHWIND = {"company": "Northwind Traders", "seats": 40, "recommended_plan": "Team", "qualified": True}


def test_a_quote_is_recorded_once_and_its_id_is_unique_across_conversations() -> None:
    tools, store = tools_of(sales_agents()), InMemoryStore()
    first = ToolContext(thread_id="a", agent="closer", case_file=NORTHWIND, store=store)

    text, quoted = run_tool(tools["create_quote"], {"plan": "Team", "seats": 40}, first)
    retried, again = run_tool(tools["create_quote"], {"plan": "Enterprise", "seats": 40}, first)
    _, other = run_tool(tools["create_quote"], {"plan": "Team", "seats": 40},
                        first.model_copy(update={"thread_id": "b"}))

    assert quoted["quote_id"] == "QUO-801" and text.startswith("QUO-801: Team for 40 seats")
    assert again == quoted and retried == text, "a retried step made a second quote"
    assert other["quote_id"] == "QUO-802"
    assert [r.record_id for r in Ledger(store).records("quote")] in (["QUO-801", "QUO-802"], ["QUO-802", "QUO-801"])


def test_an_order_form_is_sent_once_and_only_for_a_current_quote_of_this_conversation() -> None:
    tools, store = tools_of(sales_agents()), InMemoryStore()
    ctx = ToolContext(thread_id="a", agent="closer", case_file=NORTHWIND, store=store)
    _, quoted = run_tool(tools["create_quote"], {"plan": "Team", "seats": 40}, ctx)
    case = {**NORTHWIND, **quoted}

    stranger = run_tool(tools["send_order_form"], {}, ctx.model_copy(update={"thread_id": "b", "case_file": case}))
    forged = {**case, "quote_total": 1.0}
    sent = run_tool(tools["send_order_form"], {}, ctx.model_copy(update={"case_file": forged}))
    again = run_tool(tools["send_order_form"], {}, ctx.model_copy(update={"case_file": case}))
    stale = run_tool(tools["send_order_form"], {}, ctx.model_copy(update={"case_file": {**case, "quote_current": False}}))

    assert stranger == ("refused: QUO-801 was not prepared in this conversation", {})
    assert sent[1] == {"order_id": "ORD-801"} and "15,120.00/year) sent" in sent[0], "the order used forged figures"
    assert again[1] == {"order_id": "ORD-801"} and "already sent" in again[0]
    assert stale[0].startswith("refused: QUO-801 no longer fits")
    assert [r.record_id for r in Ledger(store).records("order")] == ["ORD-801"]


def test_a_publication_is_recorded_once_and_only_for_a_draft_written_here() -> None:
    tools, store = tools_of(content_creation_agents()), InMemoryStore()
    research = {"topic": "heat pumps", "source_ids": ["SRC-101", "SRC-102"], "stage": "drafting"}
    ctx = ToolContext(thread_id="a", agent="writer", case_file=research, store=store)
    _, drafted = run_tool(tools["write_draft"], {"topic": "heat pumps"}, ctx)
    clean = drafted["draft"].replace("very much ", "")
    case = {**research, **drafted, "draft": clean}
    # Only the writer's own text counts: rewrite it as the writer would, then approve.
    written = ctx.model_copy(update={"case_file": {**research, "draft_version": 1, "stage": "revision",
                                                   "revision_notes": "remove the word 'very'"}})
    _, revised = run_tool(tools["write_draft"], {"topic": "heat pumps"}, written)
    review = {**research, **revised, "stage": "review"}

    forged = run_tool(tools["approve_draft"], {}, ctx.model_copy(update={"case_file": case}))
    approved = run_tool(tools["approve_draft"], {}, ctx.model_copy(update={"case_file": review}))
    again = run_tool(tools["approve_draft"], {}, ctx.model_copy(update={"case_file": review}))

    assert forged[0] == "refused: draft v1 on file is not a draft written in this conversation"
    assert approved[1]["publication_id"] == "PUB-1001" and approved[1]["approved"] is True, approved
    assert again[1] == approved[1] and "already approved" in again[0]
    assert [r.record_id for r in Ledger(store).records("publication")] == ["PUB-1001"]


def test_a_production_change_is_applied_once_whoever_asks() -> None:
    tools, store = tools_of(problem_solving_agents()), InMemoryStore()
    ask = [ToolContext(thread_id=t, agent="implementer", case_file={}, store=store) for t in ("a", "a", "b")]

    results = [run_tool(tools["apply_change"], {"plan_id": "PLAN-402"}, ctx) for ctx in ask]

    assert [r[1]["change_id"] for r in results] == ["CHG-502"] * 3
    assert results[0][0].startswith("CHG-502 applied") and all("already applied" in r[0] for r in results[1:])
    assert [r.data["thread_id"] for r in Ledger(store).records("change")] == ["a"]


def test_without_a_store_each_home_keeps_its_own_ledger() -> None:
    home, other = LedgerHome(), LedgerHome()
    home.ledger(None).record_once("ticket", "k", {}, prefix="TKT", first=5001)

    assert [r.key for r in home.ledger(None).records("ticket")] == ["k"]
    assert other.ledger(None).records("ticket") == []
