"""One scripted customer-service conversation, played the same way through every peer.

The user's lines cycle General -> Technical -> Billing -> General, with a
handoff every ``every`` turns. The agents' replies come from a zero-latency
ScriptedChatModel whose reply policy reads only the prompt, so the same policy
drives this project's graph and langgraph-swarm's:

- the user's latest line names a topic owned by another agent and this agent
  has not handed over in this turn yet -> call ``transfer_to_<owner>``;
- otherwise answer in a few sentences.

In this project the Technical -> Billing handoff is taken by a keyword rule
before any model runs, so that handoff costs one model call instead of two.

The floor (one chat agent) always answers; langgraph-supervisor's supervisor
routes each line to the agent that owns the conversation's latest topic and
closes the turn once that agent has answered.
"""

from __future__ import annotations

import itertools
import json
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL
from handoff.agents.prompt_markers import AGENT_MARKER
from handoff.agents.scripted import ScriptedChatModel, tool_call

CYCLE = (GENERAL, TECHNICAL, BILLING)

HANDOFF_LINES = {
    TECHNICAL: "My internet keeps dropping every evening around eight, turn {turn}.",
    BILLING: "I was charged twice on invoice INV-2002 this month and want a refund, turn {turn}.",
    GENERAL: "Thanks for that. A general question now: when are your shops open? turn {turn}.",
}
"""The line that moves the conversation to each agent; each holds its owner's topic words."""

TOPIC_WORDS = {TECHNICAL: "internet keeps dropping", BILLING: "refund", GENERAL: "general question"}

CHAT_LINES = {
    GENERAL: (
        "Hi, this is Dana Reyes, account ACC-1001, postcode 90210. Turn {turn}.",
        "Can you confirm the email address you have for me is still dana@example.com? Turn {turn}.",
        "I am moving flat next spring and wonder what that means for my contract. Turn {turn}.",
        "Is there a way to get paper letters instead of messages to my phone? Turn {turn}.",
    ),
    TECHNICAL: (
        "The lights on the router blink amber for a minute after each drop. Turn {turn}.",
        "I restarted the router twice and moved it away from the microwave. Turn {turn}.",
        "The laptop and the television both lose the connection at the same moment. Turn {turn}.",
        "It is at its peak on weekday evenings, mornings are fine as far as I can tell. Turn {turn}.",
    ),
    BILLING: (
        "The second charge shows the same amount, fifty-nine, two days after the first. Turn {turn}.",
        "I pay by direct debit from the same bank account as always. Turn {turn}.",
        "Could you tell me when the money will be back in my account? Turn {turn}.",
        "Please also check whether last month's statement had the same problem. Turn {turn}.",
    ),
}

ANSWER = (
    "{title} here. About your message ({quote}): {finding} I have noted it on your case as "
    "reference {ref}; tell me if anything changes."
)

DETAIL_PARTS = (
    ("Yesterday", "On Monday", "Last week", "This morning", "Around lunch", "Late at night",
     "Before the holidays", "After the storm", "Twice today", "Every so often"),
    ("my partner", "the neighbour", "my son", "a colleague", "the landlord", "my sister",
     "the old tablet", "the new phone", "the smart speaker", "the printer upstairs"),
    ("noticed", "mentioned", "complained", "wrote down", "checked", "asked", "guessed",
     "remembered", "confirmed", "doubted"),
    ("that the signal was weak", "that the page would not load", "that the letter looked odd",
     "that the app showed an error", "that the amount seemed high", "that the light went red",
     "that nobody answered the phone", "that the parcel never came", "that the speed halved",
     "that the screen froze"),
)
FINDINGS = (
    "Our records show nothing unusual on the line this week.",
    "I can see the same pattern in the logs from the exchange.",
    "The account history lines up with what you describe.",
    "There was maintenance nearby, which may explain part of it.",
    "Nothing on our side contradicts that, so I have flagged it.",
    "The last engineer visit noted a similar remark.",
    "Your settings look correct from here.",
    "I compared it with the previous month and it stands out.",
)

PAYLOADS: dict[str, dict[str, Any]] = {
    TECHNICAL: {"account_id": "ACC-1001", "symptoms": "connection drops every evening"},
    BILLING: {"account_id": "ACC-1001", "invoice_id": "INV-2002"},
    GENERAL: {},
}
"""The typed payload fields this project's receivers require (swarm's tools take none)."""


@dataclass(frozen=True)
class Turn:
    """One user line and the agent expected to answer it."""

    number: int
    text: str
    answered_by: str
    handoff: bool


