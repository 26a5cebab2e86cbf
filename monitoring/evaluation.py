"""Routing evaluation: play labelled conversations and score who answered each turn.

A dataset is JSONL, one conversation per line::

    {"id": "refund-after-fix",
     "turns": [{"user": "internet drops, ACC-1001", "expect": "technical_specialist"}, ...],
     "facts": ["ACC-1001"]}

``expect`` is the agent that should answer the turn (``human`` for an
escalation); ``facts`` are strings that must still be in the last model
prompt of the conversation (the case file and briefing count, as they are part
of the prompt), or in what the person is shown when the conversation ends
waiting for one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handoff.graphs.escalation import answer_escalation, pending_escalation
from handoff.graphs.human import HUMAN, HumanAnswer
from handoff.graphs.session import HandoffSession
from handoff.graphs.telemetry import TraceOptions


class ConversationRecorder(Protocol):
    """Where ``evaluate`` also records its run: ``monitoring.experiment.ExperimentRecorder`` (LangSmith).

    A protocol, so this module does not import the experiment module that builds on its types.
    """

    name: str

    def conversation(self, conversation: LabelledConversation) -> AbstractContextManager[Any]: ...

    def score(self, run: Any, outcome: ConversationOutcome) -> None: ...

    def finish(self, totals: dict[str, Any]) -> ExperimentRef: ...


class LabelledTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    expect: str = Field(min_length=1, description="The agent that should answer this turn.")


class LabelledConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    turns: list[LabelledTurn] = Field(min_length=1)
    facts: list[str] = Field(default_factory=list)
    note: str = ""


class DatasetError(ValueError):
    """A dataset line is not a valid labelled conversation; the message names the line."""


def load_dataset(path: Path) -> list[LabelledConversation]:
    """Read and validate a JSONL dataset."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from None
    conversations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            conversations.append(LabelledConversation.model_validate_json(line))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise DatasetError(f"{path}:{number}: {problems}") from None
    if not conversations:
        raise DatasetError(f"{path} holds no conversations")
    return conversations


class TurnOutcome(BaseModel):
    user: str
    expected: str
    actual: str

    @property
    def correct(self) -> bool:
        return self.expected == self.actual


class ConversationOutcome(BaseModel):
    id: str
    turns: list[TurnOutcome]
    facts_kept: list[str]
    facts_lost: list[str]
    handoffs: int
    rejections: int


class ExperimentRef(BaseModel):
    """Where an evaluation was recorded in LangSmith."""

    name: str
    id: str
    dataset: str
    dataset_id: str
    examples_added: int
    url: str | None = None


class EvaluationReport(BaseModel):
    """Routing accuracy per turn and per agent, a confusion table, facts kept."""

    graph: str
    conversations: list[ConversationOutcome]
    turn_accuracy: float
    per_agent_accuracy: dict[str, float]
    confusion: dict[str, dict[str, int]] = Field(description="expected agent -> agent that answered -> count")
    facts_kept: int
    facts_total: int
    handoffs: int
    rejections: int
    experiment: ExperimentRef | None = Field(
        default=None, description="Where the run was recorded in LangSmith (``--experiment``).")


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages of the last chat-model call (any model, real or offline)."""

    def __init__(self) -> None:
        self.last: list[BaseMessage] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        if messages:
            self.last = list(messages[0])


def speaker(session: HandoffSession, path: list[str]) -> str:
    """Who answered the turn: a person if one is waiting, else the last agent that ran."""
    if pending_escalation(session.graph, session.config) is not None:
        return HUMAN
    agents = [n for n in path if n not in ("intake", "handoff_gate")]
    return agents[-1] if agents else session.result().active_agent


def evaluate(
    graph_name: str,
    make_graph: Callable[[], CompiledStateGraph],
    conversations: Iterable[LabelledConversation],
    *,
    experiment: ConversationRecorder | None = None,
) -> EvaluationReport:
    """Play every conversation on a fresh thread and score it.

    Args:
        graph_name: The graph's registry name.
        make_graph: A new compiled graph per conversation (its own memory).
        conversations: The labelled conversations.
        experiment: Also record the run as a LangSmith experiment (monitoring/experiment.py).
    """
    outcomes: list[ConversationOutcome] = []
    trace = TraceOptions.from_env()
    if experiment is not None:
        trace = trace.model_copy(update={"project": experiment.name})
    for conversation in conversations:
        if experiment is None:
            outcomes.append(play(graph_name, make_graph, conversation, trace))
            continue
        with experiment.conversation(conversation) as run:
            outcome = play(graph_name, make_graph, conversation, trace)
            experiment.score(run, outcome)
        outcomes.append(outcome)
    report = summarise(graph_name, outcomes)
    if experiment is not None:
        report.experiment = experiment.finish({
            "turn_accuracy": report.turn_accuracy, "facts_kept": report.facts_kept,
            "facts_total": report.facts_total, "handoffs": report.handoffs, "rejections": report.rejections})
    return report


def play(
    graph_name: str, make_graph: Callable[[], CompiledStateGraph], conversation: LabelledConversation,
    trace: TraceOptions,
) -> ConversationOutcome:
    """One labelled conversation on a fresh graph: who answered each turn, facts kept, handoffs."""
    recorder = PromptRecorder()
    graph = make_graph().with_config({"callbacks": [recorder]})
    session = HandoffSession(graph, thread_id=f"eval-{conversation.id}", graph_name=graph_name, trace=trace)
    turns = []
    for turn in conversation.turns:
        if pending_escalation(session.graph, session.config) is not None:
            answer_escalation(session.graph, session.config,
                              HumanAnswer(reply="(evaluation) a person takes note.", hand_back_to=None))
        result = session.send(turn.user)
        turns.append(TurnOutcome(user=turn.user, expected=turn.expect, actual=speaker(session, result.path)))
    prompt = "\n".join(str(m.content) for m in recorder.last)
    escalation = pending_escalation(session.graph, session.config)
    if escalation is not None:
        # A person answers this turn: what they are shown is what "reaches the model".
        prompt = escalation.model_dump_json()
    records = session.records()
    return ConversationOutcome(
        id=conversation.id, turns=turns,
        facts_kept=[f for f in conversation.facts if f in prompt],
        facts_lost=[f for f in conversation.facts if f not in prompt],
        handoffs=sum(r.outcome == "accepted" for r in records),
        rejections=sum(r.outcome != "accepted" for r in records),
    )


def summarise(graph_name: str, outcomes: list[ConversationOutcome]) -> EvaluationReport:
    """Aggregate per-conversation outcomes into the report."""
    all_turns = [t for o in outcomes for t in o.turns]
    confusion: dict[str, Counter[str]] = {}
    for t in all_turns:
        confusion.setdefault(t.expected, Counter())[t.actual] += 1
    per_agent = {agent: round(counts[agent] / sum(counts.values()), 4) for agent, counts in confusion.items()}
    return EvaluationReport(
        graph=graph_name,
        conversations=outcomes,
        turn_accuracy=round(sum(t.correct for t in all_turns) / len(all_turns), 4) if all_turns else 0.0,
        per_agent_accuracy=dict(sorted(per_agent.items())),
        confusion={k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
        facts_kept=sum(len(o.facts_kept) for o in outcomes),
        facts_total=sum(len(o.facts_kept) + len(o.facts_lost) for o in outcomes),
        handoffs=sum(o.handoffs for o in outcomes),
        rejections=sum(o.rejections for o in outcomes),
    )


def report_json(report: EvaluationReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2)
