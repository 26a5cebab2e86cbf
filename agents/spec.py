"""An agent is a value: who it is, what it may do, whom it may hand to."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from handoff.agents.triggers import Trigger
from handoff.state import HandoffRequest, InitResult

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class HandoffPayload(BaseModel):
    """What every transfer carries; receivers extend it with the fields they need."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, description="Why the conversation is handed over.")
    summary: str = Field(default="", description="What the receiver needs to know so far.")


class ContextPolicy(BaseModel):
    """How much of the conversation a receiver sees, within a token budget.

    - ``full``: the whole recent window the state holds.
    - ``window``: the last ``last_messages`` messages, plus a one-paragraph
      summary of what came before (built without a model call).
    - ``filtered``: like ``window`` but without other agents' tool calls and
      tool results, which are rarely useful to the receiver.

    The case file and the handoff envelope are always included and are never
    trimmed to meet the budget; only transcript messages are.
    """

    model_config = ConfigDict(frozen=True)

    mode: Literal["full", "window", "filtered"] = "window"
    last_messages: int = Field(default=8, ge=1)
    token_budget: int = Field(default=3000, ge=200)


P = TypeVar("P", bound=HandoffPayload)


class InitContext(BaseModel):
    """What a receiver's initialisation action gets."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    request: HandoffRequest
    payload: HandoffPayload
    case_file: dict[str, Any]


    def payload_as(self, model: type[P]) -> P:
        """The payload as the receiver's own schema, typed for the caller."""
        if isinstance(self.payload, model):
            return self.payload
        return model.model_validate(self.payload.model_dump())


InitAction = Callable[[InitContext], InitResult]
Precondition = Callable[[dict[str, Any], HandoffPayload], str | None]
"""Returns None when the receiver may take the handoff, else the reason it may not."""


class AgentSpec(BaseModel):
    """Everything the builder needs to make one specialist node."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str = Field(description="Node name and handoff target, snake_case.")
    title: str = Field(description="Human name shown to users, e.g. 'Billing Expert'.")
    description: str = Field(description="What this agent handles; shown to agents that can hand to it.")
    instructions: str = Field(description="The agent's system prompt.")
    topics: tuple[str, ...] = Field(
        default=(), description="Words for what it handles; put into its transfer tool's description."
    )
    tools: tuple[BaseTool, ...] = Field(default=(), description="Its own tools, and only its own.")
    handoffs: tuple[str, ...] = Field(default=(), description="Agents it may hand to.")
    payload_schema: type[HandoffPayload] = Field(
        default=HandoffPayload, description="What a handoff to this agent must carry."
    )
    on_enter: InitAction | None = Field(default=None, description="Initialisation action.")
    preconditions: tuple[Precondition, ...] = Field(default=())
    triggers: tuple[Trigger, ...] = Field(
        default=(), description="Rules checked before this agent's model runs."
    )
    context: ContextPolicy = Field(default_factory=ContextPolicy)
    model: BaseChatModel | None = Field(default=None, description="Overrides the graph's model.")
    max_tool_rounds: int = Field(default=4, ge=1)

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"agent name {value!r} must be snake_case letters, digits and _")
        return value

    @property
    def transfer_tool_name(self) -> str:
        return f"transfer_to_{self.name}"
