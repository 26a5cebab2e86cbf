"""Content creation: Researcher -> Writer -> Editor, and Editor -> Writer for revisions.

The editor may send a draft back to the writer with revision notes at most
``MAX_REVISION_ROUNDS`` times. The bound lives in the case file
(``revision_rounds``, counted by the writer's initialisation action) and is
enforced by the gate through the writer's precondition, so no prompt can talk
its way past it.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, ClassVar, Literal

from langchain_core.tools import BaseTool, InjectedToolArg, tool
from pydantic import Field

from handoff.agents.content_creation.data import (
    SOURCES,
    TOPIC_AUDIENCE,
    compose_draft,
    review_draft,
    sources_on,
    topic_in,
    word_count,
)
from handoff.agents.ledger import LedgerHome
from handoff.agents.spec import AgentSpec, ContextPolicy, HandoffPayload, InitContext
from handoff.agents.tooling import ToolContext
from handoff.agents.triggers import KeywordTrigger, SemanticTrigger, TriggerContext, bind_semantic_routes
from handoff.state import CaseFile, InitResult

RESEARCHER = "researcher"
WRITER = "writer"
EDITOR = "editor"
MAX_REVISION_ROUNDS = 2
"""How many times the editor may hand a draft back to the writer."""

SOURCE_ID = r"^SRC-\d+$"


class ContentCaseFile(CaseFile):
    """What the content desk knows about the piece being written."""

    topic: str | None = None
    audience: str | None = None
    source_ids: list[Annotated[str, Field(pattern=SOURCE_ID)]] = Field(default_factory=list)
    stage: Literal["research", "drafting", "review", "revision", "approved"] | None = None
    draft: str | None = None
    draft_version: int | None = Field(default=None, ge=1)
    word_count: int | None = Field(default=None, ge=0)
    revision_notes: str | None = None
    revision_rounds: int = Field(default=0, ge=0)
    approved: bool | None = Field(default=None, description="The editor approved the draft on file.")
    publication_id: str | None = Field(default=None, pattern=r"^PUB-\d+$")

    bound_facts: ClassVar[dict[str, str | tuple[str, ...]]] = {"approved": ("draft_version", "draft")}
    """An approval is of one draft: a new version or a changed text needs approving again."""


def _digest(draft: str) -> str:
    return hashlib.sha256(draft.encode()).hexdigest()


class WriterHandoff(HandoffPayload):
    """The writer needs the topic; a hand-back from the editor carries revision notes."""

    topic: str = Field(min_length=2, description="What the piece is about.")
    revision_notes: str | None = Field(
        default=None, description="What the editor wants changed; set when a draft is handed back."
    )


class EditorHandoff(HandoffPayload):
    """The editor needs to know which draft to review."""

    draft_version: int = Field(ge=1, description="The draft version to review.")


def researcher_tools() -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def find_sources(query: str) -> tuple[str, dict[str, Any]]:
        """Find research notes on a topic. Use when: research, sources, facts, background"""
        topic = topic_in(query)
        if topic is None:
            return f"no sources found; topics on file: {', '.join(TOPIC_AUDIENCE)}", {}
        found = sources_on(topic)
        listing = "; ".join(f"{s.source_id} {s.title}" for s in found)
        return (f"{len(found)} sources on {topic}: {listing}",
                {"topic": topic, "audience": TOPIC_AUDIENCE[topic], "stage": "research",
                 "source_ids": [s.source_id for s in found]})

    @tool
    def read_source(source_id: Annotated[str, Field(pattern=SOURCE_ID)]) -> str:
        """Read one research note in full. Use when: src-"""
        source = SOURCES.get(source_id)
        return f"{source.title}: {source.fact}." if source else f"error: no source {source_id!r}"

    return (find_sources, read_source)


def writer_tools(home: LedgerHome) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def write_draft(topic: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Write the draft from the sources on file, or revise it by the editor's notes.
        Use when: write, draft, revise, revision, rewrite, fix"""
        case = ctx.case_file
        source_ids = list(case.get("source_ids") or [])
        if not source_ids:
            return "refused: there is no research on file to write from", {}
        revising = case.get("stage") == "revision"
        notes = str(case.get("revision_notes") or "") if revising else ""
        draft = compose_draft(str(case.get("topic") or topic), source_ids, notes)
        version = int(case.get("draft_version") or 0) + 1
        words = word_count(draft.partition("\n\n")[2])
        # What the editor may approve: drafts written in this conversation, by version and text.
        home.ledger(ctx.store).establish(ctx.thread_id, "draft", str(version), holds_when={"draft_version": version},
                                         data={"digest": _digest(draft)})
        return (f"draft v{version} ({words} words):\n{draft}",
                {"draft": draft, "draft_version": version, "word_count": words, "stage": "drafting"})

    @tool
    def outline(topic: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> str:
        """Outline the piece: headline and one point per source. Use when: outline, structure"""
        source_ids = ctx.case_file.get("source_ids") or []
        points = [f"- {SOURCES[i].fact} ({i})" for i in source_ids if i in SOURCES]
        if not points:
            return "refused: there is no research on file to outline"
        return "\n".join([f"Outline for {ctx.case_file.get('topic') or topic}:", *points])

    return (write_draft, outline)


def editor_tools(home: LedgerHome) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def check_draft(ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Check the current draft against the house style guide. Use when: review, check, proofread"""
        draft = ctx.case_file.get("draft")
        if not draft:
            return "refused: there is no draft on file", {}
        issues = review_draft(str(draft))
        version = ctx.case_file.get("draft_version")
        if not issues:
            return f"draft v{version} meets the style guide", {"revision_notes": ""}
        notes = "; ".join(issues)
        return f"draft v{version} needs changes: {notes}", {"revision_notes": notes}

    @tool(response_format="content_and_artifact")
    def approve_draft(ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Approve the draft for publication once it meets the style guide. Use when: approve, publish, final"""
        draft = ctx.case_file.get("draft")
        if not draft:
            return "refused: there is no draft on file", {}
        version = ctx.case_file.get("draft_version")
        ledger = home.ledger(ctx.store)
        written = ledger.fact(ctx.thread_id, "draft", str(version))
        if written is None or written.data.get("digest") != _digest(str(draft)):
            return f"refused: draft v{version} on file is not a draft written in this conversation", {}
        issues = review_draft(str(draft))
        if issues:
            return f"refused: the draft still needs changes: {'; '.join(issues)}", {}
        record, new = ledger.record_once(
            "publication", ctx.key("publish", version),
            {"draft_version": version, "digest": written.data["digest"], "thread_id": ctx.thread_id},
            prefix="PUB", first=1001)
        verb = "approved as" if new else "was already approved as"
        return (f"draft v{version} {verb} {record.record_id}",
                {"stage": "approved", "approved": True, "publication_id": record.record_id})

    return (check_draft, approve_draft)


def _load_brief(ctx: InitContext) -> InitResult:
    """Writer's initialisation: a first brief, or one more revision round."""
    case = ctx.case_file
    payload = ctx.payload_as(WriterHandoff)
    if case.get("stage") == "review":
        rounds = int(case.get("revision_rounds") or 0) + 1
        notes = payload.revision_notes or case.get("revision_notes") or "none given"
        return InitResult(
            action="load_revision_notes",
            summary=f"revision round {rounds} of {MAX_REVISION_ROUNDS} for draft v{case.get('draft_version')}: "
                    f"{notes}",
            case_file_updates={"revision_rounds": rounds, "stage": "revision", "revision_notes": notes},
        )
    sources = case.get("source_ids") or []
    return InitResult(
        action="load_brief",
        summary=f"first draft on {payload.topic} from {len(sources)} sources ({', '.join(sources)})",
        case_file_updates={"stage": "drafting"},
    )


def _load_draft(ctx: InitContext) -> InitResult:
    """Editor's initialisation: pick up the draft and its size."""
    case = ctx.case_file
    return InitResult(
        action="load_draft",
        summary=f"draft v{case.get('draft_version')} on {case.get('topic')}: {case.get('word_count')} words, "
                f"revision round {case.get('revision_rounds') or 0} of {MAX_REVISION_ROUNDS}",
        case_file_updates={"stage": "review"},
    )


def _reopen_research(ctx: InitContext) -> InitResult:
    """Researcher's initialisation when the writer asks for more: what is on file already."""
    sources = ctx.case_file.get("source_ids") or []
    return InitResult(
        action="reopen_research",
        summary=f"{len(sources)} sources on file for {ctx.case_file.get('topic') or 'no topic yet'}; "
                f"the writer asks: {ctx.payload.reason}",
        case_file_updates={"stage": "research"},
    )


def needs_research(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """The writer needs sources on file.

    Args:
        case_file: The conversation's case file.
        payload: The validated handoff payload (unused).
    """
    return None if case_file.get("source_ids") else "there is no research on file yet; find sources first"


def revision_rounds_left(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """The editor may hand a draft back at most MAX_REVISION_ROUNDS times.

    A handoff to the writer while the draft is in review is a revision round;
    the writer's initialisation counts it in ``revision_rounds``.

    Args:
        case_file: The conversation's case file.
        payload: The validated handoff payload (unused).
    """
    rounds = int(case_file.get("revision_rounds") or 0)
    if case_file.get("stage") == "review" and rounds >= MAX_REVISION_ROUNDS:
        return (f"the draft has had {rounds} revision rounds, the limit; "
                "approve it or tell the user what is still wrong")
    return None


def needs_draft(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """The editor needs a draft on file.

    Args:
        case_file: The conversation's case file.
        payload: The validated handoff payload (unused).
    """
    return None if case_file.get("draft") else "there is no draft to edit yet"


def _brief_payload(ctx: TriggerContext) -> dict[str, Any]:
    topic = ctx.case_file.get("topic") or topic_in(ctx.message) or ctx.message[:80]
    sources = ", ".join(ctx.case_file.get("source_ids") or []) or "none yet"
    return {"topic": topic, "summary": f"Research on {topic}: sources {sources}"}


def _review_payload(ctx: TriggerContext) -> dict[str, Any]:
    version = ctx.case_file.get("draft_version")
    return {"draft_version": version, "summary": f"Draft v{version} is ready for review"} if version else {}


def _revision_payload(ctx: TriggerContext) -> dict[str, Any]:
    topic = ctx.case_file.get("topic")
    notes = ctx.case_file.get("revision_notes") or ctx.message[:300]
    return {"topic": topic, "revision_notes": notes} if topic else {"revision_notes": notes}


WRITING_EXAMPLES = (
    "now write the article from what you found",
    "please write it up",
    "put it all together into a blog post",
    "let's start on the first version of the text",
    "compose the piece from those notes",
)
"""Asking for the piece to be written, in the user's own words."""

REVISION_EXAMPLES = (
    "send it back to the writer with those notes",
    "this needs another round of changes",
    "have it rewritten to fix the problems you found",
    "please revise the draft",
    "the writer should correct those issues",
)
"""Asking for a reviewed draft to be reworked."""

REVIEW_EXAMPLES = (
    "send it to the editor for review",
    "can someone proofread it before we publish?",
    "have it checked against the style guide",
    "please give it a final edit",
    "is it ready to be approved?",
)
"""Asking for a draft to be reviewed or approved."""

RESEARCH_EXAMPLES = (
    "please research this topic for me",
    "find me some good sources",
    "what are the key facts about it?",
    "I need background information first",
)
"""What the Researcher hears, so that staying with it competes with the writer's route."""


def content_creation_agents(home: LedgerHome | None = None) -> list[AgentSpec]:
    """The researcher, the writer and the editor.

    Args:
        home: Where drafts and publications are recorded when the graph has no store; a new one by default.
    """
    home = home or LedgerHome()
    return bind_semantic_routes([
        AgentSpec(
            name=RESEARCHER,
            title="Researcher",
            description="Finds and checks sources and facts for a piece.",
            instructions=(
                "You research topics for the content desk. Find sources, report the facts with "
                "their source ids, and hand to the writer when the user wants the piece written."
            ),
            topics=("research", "sources", "facts", "background"),
            tools=researcher_tools(),
            handoffs=(WRITER,),
            on_enter=_reopen_research,
            triggers=(
                KeywordTrigger(name="ready_to_write", target=WRITER,
                               reason="The user asked for the piece to be written.",
                               keywords=("write", "draft"), payload=_brief_payload),
                SemanticTrigger(name="asks_for_the_piece", target=WRITER, examples=WRITING_EXAMPLES,
                                reason="The user asked for the piece to be written.", payload=_brief_payload),
            ),
        ),
        AgentSpec(
            name=WRITER,
            title="Writer",
            description="Writes drafts from the research and revises them by the editor's notes.",
            instructions=(
                "You write short, accurate pieces from the research on file, citing source ids. "
                "On a revision, apply every revision note. Hand finished drafts to the editor."
            ),
            topics=("write", "writer", "draft", "revise", "revision", "rewrite", "fix"),
            tools=writer_tools(home),
            handoffs=(EDITOR, RESEARCHER),
            payload_schema=WriterHandoff,
            on_enter=_load_brief,
            preconditions=(needs_research, revision_rounds_left),
            triggers=(
                SemanticTrigger(name="asks_for_review", target=EDITOR, examples=REVIEW_EXAMPLES,
                                reason="The user asked for the draft to be reviewed.", payload=_review_payload),
            ),
        ),
        AgentSpec(
            name=EDITOR,
            title="Editor",
            description="Reviews drafts against the house style guide and approves them for publication.",
            instructions=(
                "You edit for the house style: word limit, citations, headline length, no hype words. "
                f"Send a draft back to the writer with precise revision notes (at most "
                f"{MAX_REVISION_ROUNDS} rounds) or approve it."
            ),
            topics=("editor", "review", "proofread", "approve", "publish", "style"),
            tools=editor_tools(home),
            handoffs=(WRITER,),
            payload_schema=EditorHandoff,
            on_enter=_load_draft,
            preconditions=(needs_draft,),
            context=ContextPolicy(mode="filtered"),
            triggers=(
                SemanticTrigger(name="asks_for_revision", target=WRITER, examples=REVISION_EXAMPLES,
                                reason="The user asked for the draft to be revised.", payload=_revision_payload),
            ),
        ),
    ], utterances={RESEARCHER: RESEARCH_EXAMPLES})
