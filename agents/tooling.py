"""What the graph injects into an agent's tools, and how tools update the case file.

Tools take ``ctx: Annotated[ToolContext, InjectedToolArg]``: the model never
sees or fills it, so a user's words cannot forge the case file or the
conversation id. Tools that learn something return ``(text, updates)`` with
``response_format="content_and_artifact"``; the updates are merged into the
case file after validation against the domain's CaseFile model.
"""

from __future__ import annotations

from typing import Any

from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict, Field

CONTEXT_ARG = "ctx"


class ToolContext(BaseModel):
    """Trusted facts a tool may rely on."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    thread_id: str
    agent: str
    case_file: dict[str, Any]
    store: BaseStore | None = Field(
        default=None, description="The graph's LangGraph store (the run's own persistence), if it has one."
    )
    context: Any = Field(
        default=None, description="The run's context (the graph's context_schema): e.g. a user or tenant id."
    )

    def key(self, *parts: object) -> str:
        """An idempotency key scoped to this conversation."""
        return ":".join([self.thread_id, *(str(p) for p in parts)])
