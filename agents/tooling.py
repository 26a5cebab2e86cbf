"""What the graph injects into an agent's tools, and how tools update the case file.

Tools take ``ctx: Annotated[ToolContext, InjectedToolArg]``: the model never
sees or fills it, so a user's words cannot forge the case file or the
conversation id. Tools that learn something return ``(text, updates)`` with
``response_format="content_and_artifact"``; the updates are merged into the
case file after validation against the domain's CaseFile model.
"""

from __future__ import annotations

import typing
from typing import Any

from langchain_core.tools import BaseTool
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


def resolve_annotations(tool: BaseTool) -> BaseTool:
    """``tool`` with its functions' string annotations evaluated once, in place.

    On every run of a tool, langchain-core looks for a ``RunnableConfig`` parameter of its ``_run``
    and of a function tool's function with ``typing.get_type_hints``; annotations that ``from
    __future__ import annotations`` left as strings (langchain-core's own, this project's, and many
    users') are compiled and evaluated again each time: about 0.25 ms a tool call. Evaluated once, they
    are the objects Python gives without that import, and what ``get_type_hints`` returns either way.
    A function whose annotations do not all resolve is left as it is, for langchain-core to handle as
    before.
    """
    functions = [getattr(tool, name, None) for name in ("func", "coroutine")]
    functions += [getattr(type(tool), name, None) for name in ("_run", "_arun")]
    for func in functions:
        annotations = getattr(func, "__annotations__", None)
        if not isinstance(annotations, dict) or not any(isinstance(a, str) for a in annotations.values()):
            continue
        try:
            func.__annotations__ = typing.get_type_hints(func, include_extras=True)  # type: ignore[union-attr]
        except Exception:  # an unresolvable annotation: langchain-core handles it as before
            continue
    return tool
