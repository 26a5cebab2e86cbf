"""Where a turn starts: the user's message taken in, and the rule triggers that may hand it on first.

Taking a message in (archiving it to the journal, counting the turn, resetting the hop budget,
noting sentiment) is done by the turn's first node, in its own step, so a turn whose rules stay
quiet is one node, one step checkpoint, as in a plain LangGraph chat:

    START --(no rule fires)--> the active agent, which takes the message in itself
    START --(a rule fires)---> intake (takes it in) -> handoff_gate -> receiver
    START --(a person has the conversation)--> intake -> human

A node that pauses for a person (``interrupt()``) stores nothing until the person answers, so the
turns a person answers keep ``intake`` first: the user's message is archived while they wait.

``taken_in`` (the id of the last user message taken in) says whether a node is the turn's first:
the receiver after a handoff, a retried attempt and a resumed escalation all see the message as
taken in already, or see the same state again and write the same thing.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import TriggerContext, first_firing
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, journaled_node, thread_of
from handoff.state import CaseFile, HandoffRequest, HandoffState, merge_case_file

INTAKE = "intake"
RULE_FIRES = "a rule fires or a person answers"
"""The label of START's edge to intake."""

SENTIMENT_RULES = (
    ("angry", re.compile(r"\b(furious|outrageous|unacceptable|ridiculous|useless)\b|!!!", re.I)),
    ("frustrated", re.compile(r"\b(fed up|frustrat\w*|annoy\w*|still (?:not|broken)|again)\b", re.I)),
)
DECIDED_KEPT = 256
"""Rule decisions START keeps for intake; one is taken per fired turn, so only abandoned runs leave any."""


def sentiment_of(text: str) -> str:
    """angry > frustrated > calm, by keyword; cheap enough to run on every message."""
    return next((label for label, rule in SENTIMENT_RULES if rule.search(text)), "calm")


def arrivals(state: HandoffState) -> list[HumanMessage]:
    """The user's messages at the end of the window that no node has taken in yet."""
    taken = state.get("taken_in")
    arrived: list[HumanMessage] = []
    for message in reversed(state.get("messages") or []):
        if not isinstance(message, HumanMessage) or (taken is not None and message.id == taken):
            break
        arrived.insert(0, message)
    return arrived


def awaits_intake(state: HandoffState) -> bool:
    """Whether the node running now is the turn's first, and so takes the user's message in.

    A thread checkpointed before ``taken_in`` existed (no marker, turns already counted) never
    says so: its next turn goes through ``intake``, which sets the marker.
    """
    if state.get("taken_in") is None and state.get("turn", 0) > 0:
        return False
    return bool(arrivals(state))


def start_turn(state: HandoffState, journal: Journal, *, active: str, tracks_sentiment: bool) -> dict[str, Any]:
    """The update that starts a turn: the arrived messages archived, the turn counted, the hop
    budget and any stale request reset, sentiment noted (when the case file has that field)."""
    arrived = arrivals(state)
    update: dict[str, Any] = {
        "transcript_len": journal.append_messages(state.get("transcript_len", 0), arrived),
        "active_agent": active,
        "turn": state.get("turn", 0) + 1,
        "hops": 0,
        "pending_handoff": None,
        # The records are a delta channel (state/conversation.py): an empty write once a turn keeps
        # their snapshots a few turns apart, so reading them never walks far back.
        "handoffs": [],
    }
    if arrived:
        update["taken_in"] = arrived[-1].id  # given by append_messages if the message had none
        if tracks_sentiment:
            update["case_file"] = {"sentiment": sentiment_of(str(arrived[-1].content))}
    return update


def open_turn(state: HandoffState, journal: Journal, *, agent: str,
              tracks_sentiment: bool) -> tuple[HandoffState, dict[str, Any]]:
    """For a node that may be the turn's first: the state as the rest of its step sees it, and the
    turn's opening update (empty when the message was taken in already)."""
    if not awaits_intake(state):
        return state, {}
    opening = start_turn(state, journal, active=agent, tracks_sentiment=tracks_sentiment)
    view: dict[str, Any] = {**state, **opening}
    if "case_file" in opening:
        view["case_file"] = merge_case_file(state.get("case_file"), opening["case_file"])
    return view, opening  # type: ignore[return-value]


