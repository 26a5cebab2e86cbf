"""A conversation that dies inside the billing receiver, and its resumption.

Run as ``python -m tests.support.crash_refund PHASE DB THREAD WHEN``:
``crash`` hands the conversation to billing and kills the process (``os._exit``)
either before or after the refund is paid; ``resume`` opens the same database
(conversations and the back office's ledger alike) in a new process, continues
the thread from its last checkpoint and prints JSON.
"""

from __future__ import annotations

import json
import os
import sys

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import BILLING, GENERAL
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession

REFUND = calls(tool_call("issue_refund", {"invoice_id": "INV-2002"}, "refund_call"))


def die(_messages: object) -> None:
    os._exit(137)


def main() -> None:
    phase, db, thread, when = sys.argv[1:5]
    if phase == "crash":
        billing = [die] if when == "before_refund" else [REFUND, die]
        model = ScriptedChatModel(scripts={
            GENERAL: [calls(tool_call("lookup_account", {"account_id": "ACC-1001"}, "a"),
                            tool_call("verify_identity", {"account_id": "ACC-1001", "postcode": "90210"}, "b")),
                      "You are verified.",
                      calls(tool_call("transfer_to_billing_expert", {
                          "reason": "duplicate charge", "account_id": "ACC-1001",
                          "invoice_id": "INV-2002", "wants_refund": True}, "t"))],
            BILLING: billing,
        })
    else:
        model = ScriptedChatModel(scripts={BILLING: [REFUND, "Your refund is confirmed."]})
    with open_persistence(db) as persistence:
        office = BackOffice()
        graph = build_customer_service_graph(model=model, office=office).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        session = HandoffSession(graph, thread)
        if phase == "crash":
            session.send("Hi, ACC-1001, postcode 90210")
            session.send("My card was charged twice for October")
            raise SystemExit("the receiver should have died")
        before = graph.get_state(session.config).next
        graph.invoke(None, session.config)
        result = session.result()
        print(json.dumps({
            "next_before_resume": list(before),
            "reply": result.reply,
            "active_agent": result.active_agent,
            "refunds": [r.model_dump() for r in office.refunds(persistence.store)],
            "handoffs": [(r.source, r.target, r.outcome) for r in result.handoffs],
        }))


if __name__ == "__main__":
    main()
