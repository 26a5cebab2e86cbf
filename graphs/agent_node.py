"""One specialist as a graph node: prompt -> model -> own tools -> reply or handoff."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime

from agents.spec import AgentSpec
from agents.tooling import CONTEXT_ARG, ToolContext
from graphs.briefing import EARLIER_MESSAGES, build_prompt
from graphs.journal import Journal
from graphs.transfer import TRANSFER_PREFIX, make_transfer_tool, request_from_call
from state import CaseFile, CaseFileError, HandoffEvent, HandoffState, checked_update

PARALLEL_TRANSFER_NOTE = (
    "Not executed: only the first handoff in one message is taken (policy: first wins)."
)


def bind_agent_model(
    model: BaseChatModel, tools: list[BaseTool], fallback: BaseChatModel | None = None
) -> Runnable:
    """The model with this agent's tools bound, with a fallback model if one is set."""
    bound = model.bind_tools(tools) if tools else model
    if fallback is None:
        return bound
    return bound.with_fallbacks([fallback.bind_tools(tools) if tools else fallback])


def make_agent_node(
    spec: AgentSpec,
    *,
    specs: Mapping[str, AgentSpec],
    model: BaseChatModel,
    fallback: BaseChatModel | None,
    case_file_model: type[CaseFile],
    max_hops_per_turn: int,
) -> Callable[[HandoffState, Runtime], dict[str, Any]]:
    """The node function for one agent."""
    targets = {name: specs[name] for name in spec.handoffs if name in specs}
    transfer_tools = [make_transfer_tool(t) for t in targets.values()]
    own = {t.name: t for t in spec.tools}
    with_transfers = bind_agent_model(spec.model or model, [*spec.tools, *transfer_tools], fallback)
    without_transfers = bind_agent_model(spec.model or model, list(spec.tools), fallback)

    def agent(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        thread = (runtime.execution_info.thread_id if runtime.execution_info else None) or ""
        journal = Journal(runtime.store, thread)
        start = state.get("transcript_len", 0)
        window = state.get("messages") or []
        earlier = journal.messages(start - len(window), last=EARLIER_MESSAGES) if start > len(window) else []
        prompt = build_prompt(spec, targets=targets, state=state, earlier=earlier)
        runnable = with_transfers if state.get("hops", 0) < max_hops_per_turn else without_transfers

        case_file = dict(state.get("case_file") or {})
        case_updates: dict[str, Any] = {}
        new: list[BaseMessage] = []
        usage = {"model_calls": 0, "prompt_tokens": 0}
        pending = None
        for _ in range(spec.max_tool_rounds):
            ai = runnable.invoke([*prompt, *new])
            usage["model_calls"] += 1
            usage["prompt_tokens"] += _prompt_tokens(ai, [*prompt, *new])
            ai = _named(ai, spec.name)
            new.append(ai)
            if not ai.tool_calls:
                break
            for call in ai.tool_calls:
                if call["name"].startswith(TRANSFER_PREFIX):
                    if pending is None:
                        pending = request_from_call(spec.name, call)
                    else:
                        new.append(_tool_note(call, PARALLEL_TRANSFER_NOTE, error=True))
                    continue
                tool = own.get(call["name"])
                if tool is None:
                    new.append(_tool_note(call, f"error: {spec.name} has no tool {call['name']!r}", error=True))
                    continue
                ctx = ToolContext(thread_id=thread, agent=spec.name, case_file={**case_file, **case_updates})
                result, updates = _run_tool(tool, call, ctx)
                if updates:
                    try:
                        checked = checked_update(case_file_model, {**case_file, **case_updates}, updates)
                        case_updates = {**case_updates, **checked}
                    except CaseFileError as exc:
                        result = result.model_copy(update={"content": f"{result.content} ({exc})"})
                new.append(result)
            if pending is not None:
                break
        else:
            new.append(AIMessage(content=f"({spec.title} stopped after {spec.max_tool_rounds} tool rounds.)",
                                 name=spec.name))

        update: dict[str, Any] = {
            "messages": new,
            "transcript_len": journal.append_messages(start, new),
            "pending_handoff": pending,
            "usage": {spec.name: usage},
        }
        if case_updates:
            update["case_file"] = case_updates
        receiving = state.get("receiving")
        if receiving and pending is None:
            last = (state.get("handoffs") or [None])[-1]
            if last is not None and last.request.id == receiving:
                runtime.stream_writer(HandoffEvent.of("completed", last.request).model_dump(mode="json"))
            update["receiving"] = None
        return update

    agent.__name__ = spec.name
    return agent


def _run_tool(tool: BaseTool, call: dict[str, Any], ctx: ToolContext) -> tuple[ToolMessage, dict[str, Any]]:
    args = dict(call["args"])
    if CONTEXT_ARG in tool._injected_args_keys:
        args[CONTEXT_ARG] = ctx
    try:
        message = tool.invoke({**call, "args": args, "type": "tool_call"})
    except Exception as exc:
        return _tool_note(call, f"error: {type(exc).__name__}: {exc}", error=True), {}
    artifact = getattr(message, "artifact", None)
    updates = artifact if isinstance(artifact, dict) else {}
    return message, updates


def _tool_note(call: dict[str, Any], text: str, *, error: bool = False) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"],
                       status="error" if error else "success")


def _named(message: BaseMessage, name: str) -> AIMessage:
    if not isinstance(message, AIMessage):
        message = AIMessage(content=str(message.content))
    return message.model_copy(update={"name": name})


def _prompt_tokens(ai: AIMessage, prompt: list[BaseMessage]) -> int:
    meta = ai.usage_metadata or {}
    return int(meta.get("input_tokens") or count_tokens_approximately(prompt))