def with_opening(opening: Mapping[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A node's ``update`` with the turn's ``opening`` under it: one write, as if applied in turn."""
    if not opening:
        return update
    merged = {**opening, **update}
    if "case_file" in opening and "case_file" in update:
        merged["case_file"] = merge_case_file(opening["case_file"], update["case_file"])
    return merged


class TurnRules:
    """The rule triggers a turn's new message meets, decided once when START routes the turn and
    handed to ``intake`` (a semantic trigger's embedding or a classifier's call is not made twice)."""

    def __init__(self, specs: Mapping[str, AgentSpec], *, default_agent: str,
                 case_file_model: type[CaseFile] = CaseFile, pausing: frozenset[str] = frozenset()) -> None:
        """``pausing``: the nodes that wait for a person; their turns start at intake."""
        self.specs = specs
        self.default_agent = default_agent
        self.pausing = pausing
        self.tracks_sentiment = "sentiment" in case_file_model.model_fields
        self._decided: OrderedDict[tuple[str, ...], HandoffRequest] = OrderedDict()
        self._lock = threading.Lock()

    def active(self, state: HandoffState) -> str:
        """Who answers: the state's active agent, or the default for none or one the graph lacks."""
        active = state.get("active_agent") or self.default_agent
        return active if active in self.specs else self.default_agent

    def fired(self, state: HandoffState, active: str, runtime: Runtime | None) -> HandoffRequest | None:
        """The first of ``active``'s triggers the arrived message fires (sentiment noted first)."""
        arrived = arrivals(state)
        if not arrived:
            return None
        text = str(arrived[-1].content)
        case_file = dict(state.get("case_file") or {})
        if self.tracks_sentiment:
            case_file["sentiment"] = sentiment_of(text)
        ctx = TriggerContext(source=active, message=text, case_file=case_file, context=runtime.context if runtime else None)
        return first_firing(self.specs[active].triggers, ctx)

    def route(self, state: HandoffState, runtime: Runtime | None) -> str:
        """START's branch: the active agent, unless a rule fires, a person answers, or an old thread
        needs intake. ``runtime`` is None when the branch runs outside a run (``update_state`` as
        START, as Studio adds a user's message): the triggers then see no context."""
        active = self.active(state)
        if active in self.pausing or not awaits_intake(state):
            return RULE_FIRES
        request = self.fired(state, active, runtime)
        if request is None:
            return active
        with self._lock:
            self._decided[self._key(state, active, runtime)] = request
            while len(self._decided) > DECIDED_KEPT:
                self._decided.popitem(last=False)
        return RULE_FIRES

    def decided(self, state: HandoffState, active: str, runtime: Runtime) -> HandoffRequest | None:
        """The request START decided for this very message, else decided now (another process
        routed the turn, or the run was continued from its checkpoint)."""
        with self._lock:
            request = self._decided.pop(self._key(state, active, runtime), None)
        return request if request is not None else self.fired(state, active, runtime)

    @staticmethod
    def _key(state: HandoffState, active: str, runtime: Runtime | None) -> tuple[str, ...]:
        arrived = arrivals(state)
        last = arrived[-1] if arrived else None
        return (thread_of(runtime) if runtime else "", active, str(last.id if last else ""), str(last.content if last else ""))


def make_intake(rules: TurnRules) -> RunnableCallable:
    """The intake node, for a turn where a rule fires: takes the message in and asks for the handoff."""

    def intake(state: HandoffState, runtime: Runtime, journal: Journal) -> dict[str, Any]:
        active = rules.active(state)
        request = rules.decided(state, active, runtime)
        update = start_turn(state, journal, active=active, tracks_sentiment=rules.tracks_sentiment)
        update["pending_handoff"] = request
        return update

    # The intake run's traced metadata names the agent it routed to (graphs/telemetry.py), changed or not.
    return journaled_node(INTAKE, intake, keep={"active_agent"})
