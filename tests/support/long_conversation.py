"""A long scripted customer-service conversation for context and storage tests.

The user cycles General Support -> Technical Specialist -> Billing Expert ->
General Support, with a handoff every ``every`` turns: a transfer tool call
(General -> Technical, Billing -> General) or the keyword rule (Technical ->
Billing). Agents also call their own tools (account lookup, identity check,
diagnostics, invoices, refund), and every user line is long, so token budgets
and the message window really bind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.prompt_markers import AGENT_MARKER
from handoff.agents.scripted import ScriptedChatModel, tool_call

CYCLE = (GENERAL, TECHNICAL, BILLING)
FILLER = (
    "For the record, I wrote down the times and what I was doing each time, so that nothing gets "
    "lost between the people I talk to. The flat is on the second floor, the neighbours are quiet, "
    "and I have had the same setup for two years without trouble until recently. "
)
TO = {
    TECHNICAL: "My internet keeps dropping in the evening, please look at the line.",
    BILLING: "I was charged twice on invoice INV-2002 and would like a refund.",
    GENERAL: "A general question now: when are your shops open on Saturdays?",
}
TOPIC = {TECHNICAL: "internet keeps dropping", BILLING: "refund", GENERAL: "general question"}
TOOL_WISH = {
    "[account]": (GENERAL, [("lookup_account", {"account_id": "ACC-1001"}),
                            ("verify_identity", {"account_id": "ACC-1001", "postcode": "90210"})]),
    "[diagnose]": (TECHNICAL, [("run_diagnostics", {"account_id": "ACC-1001"})]),
    "[invoices]": (BILLING, [("list_invoices", {"account_id": "ACC-1001"})]),
    "[pay back]": (BILLING, [("issue_refund", {"invoice_id": "INV-2002"})]),
}
PAYLOAD = {
    TECHNICAL: {"account_id": "ACC-1001", "symptoms": "the connection drops every evening"},
    BILLING: {"account_id": "ACC-1001", "invoice_id": "INV-2002"},
    GENERAL: {},
}


@dataclass(frozen=True)
class Line:
    """One user turn: the text, who should answer it, and whether it moves the conversation."""

    number: int
    text: str
    answered_by: str
    handoff: bool


def user_lines(turns: int, every: int = 7) -> list[Line]:
    """The user's side of the conversation."""
    lines: list[Line] = []
    at = 0
    for number in range(1, turns + 1):
        handoff = number > 1 and number % every == 1
        if handoff:
            at = (at + 1) % len(CYCLE)
            head = TO[CYCLE[at]]
        elif number == 1:
            head = "[account] Hi, this is Dana Reyes, account ACC-1001, postcode 90210."
        else:
            agent = CYCLE[at]
            wish = {TECHNICAL: "[diagnose]", BILLING: "[invoices]" if number % 2 else "[pay back]"}
            head = (wish.get(agent, "") if number % every == 3 else "") + f" Another detail, number {number}."
        lines.append(Line(number, f"{head.strip()} {FILLER * 2}(turn {number})", CYCLE[at], handoff))
    return lines


def reply_policy() -> Any:
    """Scripted agents: transfer on another agent's topic, call wished tools once, else answer."""
    ids = itertools.count(1)

    def reply(messages: Sequence[BaseMessage]) -> AIMessage:
        system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
        me = system.split(AGENT_MARKER, 1)[1].split("\n", 1)[0].strip()
        human_at = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        user = str(messages[human_at].content)
        mine = [m for m in messages[human_at + 1:] if isinstance(m, AIMessage) and m.name == me]
        owner = next((agent for agent, words in TOPIC.items() if words in user.lower()), None)
        if owner and owner != me and not mine:
            args = {"reason": f"The customer needs {owner.replace('_', ' ')}.",
                    "summary": f"User said: {user[:100]}", **PAYLOAD[owner]}
            return AIMessage(content="", tool_calls=[tool_call(f"transfer_to_{owner}", args, f"call_{next(ids)}")])
        for marker, (agent, wanted) in TOOL_WISH.items():
            if agent == me and user.startswith(marker) and not mine:
                return AIMessage(content="", tool_calls=[tool_call(name, args, f"call_{next(ids)}")
                                                         for name, args in wanted])
        results = [str(m.content) for m in messages[human_at + 1:] if isinstance(m, ToolMessage)]
        found = f" What I found: {' | '.join(results)[:200]}." if results else ""
        return AIMessage(content=f"{me} answering: noted ({user[:80]}).{found} "
                                 "I have written this on your case; tell me if anything changes.")

    return reply


def scripted_model() -> ScriptedChatModel:
    """A ScriptedChatModel that records every prompt and follows ``reply_policy``."""
    return ScriptedChatModel(default=reply_policy())
