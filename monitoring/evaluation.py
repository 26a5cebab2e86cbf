"""Routing evaluation: play labelled conversations and score who answered each turn.

A dataset is JSONL, one conversation per line::

    {"id": "refund-after-fix",
     "turns": [{"user": "internet drops, ACC-1001", "expect": "technical_specialist"}, ...],
     "facts": ["ACC-1001"]}

``expect`` is the agent that should answer the turn (``human`` for an
escalation); ``facts`` are strings that must still be in the last model
prompt of the conversation (the case file and briefing count, as they are part
of the prompt), or in what the person is shown when the conversation ends
waiting for one. An optional ``split`` (``tune`` or ``report``) says whether a
conversation may be looked at while tuning routing, or only reported on.

Each turn also records what handed it over before any model ran (a rule or a
semantic trigger), how many model calls it made and how long it took.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from statistics import mean, median
from typing import Any, Literal, Protocol
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handoff.graphs.escalation import answer_escalation, pending_escalation
from handoff.graphs.human import HUMAN, HumanAnswer
from handoff.graphs.session import HandoffSession
from handoff.graphs.telemetry import TraceOptions
from handoff.state import TriggerKind

Split = Literal["tune", "report"]


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
    split: Split | None = Field(
        default=None, description="'tune': may be looked at while tuning routing; 'report': only reported on.")


class DatasetError(ValueError):
    """A dataset line is not a valid labelled conversation; the message names the line."""


def load_dataset(path: Path, *, split: Split | None = None) -> list[LabelledConversation]:
    """Read and validate a JSONL dataset; with ``split``, only that split's conversations."""
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
    if split is not None:
        conversations = [c for c in conversations if c.split == split]
    if not conversations:
        raise DatasetError(f"{path} holds no conversations" + (f" in split {split!r}" if split else ""))
    return conversations


class TurnOutcome(BaseModel):
    user: str
    expected: str
    actual: str
    trigger: TriggerKind | None = Field(
        default=None, description="What handed the turn over before any model ran, if the handoff was accepted.")
    model_calls: int = Field(default=0, ge=0)
    ms: float = Field(default=0.0, ge=0, description="Wall time of the turn.")

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
    router: str | None = Field(default=None, description="Which router decided handoffs (``--router``).")
    model_calls: int = 0
    calls_saved: int = Field(
        default=0, description="Turns handed over by a trigger before any model ran: each spared at least one "
                               "model call on the wrong agent.")
    saved_by: dict[str, int] = Field(default_factory=dict, description="calls_saved by trigger kind.")
    ms_per_turn: float | None = Field(default=None, description="Mean wall time of a turn.")
    ms_per_turn_median: float | None = None
    experiment: ExperimentRef | None = Field(
        default=None, description="Where the run was recorded in LangSmith (``--experiment``).")


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages of the last chat-model call (any model, real or offline) and counts calls."""

    def __init__(self) -> None:
        self.last: list[BaseMessage] = []
        self.calls = 0

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        self.calls += 1
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
    router: str | None = None,
) -> EvaluationReport:
    """Play every conversation on a fresh thread and score it.

    Args:
        graph_name: The graph's registry name.
        make_graph: A new compiled graph per conversation (its own memory).
        conversations: The labelled conversations.
        experiment: Also record the run as a LangSmith experiment (monitoring/experiment.py).
        router: The name of the router the graphs were built with, for the report.
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
    report = summarise(graph_name, outcomes, router=router)
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
        before, calls, started = len(session.records()), recorder.calls, time.perf_counter()
        result = session.send(turn.user)
        ms = (time.perf_counter() - started) * 1000
        turns.append(TurnOutcome(user=turn.user, expected=turn.expect, actual=speaker(session, result.path),
                                 trigger=handed_over_by(result.path, result.handoffs[before:]),
                                 model_calls=recorder.calls - calls, ms=round(ms, 3)))
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


def handed_over_by(path: list[str], records: list[Any]) -> TriggerKind | None:
    """The trigger kind whose handoff the intake made and the gate accepted, before any model ran."""
    if path[:2] != ["intake", "handoff_gate"] or not records or records[0].outcome != "accepted":
        return None
    return records[0].request.trigger


def summarise(graph_name: str, outcomes: list[ConversationOutcome], *, router: str | None = None
              ) -> EvaluationReport:
    """Aggregate per-conversation outcomes into the report."""
    all_turns = [t for o in outcomes for t in o.turns]
    saved = Counter(t.trigger for t in all_turns if t.trigger is not None)
    times = [t.ms for t in all_turns]
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
        router=router,
        model_calls=sum(t.model_calls for t in all_turns),
        calls_saved=sum(saved.values()),
        saved_by=dict(sorted(saved.items())),
        ms_per_turn=round(mean(times), 3) if times else None,
        ms_per_turn_median=round(median(times), 3) if times else None,
    )


def report_json(report: EvaluationReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2)