def script(turns: int, every: int) -> list[Turn]:
    """The user's side: a handoff line every ``every`` turns, chat lines in between."""
    out: list[Turn] = []
    at = 0
    for number in range(1, turns + 1):
        handoff = number % every == 0
        if handoff:
            at = (at + 1) % len(CYCLE)
            text = HANDOFF_LINES[CYCLE[at]].format(turn=number)
        else:
            lines = CHAT_LINES[CYCLE[at]]
            text = f"{lines[(number - 1) % len(lines)].format(turn=number)} {detail(number)}"
        out.append(Turn(number=number, text=text, answered_by=CYCLE[at], handoff=handoff))
    return out


def detail(number: int) -> str:
    """A varied, deterministic sentence, so the text compresses like real chat, not like a loop."""
    rng = random.Random(number)
    return " ".join(rng.choice(part) for part in DETAIL_PARTS) + f", around {rng.randint(1, 12)} o'clock."


def topic_owner(text: str) -> str | None:
    """The agent whose topic words the user's line holds, if any."""
    lowered = text.lower()
    return next((agent for agent, words in TOPIC_WORDS.items() if words in lowered), None)


def answer(me: str, user: str) -> AIMessage:
    """The reply every peer's agent gives to ``user``: a few sentences that quote it."""
    title = me.replace("_", " ").title() or "Support"
    seed = zlib.crc32(user.encode())
    return AIMessage(content=ANSWER.format(title=title, quote=user[:60], ref=f"R{seed % 1_000_000:06d}",
                                           finding=FINDINGS[seed % len(FINDINGS)]))


def _agent_and_user(messages: Sequence[BaseMessage]) -> tuple[str, str, bool]:
    """Who the prompt is for, the user's latest line, and whether a tool ran since that line."""
    system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
    me = system.split(AGENT_MARKER, 1)[1].split("\n", 1)[0].strip() if AGENT_MARKER in system else ""
    last_human = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    user = str(messages[last_human].content) if last_human >= 0 else ""
    handed = any(isinstance(m, ToolMessage) for m in messages[last_human + 1 :])
    return me, user, handed


def reply_policy(*, typed_payloads: bool) -> Callable[[Sequence[BaseMessage]], AIMessage]:
    """The scripted agents' behaviour; ``typed_payloads`` adds this project's payload fields."""

    ids = itertools.count(1)

    def reply(messages: Sequence[BaseMessage]) -> AIMessage:
        me, user, handed = _agent_and_user(messages)
        owner = topic_owner(user)
        if owner and owner != me and not handed:
            args: dict[str, Any] = {"reason": f"The customer needs {owner.replace('_', ' ')}."}
            if typed_payloads:
                args |= {"summary": f"User said: {user[:120]}", **PAYLOADS[owner]}
            return AIMessage(content="", tool_calls=[tool_call(f"transfer_to_{owner}", args,
                                                               call_id=f"call_{next(ids)}")])
        return answer(me, user)

    return reply


def floor_policy(messages: Sequence[BaseMessage]) -> AIMessage:
    """The floor's one agent: it answers every line itself."""
    _, user, _ = _agent_and_user(messages)
    return answer("support", user)


SUPERVISOR = "supervisor"


def supervisor_policy() -> Callable[[Sequence[BaseMessage]], AIMessage]:
    """langgraph-supervisor's router: hand the line to the owner of the latest topic, then close the turn."""

    ids = itertools.count(1)

    def reply(messages: Sequence[BaseMessage]) -> AIMessage:
        me, user, handed = _agent_and_user(messages)
        if me != SUPERVISOR:
            return answer(me, user)
        if handed:
            return AIMessage(content="Anything else I can help you with?")
        topics = (topic_owner(str(m.content)) for m in reversed(messages) if isinstance(m, HumanMessage))
        owner = next((t for t in topics if t), GENERAL)
        return AIMessage(content="", tool_calls=[tool_call(f"transfer_to_{owner}", {},
                                                           call_id=f"route_{next(ids)}")])

    return reply


def scripted_model(*, typed_payloads: bool) -> ScriptedChatModel:
    """A zero-latency model that answers every agent with ``reply_policy``."""
    return ScriptedChatModel(default=reply_policy(typed_payloads=typed_payloads))


def prompt_chars(messages: Sequence[BaseMessage]) -> int:
    """Characters a model call was sent: every message's text and tool-call arguments."""
    total = 0
    for m in messages:
        total += len(str(m.content))
        if isinstance(m, AIMessage) and m.tool_calls:
            total += len(json.dumps([tc["args"] for tc in m.tool_calls]))
    return total
