"""Bring your own agent: a specialist that is a compiled LangGraph graph or any Runnable over messages.

``AgentSpec.agent`` may be LangChain's ``create_agent`` (with its own tools and middleware),
langgraph's prebuilt ReAct agent, any compiled graph whose state has ``messages``, or a Runnable
that takes a list of messages and returns a message. The agent node runs it once per turn with
the same prompt a chat-model agent gets (instructions, case file, briefing, the bounded history)
and keeps what it adds.

Its handoffs still pass the gate, in either of two ways:

- a transfer tool call left in its last message (a Runnable over messages, or a graph whose
  transfer tool ends its loop), read like a chat model's;
- a swarm-style tool that returns ``Command(goto=<agent>, graph=Command.PARENT)``: LangGraph raises
  it out of the agent's graph as ``ParentCommand``; it becomes a ``HandoffRequest`` here, for the
  gate to accept or refuse like any other. The builder's own transfer tools work this way inside a
  graph agent (``make_command_transfer_tool``), so a ``create_agent`` loop stops at the handoff.

The agent runs without a checkpointer of its own (``checkpointer=False``): what it must remember
lives in the handoff graph's state, case file and transcript, which is what survives a restart.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage, convert_to_messages
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.errors import ParentCommand
from langgraph.pregel import Pregel
from langgraph.types import Command, Send

from handoff.agents.spec import AgentSpec
from handoff.graphs.transfer import transfer_description
from handoff.state import HandoffRequest

UNSAVED = "exit"
"""The agent graph's own durability: it has no checkpointer, and would otherwise inherit the handoff
run's ("sync", under HandoffSession), which LangGraph then waits on a save that never happens."""
# LangGraph warns that durability means nothing without a checkpointer: here that is the point.
warnings.filterwarnings("ignore", message="`durability` has no effect when no checkpointer is present",
                        category=UserWarning)

COMMAND_HANDOFF = "command"
"""``trigger_name`` prefix of a request made from a swarm-style ``Command``."""


class ForeignAgentError(TypeError):
    """A bring-your-own agent returned something that is not messages."""


@dataclass
class ForeignTurn:
    """What a bring-your-own agent did in one turn."""

    messages: list[BaseMessage]
    """The messages it added after the prompt (its tool calls and results included)."""
    state: dict[str, Any] = field(default_factory=dict)
    """The other keys of a graph agent's final state, for the handoff graph's own extension keys."""
    command: Command | None = None
    """A swarm-style handoff it raised (``Command(goto=..., graph=Command.PARENT)``)."""


def resolve_agent(spec: AgentSpec, transfer_tools: list[BaseTool]) -> Runnable:
    """The spec's agent as a Runnable: a factory is called with the transfer tools it may use; a
    compiled graph is copied without a checkpointer of its own."""
    agent = spec.agent
    if agent is not None and not isinstance(agent, Runnable):
        agent = agent(list(transfer_tools))
        if not isinstance(agent, Runnable):
            raise ForeignAgentError(f"the agent factory of {spec.name!r} returned {type(agent).__name__}, "
                                    "not a Runnable or compiled graph")
    if isinstance(agent, Pregel):
        agent = agent.copy(update={"checkpointer": False})
    if agent is None:
        raise ForeignAgentError(f"agent {spec.name!r} has no agent to run")
    return agent


def make_command_transfer_tool(receiver: AgentSpec, source: AgentSpec) -> BaseTool:
    """A transfer tool for a graph agent: it ends the agent's loop with a swarm-style ``Command``
    that the agent node turns into a ``HandoffRequest``.

    The model is shown the receiver's payload schema, but the tool does not validate the arguments
    itself (its schema is plain JSON schema): the gate does, so a handoff with a bad payload is
    recorded and refused there with its reason, as for every other agent.
    """

    def transfer(**_: Any) -> Command:
        return Command(goto=receiver.name, graph=Command.PARENT)

    return StructuredTool.from_function(
        func=transfer, name=source.tool_name_for(receiver.name),
        description=transfer_description(receiver, source),
        args_schema=receiver.payload_schema.model_json_schema(),
    )


@dataclass(frozen=True)
class ForeignCall:
    """One turn of a bring-your-own agent; the node's sync or async driver makes it (see agent_calls)."""

    runnable: Runnable
    prompt: list[BaseMessage]

    def run(self) -> ForeignTurn:
        prompt = with_ids(self.prompt)
        if not isinstance(self.runnable, Pregel):
            try:
                return from_output(self.runnable.invoke(prompt), prompt)
            except ParentCommand as raised:  # e.g. a graph agent called from inside a Runnable
                return from_command(raised.args[0], None, prompt)
        last: Any = None
        try:
            for value in self.runnable.stream({"messages": prompt}, stream_mode="values", durability=UNSAVED):
                last = value
        except ParentCommand as raised:
            return from_command(raised.args[0], last, prompt)
        return from_output(last, prompt)

    async def arun(self) -> ForeignTurn:
        prompt = with_ids(self.prompt)
        if not isinstance(self.runnable, Pregel):
            try:
                return from_output(await self.runnable.ainvoke(prompt), prompt)
            except ParentCommand as raised:
                return from_command(raised.args[0], None, prompt)
        last: Any = None
        try:
            async for value in self.runnable.astream({"messages": prompt}, stream_mode="values",
                                                     durability=UNSAVED):
                last = value
        except ParentCommand as raised:
            return from_command(raised.args[0], last, prompt)
        return from_output(last, prompt)


