"""A routing evaluation recorded as a LangSmith experiment.

In LangSmith an experiment is a project that references a dataset, whose root
runs each name the dataset example they ran on, scored by feedback. So
``ExperimentRecorder``:

1. finds or creates the dataset (one example per labelled conversation:
   inputs are the user turns, reference outputs the expected agents and the
   facts). Example ids are derived from the dataset name and the
   conversation's content, so running again adds no duplicates, and a changed
   conversation becomes a new example;
2. creates the experiment project with ``reference_dataset_id``;
3. plays each conversation inside a root run (``langsmith.trace`` with
   ``reference_example_id``) under which the graph's own runs are traced, with
   the graph's usual masking;
4. scores each root run with feedback: ``routing_accuracy``, ``facts_kept``,
   ``handoffs`` and ``rejections``, the figures of the local report;
5. closes the project with the report's totals in its metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from langsmith import Client, trace, tracing_context
from langsmith.run_trees import RunTree
from langsmith.utils import LangSmithNotFoundError

from handoff.graphs.telemetry import flush_traces
from handoff.monitoring.evaluation import ConversationOutcome, ExperimentRef, LabelledConversation

EXAMPLE_IDS = uuid.UUID("5f0c3f55-3c1e-4b8e-9a44-2f6f1d0a7e61")
"""Namespace of the deterministic example ids (uuid5)."""


def example_id(dataset: str, conversation: LabelledConversation) -> uuid.UUID:
    """The example id of a labelled conversation in ``dataset``: the same content, the same id."""
    return uuid.uuid5(EXAMPLE_IDS, f"{dataset}\n{conversation.model_dump_json()}")


def example_of(conversation: LabelledConversation) -> dict[str, Any]:
    """A labelled conversation as a dataset example's inputs, reference outputs and metadata."""
    return {
        "inputs": {"turns": [t.user for t in conversation.turns]},
        "reference_outputs": {"expect": [t.expect for t in conversation.turns], "facts": list(conversation.facts)},
        "metadata": {"conversation": conversation.id, "note": conversation.note},
    }


class ExperimentRecorder:
    """Records one evaluation run as a LangSmith experiment (see the module doc)."""

    def __init__(
        self, client: Client, *, graph: str, dataset_name: str, dataset_id: str, project_id: str,
        name: str, examples_added: int, url: str | None, metadata: dict[str, Any],
    ) -> None:
        self.client = client
        self.graph = graph
        self.dataset_name = dataset_name
        self.dataset_id = dataset_id
        self.project_id = project_id
        self.name = name
        self.examples_added = examples_added
        self.url = url
        self.metadata = metadata

    @classmethod
    def start(
        cls, conversations: Sequence[LabelledConversation], *, graph: str, dataset_name: str,
        experiment_name: str | None = None, metadata: dict[str, Any] | None = None,
        client: Client | None = None,
    ) -> ExperimentRecorder:
        """Make sure the dataset holds every conversation, then open the experiment.

        Args:
            conversations: The labelled conversations about to be played.
            graph: The graph's registry name.
            dataset_name: The LangSmith dataset (created if missing).
            experiment_name: The experiment's name; ``<graph>-<UTC time>-<random>`` otherwise.
            metadata: Extra experiment metadata (e.g. the model).
            client: A langsmith Client; one from the environment otherwise.
        """
        client = client or Client()
        try:
            dataset = client.read_dataset(dataset_name=dataset_name)
            known = {e.id for e in client.list_examples(dataset_id=dataset.id)}
        except LangSmithNotFoundError:
            dataset = client.create_dataset(
                dataset_name, description=f"Labelled routing conversations for the {graph} handoff graph.",
                metadata={"graph": graph})
            known = set()
        ids = [(c, example_id(dataset_name, c)) for c in conversations]
        missing = [{"id": eid, **example_of(c)} for c, eid in ids if eid not in known]
        if missing:
            client.create_examples(dataset_id=dataset.id, examples=missing)
        name = experiment_name or f"{graph}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        metadata = {"graph": graph, **(metadata or {})}
        project = client.create_project(
            name, reference_dataset_id=dataset.id, description=f"handoff eval {graph} on {dataset_name}",
            metadata=metadata)
        return cls(client, graph=graph, dataset_name=dataset_name, dataset_id=str(dataset.id),
                   project_id=str(project.id), name=name, examples_added=len(missing), url=project.url,
                   metadata=metadata)

    @contextmanager
    def conversation(self, conversation: LabelledConversation) -> Iterator[RunTree]:
        """The root run of one conversation; the graph runs started inside it are traced under it."""
        example = example_of(conversation)
        with tracing_context(enabled=True, project_name=self.name, client=self.client), \
                trace(name=f"{self.graph}: {conversation.id}", run_type="chain", inputs=example["inputs"],
                      project_name=self.name, client=self.client,
                      reference_example_id=example_id(self.dataset_name, conversation),
                      metadata={"conversation": conversation.id}) as run:
            yield run

    def score(self, run: RunTree, outcome: ConversationOutcome) -> None:
        """Attach the conversation's outcome to its run: outputs, and one feedback per figure."""
        run.add_outputs({"answered": [t.actual for t in outcome.turns], "facts_kept": outcome.facts_kept,
                         "facts_lost": outcome.facts_lost})
        right = sum(t.correct for t in outcome.turns)
        facts = len(outcome.facts_kept) + len(outcome.facts_lost)
        scores = {
            "routing_accuracy": right / len(outcome.turns),
            "facts_kept": len(outcome.facts_kept) / facts if facts else 1.0,
            "handoffs": outcome.handoffs,
            "rejections": outcome.rejections,
        }
        for key, score in scores.items():
            self.client.create_feedback(run_id=run.id, trace_id=run.id, key=key, score=score,
                                        session_id=self.project_id)

    def finish(self, totals: dict[str, Any]) -> ExperimentRef:
        """Close the experiment with the report's totals, send everything queued, say where it is."""
        self.client.update_project(self.project_id, end_time=datetime.now(UTC), metadata={**self.metadata, **totals})
        self.client.flush()
        flush_traces()
        return ExperimentRef(name=self.name, id=self.project_id, dataset=self.dataset_name,
                             dataset_id=self.dataset_id, examples_added=self.examples_added, url=self.url)
