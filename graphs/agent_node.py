"""One specialist as a graph node: prompt -> model -> own tools -> reply or handoff."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from handoff.agents.spec import AgentSpec
from handoff.agents.tooling import ToolContext
from handoff.graphs.agent_calls import ModelCall, Steps, ToolCall, adrive, drive, tool_note
from handoff.graphs.briefing import EARLIER_MESSAGES, build_prompt
from handoff.graphs.gate import GatePolicy, validate
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, thread_of
from handoff.graphs.retry import MAX_ATTEMPTS, is_transient
from handoff.graphs.transfer import TRANSFER_PREFIX, announced_transfer, make_transfer_tool, request_from_call
from handoff.state import (
    CaseFile,
    CaseFileError,
    HandoffEvent,
    HandoffRecord,
    HandoffRejection,
    HandoffRequest,
    HandoffState,
    checked_update,
    plain_update,
    records_of,
)

log = logging.getLogger(__name__)

PARALLEL_TRANSFER_NOTE = (
    "Not executed: only one handoff per message is carried out (policy: the first valid one wins)."
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
    policy: GatePolicy,
    default_agent: str,
) -> RunnableCallable:
    """The node for one agent, with a sync path (``graph.stream``) and an async one
    (``graph.astream``: model and tool calls are awaited, so a slow model call holds no thread)."""
    targets = {name: specs[name] for name in spec.handoffs if name in specs}
    transfer_tools = [make_transfer_tool(t) for t in targets.values()]
    own = {t.name: t for t in spec.tools}
    with_transfers = bind_agent_model(spec.model or model, [*spec.tools, *transfer_tools], fallback)
    without_transfers = bind_agent_model(spec.model or model, list(spec.tools), fallback)

    def agent(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        try:
            upto = _earlier_upto(state)
            earlier = journal.messages(upto, last=EARLIER_MESSAGES) if upto else []
            update = drive(_steps(state, journal.thread_id, earlier, runtime.store))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            update = _recover(state, exc, runtime, journal)
        update["transcript_len"] = journal.append_messages(state.get("transcript_len", 0), update["messages"])
        journal.flush()
        return plain_update(_announce(state, update, runtime))

    async def aagent(state: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        try:
            upto = _earlier_upto(state)
            earlier = await journal.amessages(upto, last=EARLIER_MESSAGES) if upto else []
            update = await adrive(_steps(state, journal.thread_id, earlier, runtime.store))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            update = _recover(state, exc, runtime, journal)
        update["transcript_len"] = journal.append_messages(state.get("transcript_len", 0), update["messages"])
        await journal.aflush()
        return plain_update(_announce(state, update, runtime))

    def _steps(state: HandoffState, thread: str, earlier: list[BaseMessage], store: BaseStore | None) -> Steps:
        may_hand_off = state.get("hops", 0) < policy.max_hops_per_turn
        runnable = with_transfers if may_hand_off else without_transfers

        case_file = dict(state.get("case_file") or {})
        case_updates: dict[str, Any] = {}
        new: list[BaseMessage] = []
        usage = {"model_calls": 0, "prompt_tokens": 0}
        pending: HandoffRequest | None = None
        for _ in range(spec.max_tool_rounds):
            # Rebuilt each round so this turn's tool results count against the budget too.
            prompt = build_prompt(spec, targets=targets, state=state, earlier=earlier, current=new)
            ai = yield ModelCall(runnable, prompt)
            usage["model_calls"] += 1
            usage["prompt_tokens"] += _prompt_tokens(ai, prompt)
            ai = _named(ai, spec.name)
            new.append(ai)
            if not ai.tool_calls:
                if may_hand_off:
                    pending = announced_transfer(spec, targets, ai, {**case_file, **case_updates})
                    if _repeats_a_refusal(state, spec.name, pending):
                        pending = None  # the text reports that very refusal; do not ask again
                break
            transfers = [c for c in ai.tool_calls if c["name"].startswith(TRANSFER_PREFIX)]
            for call in ai.tool_calls:
                if call["name"].startswith(TRANSFER_PREFIX):
                    continue
                tool = own.get(call["name"])
                if tool is None:
                    new.append(tool_note(call, f"error: {spec.name} has no tool {call['name']!r}; "
                                               "an agent can use only its own tools"))
                    continue
                ctx = ToolContext(thread_id=thread, agent=spec.name, case_file={**case_file, **case_updates},
                                  store=store)
                result, updates = yield ToolCall(tool, call, ctx)
                if updates:
                    try:
                        checked = checked_update(case_file_model, {**case_file, **case_updates}, updates)
                        case_updates = {**case_updates, **checked}
                    except CaseFileError as exc:
                        result = result.model_copy(update={"content": f"{result.content} ({exc})"})
                new.append(result)
            if transfers:
                pending = _choose_transfer(transfers, state, new)
                break
        else:
            new.append(AIMessage(content=f"({spec.title} stopped after {spec.max_tool_rounds} tool rounds.)",
                                 name=spec.name))

        update: dict[str, Any] = {
            "messages": new,
            "pending_handoff": pending,
            "usage": {spec.name: usage},
            "notice": None,
        }
        if case_updates:
            update["case_file"] = case_updates
        if state.get("receiving") and pending is None:
            update["receiving"] = None
            update["_completed"] = True
        return update

    def _choose_transfer(
        transfers: list[dict[str, Any]], state: HandoffState, new: list[BaseMessage]
    ) -> HandoffRequest:
        """First valid wins; every other transfer call is answered as not executed."""
        requests = [request_from_call(spec.name, c) for c in transfers]
        chosen = next(
            (r for r in requests if validate(r, specs=specs, state=state, policy=policy)[1] is None),
            requests[0],
        )
        for r in requests:
            if r is not chosen:
                new.append(ToolMessage(content=PARALLEL_TRANSFER_NOTE, tool_call_id=r.tool_call_id or "",
                                       name=r.trigger_name, status="error"))
        return chosen

    def _recover(state: HandoffState, exc: Exception, runtime: Runtime, journal: Journal) -> dict[str, Any]:
        """After the last attempt: an honest message, state intact, and a failed record if this
        agent had just received the conversation (it goes back to the source).

        Raises:
            Exception: ``exc`` again while it is transient and attempts remain (RetryPolicy).
        """
        info = runtime.execution_info
        attempt = info.node_attempt if info else MAX_ATTEMPTS
        if is_transient(exc) and attempt < MAX_ATTEMPTS:
            raise exc
        log.error("%s failed on attempt %s", spec.name, attempt, exc_info=exc)
        detail = f"{type(exc).__name__}: {str(exc)[:200]}"
        update: dict[str, Any] = {"pending_handoff": None, "usage": {spec.name: {"failures": 1}}}
        last = _received(state, spec.name)
        if last is not None:
            back = last.source if last.source in specs else default_agent
            record = HandoffRecord(
                request=last.request, outcome="failed", routed_to=back, latency_ms=0.0,
                rejection=HandoffRejection(code="receiver_failed",
                                           message=f"{spec.name} could not answer: {detail}"),
            )
            count = state.get("handoff_count", 0)
            journal.append_record(count, record)
            text = (f"(system) {spec.title} could not take over because of an error ({detail}). "
                    f"{specs[back].title} has the conversation again; please repeat or rephrase.")
            update.update({"active_agent": back, "handoffs": [record], "handoff_count": count + 1,
                           "receiving": None,
                           "notice": f"Your handoff to {spec.name} failed: {detail}. Help the user yourself."})
        else:
            text = (f"(system) {spec.title} could not answer because of an error ({detail}). "
                    "Nothing was lost; please try again.")
        update["messages"] = [AIMessage(content=text, name=spec.name)]
        return update

    def _announce(state: HandoffState, update: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
        """Emit the handoff events this update completes or records."""
        if update.pop("_completed", False):
            received = _received(state, spec.name)
            if received is not None:
                runtime.stream_writer(HandoffEvent.of("completed", received.request).model_dump(mode="json"))
        for record in update.get("handoffs") or []:
            runtime.stream_writer(HandoffEvent.from_record(record).model_dump(mode="json"))
        return update

    agent.__name__ = aagent.__name__ = spec.name
    # trace=False: LangGraph traces the node itself; a traced callable would nest a second run.
    return RunnableCallable(agent, aagent, name=spec.name, trace=False)


def _earlier_upto(state: HandoffState) -> int:
    """Where the journal's messages before the state's window end (0: the window holds them all)."""
    start = state.get("transcript_len", 0)
    window = state.get("messages") or []
    return start - len(window) if start > len(window) else 0


def _received(state: HandoffState, agent: str) -> HandoffRecord | None:
    """The accepted handoff to ``agent`` that it has not answered yet (``receiving``), if any."""
    receiving = state.get("receiving")
    return next((r for r in reversed(records_of(state))
                 if receiving and r.request.id == receiving and r.outcome == "accepted"
                 and r.routed_to == agent), None)


def _repeats_a_refusal(state: HandoffState, agent: str, pending: HandoffRequest | None) -> bool:
    last = (records_of(state) or [None])[-1]
    return (pending is not None and state.get("hops", 0) > 0 and last is not None
            and last.outcome != "accepted" and last.source == agent and last.target == pending.target)


STORABLE_INTS = range(-(2**63), 2**64)
"""Integers a checkpoint (msgpack) can hold."""


def _storable(value: Any) -> Any:
    """``value`` with what a checkpoint or a JSON store cannot hold written as text: integers too wide
    for msgpack, and NaN and infinities, which PostgreSQL's JSON refuses (the gate and the tools then
    judge the text)."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in STORABLE_INTS:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _named(message: BaseMessage, name: str) -> AIMessage:
    if not isinstance(message, AIMessage):
        message = AIMessage(content=str(message.content))
    tool_calls = [{**call, "args": _storable(call["args"])} for call in message.tool_calls]
    return message.model_copy(update={"name": name, "tool_calls": tool_calls})


def _prompt_tokens(ai: AIMessage, prompt: list[BaseMessage]) -> int:
    meta = ai.usage_metadata or {}
    return int(meta.get("input_tokens") or count_tokens_approximately(prompt))