def with_ids(prompt: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Copies of the prompt's messages, each with an id, so what the agent adds can be told apart and
    an agent that edits its input in place cannot rewrite the conversation's stored messages."""
    return [m.model_copy(deep=True, update=None if m.id else {"id": f"prompt-{uuid.uuid4().hex[:12]}"})
            for m in prompt]


def from_output(output: Any, prompt: Sequence[BaseMessage]) -> ForeignTurn:
    """The agent's output as the messages it added (and its other state keys)."""
    state: dict[str, Any] = {}
    if isinstance(output, Mapping):
        state = {k: v for k, v in output.items() if k != "messages"}
        output = output.get("messages")
    if output is None:
        raise ForeignAgentError("the agent returned no messages")
    if isinstance(output, BaseMessage | str):
        return ForeignTurn(messages=convert_to_messages([output]), state=state)
    if not isinstance(output, Sequence):
        raise ForeignAgentError(f"the agent returned {type(output).__name__}, not messages")
    try:
        messages = convert_to_messages(list(output))
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ForeignAgentError(f"the agent returned something that is not messages: {exc}") from None
    seen = {m.id for m in prompt}
    return ForeignTurn(messages=[m for m in messages if m.id not in seen], state=state)


def from_command(command: Command, last: Any, prompt: Sequence[BaseMessage]) -> ForeignTurn:
    """A swarm-style handoff: the messages up to the call that raised it, and the command.

    Raised out of a Runnable (a graph agent called inside it), there is no last state to read: a
    swarm tool's update carries the agent's messages then, less its own answer to the call (the gate
    answers it).
    """
    if last is None:
        update = command.update
        raw = update.get("messages") if isinstance(update, Mapping) else update
        try:
            messages = convert_to_messages(list(raw)) if isinstance(raw, Sequence) and not isinstance(raw, str) \
                else []
        except (ValueError, TypeError, NotImplementedError):
            messages = []
        own = answered_by(command)
        last = {"messages": [m for m in messages if not (isinstance(m, ToolMessage) and m.tool_call_id in own)]}
    turn = from_output(last, prompt)
    return ForeignTurn(messages=turn.messages, state=turn.state, command=command)


def command_targets(command: Command) -> list[str]:
    """The agents a ``Command`` goes to, in order (a ``Send``'s node counts)."""
    goto = command.goto
    items = goto if isinstance(goto, list | tuple) else [goto]
    return [item.node if isinstance(item, Send) else str(item) for item in items if item]


def request_from_command(source: AgentSpec, command: Command, messages: Sequence[BaseMessage]) -> HandoffRequest:
    """The handoff request a swarm-style ``Command`` stands for; the gate validates it.

    The transfer call that raised it (the last one in the agent's messages) gives the reason and
    payload, and its id, so the gate's answer closes that call.
    """
    targets = command_targets(command)
    target = targets[0] if targets else ""
    call = raising_call(messages, {source.tool_name_for(target), f"transfer_to_{target}"}, answered_by(command))
    args = dict(call["args"]) if call else {}
    reason = str(args.get("reason") or f"{source.title} handed over with {call['name'] if call else 'a command'}")
    return HandoffRequest(
        source=source.name, target=target, reason=reason, summary=str(args.get("summary") or ""),
        payload={**args, "reason": reason, "summary": str(args.get("summary") or "")},
        trigger="tool", trigger_name=call["name"] if call else f"{COMMAND_HANDOFF}:{target}",
        tool_call_id=call["id"] if call else None,
    )


def answered_by(command: Command) -> set[str]:
    """The call ids a swarm-style ``Command``'s own update answers (its ToolMessage names the call)."""
    update = command.update
    messages = update.get("messages") if isinstance(update, Mapping) else update
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return set()
    ids = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            ids.add(message.tool_call_id)
        elif isinstance(message, Mapping) and message.get("tool_call_id"):
            ids.add(str(message["tool_call_id"]))
    return ids


def raising_call(messages: Sequence[BaseMessage], names: set[str], ids: set[str] = frozenset()) -> dict[str, Any] | None:
    """The unanswered call in the agent's last message that raised the handoff: the one the command's
    update answers, else the one named like a transfer to its target, else the last unanswered one."""
    last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if last is None:
        return None
    answered = {m.tool_call_id for m in messages[messages.index(last):] if isinstance(m, ToolMessage)}
    unanswered = [c for c in last.tool_calls if c["id"] not in answered]
    return next((c for c in unanswered if c["id"] in ids),
                next((c for c in unanswered if c["name"] in names), unanswered[-1] if unanswered else None))
