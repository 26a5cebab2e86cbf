"""The first node of every turn: record the user's message, run the rule triggers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import TriggerContext, first_firing
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, journaled_node
from handoff.state import CaseFile, HandoffState

INTAKE = "intake"

SENTIMENT_RULES = (
    ("angry", re.compile(r"\b(furious|outrageous|unacceptable|ridiculous|useless)\b|!!!", re.I)),
    ("frustrated", re.compile(r"\b(fed up|frustrat\w*|annoy\w*|still (?:not|broken)|again)\b", re.I)),
)


def sentiment_of(text: str) -> str:
    """angry > frustrated > calm, by keyword; cheap enough to run on every message."""
    return next((label for label, rule in SENTIMENT_RULES if rule.search(text)), "calm")


def make_intake(
    specs: Mapping[str, AgentSpec], *, default_agent: str, case_file_model: type[CaseFile] = CaseFile
) -> RunnableCallable:
    """The intake node: archives the new user message(s), notes sentiment (when the
    domain's case file has that field) and checks the active agent's triggers."""
    tracks_sentiment = "sentiment" in case_file_model.model_fields

    def intake(state: HandoffState, runtime: Runtime, journal: Journal) -> dict[str, Any]:
        messages = state.get("messages") or []
        arrived: list[HumanMessage] = []
        for m in reversed(messages):
            if not isinstance(m, HumanMessage):
                break
            arrived.insert(0, m)
        start = state.get("transcript_len", 0)
        active = state.get("active_agent") or default_agent
        if active not in specs:
            active = default_agent
        update: dict[str, Any] = {
            "transcript_len": journal.append_messages(start, arrived),
            "active_agent": active,
            "turn": state.get("turn", 0) + 1,
            "hops": 0,
            "pending_handoff": None,
        }
        if arrived:
            text = str(arrived[-1].content)
            case_file = dict(state.get("case_file") or {})
            if tracks_sentiment:
                update["case_file"] = {"sentiment": sentiment_of(text)}
                case_file.update(update["case_file"])
            ctx = TriggerContext(source=active, message=text, case_file=case_file, context=runtime.context)
            update["pending_handoff"] = first_firing(specs[active].triggers, ctx)
        return update

    return journaled_node(INTAKE, intake)
