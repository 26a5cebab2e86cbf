"""An agent is a value: who it is, what it may do, whom it may hand to."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handoff.agents.triggers import Trigger
from handoff.state import HandoffRequest, InitResult

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


InputFilter = Callable[[list[BaseMessage]], Sequence[BaseMessage]]
"""Takes the history a receiver would see and returns what it sees instead (the case file and
briefing are always added; a tool call and its result are kept or dropped together afterwards)."""


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
    input_filter: InputFilter | None = Field(
        default=None,
        description="Shapes the history this agent sees, after the mode and before the budget "
        "(agents/filters.py has ready ones); a handoff's own filter (Handoff.input_filter) wins.",
    )


P = TypeVar("P", bound=HandoffPayload)


class InitContext(BaseModel):
    """What a receiver's initialisation action gets."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    request: HandoffRequest
    payload: HandoffPayload
    case_file: dict[str, Any]
    context: Any = Field(default=None, description="The run's context (the graph's context_schema), if any.")

    def payload_as(self, model: type[P]) -> P:
        """The payload as the receiver's own schema, typed for the caller."""
        if isinstance(self.payload, model):
            return self.payload
        return model.model_validate(self.payload.model_dump())


InitAction = Callable[[InitContext], InitResult]
Precondition = Callable[..., str | None]
"""``(case_file, payload)`` or ``(case_file, payload, context)``: returns None when the receiver may
take the handoff, else the reason it may not. ``context`` is the run's context (context_schema)."""


def call_precondition(check: Precondition, case_file: dict[str, Any], payload: HandoffPayload,
                      context: Any) -> str | None:
    """A precondition called with the run's context when it takes one."""
    return check(case_file, payload, context) if takes_context(check) else check(case_file, payload)


def takes_context(check: Callable[..., Any]) -> bool:
    """Whether a precondition accepts a third argument, the run's context."""
    try:
        params = list(inspect.signature(check).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 3


class HandoffCheck(BaseModel):
    """What a handoff's enabled-check sees: who would hand to whom, the case file and the run's context."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    source: str
    target: str
    case_file: dict[str, Any]
    context: Any = None


class Handoff(BaseModel):
    """One allowed handoff with its own policy, like the OpenAI Agents SDK's ``handoff()``.

    ``AgentSpec.handoffs`` takes these beside plain target names.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    target: str
    tool_name: str | None = Field(
        default=None, description="Overrides ``transfer_to_<target>``; a tool name of letters, digits, _ and -."
    )
    tool_description: str | None = Field(default=None, description="Overrides the transfer tool's description.")
    is_enabled: Callable[[HandoffCheck], bool] | None = Field(
        default=None,
        description="When it returns False the transfer tool is not offered to the model at all, and the "
        "gate refuses the handoff if it is asked for anyway (code handoff_disabled).",
    )
    input_filter: InputFilter | None = Field(
        default=None, description="Shapes the receiver's history while it holds a conversation it got this way."
    )

    @field_validator("tool_name")
    @classmethod
    def _tool_name(cls, value: str | None) -> str | None:
        if value is not None and not TOOL_NAME_PATTERN.match(value):
            raise ValueError(f"tool name {value!r} must be 1-64 letters, digits, _ or -")
        return value


TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

AgentFactory = Callable[[list[BaseTool]], Runnable]
"""Builds a specialist from the transfer tools the builder gives it (e.g. ``create_agent``)."""


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
    handoffs: tuple[str, ...] = Field(
        default=(), description="Agents it may hand to: names, or ``Handoff`` values with their own policy."
    )
    handoff_policies: tuple[Handoff, ...] = Field(
        default=(), description="The ``Handoff`` values given in ``handoffs``, by target (set from it)."
    )
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
    agent: Runnable | AgentFactory | None = Field(
        default=None,
        description="Bring your own agent instead of a chat model: a compiled LangGraph graph over "
        "{'messages': [...]} (e.g. LangChain's create_agent), any Runnable over messages, or a callable "
        "that builds one from the transfer tools it is given. graphs/foreign_agent.py runs it.",
    )
    max_tool_rounds: int = Field(default=4, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _split_handoffs(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "handoffs" not in data:
            return data
        names: list[str] = []
        policies = list(data.get("handoff_policies") or ())
        for item in data["handoffs"] or ():
            if isinstance(item, Handoff):
                policies.append(item)
                names.append(item.target)
            else:
                names.append(item)
        return {**data, "handoffs": tuple(names), "handoff_policies": tuple(policies)}

    @model_validator(mode="after")
    def _one_way_to_answer(self) -> AgentSpec:
        if self.agent is not None and self.model is not None:
            raise ValueError(f"agent {self.name!r}: give either model or agent, not both")
        if self.agent is not None and self.tools:
            raise ValueError(f"agent {self.name!r}: a bring-your-own agent keeps its tools itself; "
                             "leave AgentSpec.tools empty")
        return self

    def policy_for(self, target: str) -> Handoff | None:
        """The ``Handoff`` policy this agent declared for ``target``, if any."""
        return next((p for p in self.handoff_policies if p.target == target), None)

    def tool_name_for(self, target: str) -> str:
        """The name of this agent's transfer tool to ``target``."""
        policy = self.policy_for(target)
        return policy.tool_name if policy and policy.tool_name else f"transfer_to_{target}"

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"agent name {value!r} must be snake_case letters, digits and _")
        return value

    @property
    def transfer_tool_name(self) -> str:
        return f"transfer_to_{self.name}"
