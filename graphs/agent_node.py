"""One specialist as a graph node: prompt -> model -> own tools -> reply or handoff."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime

from handoff.agents.models import call_deadline
from handoff.agents.spec import AgentSpec, InputFilter
from handoff.agents.tooling import ToolContext
from handoff.graphs.agent_calls import ModelCall, Steps, ToolCall, adrive, drive, tool_note, within_deadline
from handoff.graphs.boundary import (
    MAX_ID_CHARS,
    MAX_MODEL_TEXT_CHARS,
    InputRefused,
    check_value,
    clean_text,
    clean_value,
    sanitize_value,
)
from handoff.graphs.briefing import EARLIER_MESSAGES, Earlier, build_prompt
from handoff.graphs.build_errors import GraphBuildError
from handoff.graphs.foreign_agent import (
    ForeignAgentError,
    ForeignCall,
    ForeignTurn,
    make_command_transfer_tool,
    request_from_command,
    resolve_agent,
)
from handoff.graphs.gate import GatePolicy, handoff_enabled, validate
from handoff.graphs.intake import open_turn, with_opening
from handoff.graphs.journal import Journal
from handoff.graphs.nodes import RunnableCallable, changes_only, thread_of
from handoff.graphs.retry import MAX_ATTEMPTS, model_failure
from handoff.graphs.transfer import (
    TRANSFER_PREFIX,
    announced_transfer,
    make_transfer_tool,
    request_from_call,
    transfer_targets,
)
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
    records_newest_first,
)

log = logging.getLogger(__name__)

SPENT_NOTE = "not carried out: this turn's handoffs are used up; answer the user yourself"
UNRUN_NOTE = "not carried out: the agent's turn ended before it ran"

PARALLEL_TRANSFER_NOTE = (
    "Not executed: only one handoff per message is carried out (policy: the first valid one wins)."
)


def bind_agent_model(
    model: BaseChatModel, tools: list[BaseTool], fallback: BaseChatModel | None = None,
    own: frozenset[str] | None = None,
) -> Runnable:
    """The model with this agent's tools bound, with a fallback model if one is set; each model's calls
    have their own total deadline (``call_deadline``), so a stalled main model leaves the fallback its
    whole time. ``own``: the names of the agent's own tools (the rest are transfer tools)."""
    bound = within_deadline(bind_tools(model, tools, own), call_deadline(model))
    if fallback is None:
        return bound
    return bound.with_fallbacks([within_deadline(bind_tools(fallback, tools, own), call_deadline(fallback))])


def bind_tools(model: BaseChatModel, tools: list[BaseTool], own_names: frozenset[str] | None = None) -> Runnable:
    """``model.bind_tools(tools)``; a model that cannot call tools (e.g. langchain-core's
    ``GenericFakeChatModel``) answers in text, and a handoff it announces in text still reaches the gate.

    Raises:
        GraphBuildError: the model cannot call tools and the agent has tools of its own.
    """
    if not tools:
        return model
    try:
        return model.bind_tools(tools)
    except NotImplementedError:
        own = [t.name for t in tools if (t.name in own_names if own_names is not None
                                         else not t.name.startswith(TRANSFER_PREFIX))]
        if own:
            raise GraphBuildError(
                f"{type(model).__name__} cannot call tools (no bind_tools), but the agent has tools: "
                f"{', '.join(own)}; give it a tool-calling model, or no tools"
            ) from None
        return model


def make_agent_node(
    spec: AgentSpec,
    *,
    specs: Mapping[str, AgentSpec],
    model: BaseChatModel,
    fallback: BaseChatModel | None,
    case_file_model: type[CaseFile],
    policy: GatePolicy,
    default_agent: str,
    extension_keys: frozenset[str] = frozenset(),
) -> RunnableCallable:
    """The node for one agent, with a sync path (``graph.stream``) and an async one
    (``graph.astream``: model and tool calls are awaited, so a slow model call holds no thread).

    ``extension_keys`` are the keys the graph's state schema adds to ``HandoffState``; a
    bring-your-own agent may update them (graphs/foreign_agent.py).
    """
    targets = {name: specs[name] for name in spec.handoffs if name in specs}
    tool_targets = transfer_targets(spec)
    own = {t.name: t for t in spec.tools}
    filters_from = {source.name: policy.input_filter for source in specs.values()
                    for policy in source.handoff_policies if policy.target == spec.name and policy.input_filter}
    runnables: dict[frozenset[str], Runnable] = {}

    def runnable_for(enabled: Mapping[str, AgentSpec]) -> Runnable:
        """The model (or the agent's own runnable) offered exactly the enabled transfer tools; one per
        set of enabled targets, made once."""
        key = frozenset(enabled)
        if key not in runnables:
            if spec.agent is not None:
                runnables[key] = resolve_agent(
                    spec, [make_command_transfer_tool(t, spec) for t in enabled.values()])
            else:
                transfers = [make_transfer_tool(t, spec) for t in enabled.values()]
                runnables[key] = bind_agent_model(spec.model or model, [*spec.tools, *transfers], fallback,
                                                  frozenset(own))
        return runnables[key]

    def is_transfer(name: str) -> bool:
        # A transfer_to_ name not offered still makes a request: the gate refuses it with the reason.
        return name in tool_targets or (name.startswith(TRANSFER_PREFIX) and name not in own)

    runnable_for(targets)  # made now, so a model or agent that cannot be bound fails the build
    runnable_for({})

    tracks_sentiment = "sentiment" in case_file_model.model_fields

    def agent(given: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        # The turn's first node takes the user's message in, in this same step (graphs/intake.py). The
        # step's update applies to ``given``; ``state`` is what the rest of the step sees, opening included.
        state, opening = open_turn(given, journal, agent=spec.name, tracks_sentiment=tracks_sentiment)
        try:
            upto = _earlier_upto(state)
            earlier: Earlier = journal.stored_before(upto, EARLIER_MESSAGES) if upto else []
            update = drive(_steps(state, journal.thread_id, earlier, runtime))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            update = _recover(state, exc, runtime, journal)
        update["transcript_len"] = journal.append_messages(state.get("transcript_len", 0), update["messages"])
        journal.flush()
        return changes_only(given, plain_update(with_opening(opening, _announce(state, update, runtime))))

    async def aagent(given: HandoffState, runtime: Runtime) -> dict[str, Any]:
        journal = Journal(runtime.store, thread_of(runtime), deferred=True)
        state, opening = open_turn(given, journal, agent=spec.name, tracks_sentiment=tracks_sentiment)
        try:
            upto = _earlier_upto(state)
            earlier: Earlier = await journal.astored_before(upto, EARLIER_MESSAGES) if upto else []
            update = await adrive(_steps(state, journal.thread_id, earlier, runtime))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            update = _recover(state, exc, runtime, journal)
        update["transcript_len"] = journal.append_messages(state.get("transcript_len", 0), update["messages"])
        await journal.aflush()
        return changes_only(given, plain_update(with_opening(opening, _announce(state, update, runtime))))

    def _steps(state: HandoffState, thread: str, earlier: Earlier, runtime: Runtime) -> Steps:
        may_hand_off = state.get("hops", 0) < policy.max_hops_per_turn
        case_file = dict(state.get("case_file") or {})
        enabled = {name: t for name, t in targets.items()
                   if may_hand_off and handoff_enabled(spec, name, case_file, runtime.context)}
        runnable = runnable_for(enabled)
        input_filter = _edge_filter(state, spec, filters_from)
        if spec.agent is not None:
            prompt = build_prompt(spec, targets=enabled, state=state, earlier=earlier, input_filter=input_filter)
            turn = yield ForeignCall(runnable, prompt)
            return _foreign_update(state, turn, enabled, runtime.context)

        case_updates: dict[str, Any] = {}
        new: list[BaseMessage] = []
        usage = {"model_calls": 0, "prompt_tokens": 0}
        pending: HandoffRequest | None = None
        for _ in range(spec.max_tool_rounds):
            # Rebuilt each round so this turn's tool results count against the budget too.
            prompt = build_prompt(spec, targets=enabled, state=state, earlier=earlier, current=new,
                                  input_filter=input_filter)
            raw = yield ModelCall(runnable, prompt)
            usage["model_calls"] += 1
            usage["prompt_tokens"] += _prompt_tokens(raw, prompt)
            ai, refused = from_model(raw, spec.name)
            new.append(ai)
            # Every call is answered, a malformed one too, so the history never holds an unanswered call.
            new.extend(tool_note(call, f"error: {reason}; the call was not carried out")
                       for call, reason in refused)
            refused_ids = {call["id"] for call, _ in refused}
            if not ai.tool_calls:
                if enabled:
                    pending = announced_transfer(spec, enabled, ai, {**case_file, **case_updates})
                    if _repeats_a_refusal(state, spec.name, pending):
                        pending = None  # the text reports that very refusal; do not ask again
                break
            valid = [c for c in ai.tool_calls if c["id"] not in refused_ids]
            transfers = [c for c in valid if is_transfer(c["name"])]
            for call in valid:
                if call in transfers:
                    continue
                tool = own.get(call["name"])
                if tool is None:
                    new.append(tool_note(call, f"error: {spec.name} has no tool {call['name']!r}; "
                                               "an agent can use only its own tools"))
                    continue
                ctx = ToolContext(thread_id=thread, agent=spec.name, case_file={**case_file, **case_updates},
                                  store=runtime.store, context=runtime.context)
                result, updates = yield ToolCall(tool, call, ctx)
                if updates:
                    try:
                        check_value(updates, field=f"case-file updates from {call['name']}")
                        checked = checked_update(case_file_model, {**case_file, **case_updates}, updates)
                        case_updates = {**case_updates, **checked}
                    except (CaseFileError, InputRefused) as exc:
                        result = result.model_copy(update={"content": f"{result.content} ({exc})"})
                new.append(result)
            if transfers and state.get("hops", 0) > policy.max_hops_per_turn:
                # The gate already refused this turn's last hop, and none was offered: asking again would
                # loop between this agent and the gate.
                new.extend(tool_note(call, SPENT_NOTE) for call in transfers)
                continue
            if transfers:
                pending = _choose_transfer(transfers, state, new, runtime.context)
                break
        else:
            new.append(AIMessage(content=f"({spec.title} stopped after {spec.max_tool_rounds} tool rounds.)",
                                 name=spec.name))

        update = _turn_update(state, new, pending, usage)
        if case_updates:
            update["case_file"] = case_updates
        return update

    def _turn_update(state: HandoffState, new: list[BaseMessage], pending: HandoffRequest | None,
                     usage: dict[str, int]) -> dict[str, Any]:
        update: dict[str, Any] = {
            "messages": new,
            "pending_handoff": pending,
            "usage": {spec.name: usage},
            "notice": None,
        }
        if state.get("receiving") and pending is None:
            update["receiving"] = None
            update["_completed"] = True
        return update

    def _foreign_update(state: HandoffState, turn: ForeignTurn, enabled: Mapping[str, AgentSpec],
                        context: Any) -> dict[str, Any]:
        """A bring-your-own agent's turn as the node's update: its messages made storable, every call
        answered right after the message that made it, at most one handoff, and the graph's own
        extension keys it returned."""
        cleaned: list[BaseMessage] = []
        for message in turn.messages:
            if isinstance(message, AIMessage):
                ai, refused = from_model(message, spec.name)
                cleaned.append(ai)
                cleaned.extend(tool_note(call, f"error: {reason}; the call was not carried out")
                               for call, reason in refused)
            elif isinstance(message, ToolMessage):
                cleaned.append(clean_tool_message(message))
        at = max((i for i, m in enumerate(cleaned) if isinstance(m, AIMessage)), default=None)
        if at is None and turn.command is None:
            raise ForeignAgentError(f"{spec.name} returned no answer")
        last = None if at is None else cleaned[at]
        open_transfers: list[dict[str, Any]] = []
        if last is not None:
            answered = {m.tool_call_id for m in cleaned[at + 1:] if isinstance(m, ToolMessage)}
            open_transfers = [c for c in last.tool_calls if c["id"] not in answered and is_transfer(c["name"])]
        pending: HandoffRequest | None = None
        spent = False
        if turn.command is not None or open_transfers:
            if state.get("hops", 0) > policy.max_hops_per_turn:
                spent = True  # the gate already refused this turn's last hop: asking again would loop
            elif turn.command is not None:
                pending = request_from_command(spec, turn.command, cleaned)
            else:
                pending = _choose_transfer(open_transfers, state, cleaned, context)
        elif last is not None and not last.tool_calls and enabled:
            pending = announced_transfer(spec, enabled, last, dict(state.get("case_file") or {}))
            if _repeats_a_refusal(state, spec.name, pending):
                pending = None  # the text reports that very refusal; do not ask again
        keep = pending.tool_call_id if pending is not None else None
        new = paired(cleaned, keep_open=keep, note=SPENT_NOTE if spent else UNRUN_NOTE)
        if spent:
            new.append(AIMessage(content=f"(system) {spec.title} asked to hand over again, but this turn's "
                                         "handoffs are used up; please rephrase or ask again.", name=spec.name))
        calls = sum(1 for m in new if isinstance(m, AIMessage))
        update = _turn_update(state, new, pending, {"model_calls": calls, "prompt_tokens": 0})
        update.update(extension_update(turn.state, extension_keys, spec.name))
        return update

    def _choose_transfer(
        transfers: list[dict[str, Any]], state: HandoffState, new: list[BaseMessage], context: Any
    ) -> HandoffRequest:
        """First valid wins; every other transfer call is answered as not executed."""
        requests = [request_from_call(spec.name, c, tool_targets.get(c["name"])) for c in transfers]
        chosen = next(
            (r for r in requests if validate(r, specs=specs, state=state, policy=policy, context=context)[1] is None),
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
            ModelFailure: in ``exc``'s place, while it is transient and attempts remain (RetryPolicy).
        """
        info = runtime.execution_info
        attempt = info.node_attempt if info else MAX_ATTEMPTS
        failure = model_failure(exc)
        # Logged and retried in its place: the kind of failure, never the upstream text (it may quote
        # the user), and no traceback either (LangGraph logs the retried exception's).
        log.warning("agent call failed thread=%s agent=%s attempt=%s code=%s error=%s",
                    journal.thread_id, spec.name, attempt, failure.code, failure.error_type)
        if failure.transient and attempt < MAX_ATTEMPTS:
            raise failure from None
        tries = f", {attempt} attempts" if attempt > 1 else ""
        detail = f"{failure.kind} ({failure.error_type}{tries})"
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
            text = (f"(system) {spec.title} could not take over: {detail}. "
                    f"{specs[back].title} has the conversation again; please repeat or rephrase.")
            update.update({"active_agent": back, "handoffs": [record], "handoff_count": count + 1,
                           "receiving": None,
                           "notice": f"Your handoff to {spec.name} failed: {detail}. Help the user yourself."})
        else:
            text = (f"(system) {spec.title} could not answer: {detail}. "
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


def _edge_filter(state: HandoffState, spec: AgentSpec, filters: Mapping[str, InputFilter]) -> InputFilter | None:
    """The input filter of the handoff that gave ``spec`` the conversation (``filters``: by source)."""
    if not filters:
        return None  # the usual case: no record needs reading
    last = next((r for r in records_newest_first(state) if r.outcome == "accepted"), None)
    return filters.get(last.source) if last is not None and last.target == spec.name else None


def extension_update(output: Mapping[str, Any], keys: frozenset[str], agent: str) -> dict[str, Any]:
    """The graph's own extension keys from a bring-your-own agent's output, checked storable.

    Raises:
        ForeignAgentError: a value cannot be stored (too deep, too large, not plain data).
    """
    update: dict[str, Any] = {}
    for key in keys & output.keys():
        try:
            update[key] = check_value(output[key], field=f"{agent}'s {key}")
        except InputRefused as exc:
            raise ForeignAgentError(str(exc)) from None
    return update


def clean_tool_message(message: ToolMessage) -> ToolMessage:
    """A tool result from a bring-your-own agent, made storable (its text may echo anything)."""
    content = message.content
    return ToolMessage(
        content=clean_text(content, max_chars=MAX_MODEL_TEXT_CHARS) if isinstance(content, str)
        else clean_value(content, max_chars=MAX_MODEL_TEXT_CHARS),
        tool_call_id=clean_text(message.tool_call_id, max_chars=MAX_ID_CHARS),
        name=None if message.name is None else clean_text(message.name, max_chars=MAX_ID_CHARS),
        status=message.status,
    )


def paired(messages: Sequence[BaseMessage], *, keep_open: str | None, note: str) -> list[BaseMessage]:
    """``messages`` with every tool call answered right after the message that made it, as strict
    chat servers require: a result is kept only where it answers a call of the message before it
    (so a call id reused in a later message is answered there too), and a call left unanswered is
    answered with ``note``. Only ``keep_open``, a call of the last message, is left for the gate."""
    out: list[BaseMessage] = []
    waiting: dict[str, dict[str, Any]] = {}

    def close(final: bool) -> None:
        for call_id, call in waiting.items():
            if not (final and call_id == keep_open):
                out.append(tool_note(call, note))
        waiting.clear()

    for message in messages:
        if isinstance(message, AIMessage):
            close(final=False)
            out.append(message)
            waiting.update({c["id"]: c for c in message.tool_calls})
        elif isinstance(message, ToolMessage):
            if message.tool_call_id in waiting:
                waiting.pop(message.tool_call_id)
                out.append(message)
        else:
            out.append(message)
    close(final=True)
    return out


def _earlier_upto(state: HandoffState) -> int:
    """Where the journal's messages before the state's window end (0: the window holds them all)."""
    start = state.get("transcript_len", 0)
    window = state.get("messages") or []
    return start - len(window) if start > len(window) else 0


def _received(state: HandoffState, agent: str) -> HandoffRecord | None:
    """The accepted handoff to ``agent`` that it has not answered yet (``receiving``), if any."""
    receiving = state.get("receiving")
    if not receiving:
        return None
    return next((r for r in records_newest_first(state)
                 if r.request.id == receiving and r.outcome == "accepted" and r.routed_to == agent), None)


def _repeats_a_refusal(state: HandoffState, agent: str, pending: HandoffRequest | None) -> bool:
    if pending is None or state.get("hops", 0) == 0:
        return False
    last = next(records_newest_first(state), None)
    return (last is not None and last.outcome != "accepted" and last.source == agent
            and last.target == pending.target)


def from_model(message: BaseMessage, name: str) -> tuple[AIMessage, list[tuple[dict[str, Any], str]]]:
    """A model's message as the history keeps it, and the calls in it that are refused, with why.

    A model's output is made storable rather than refused (control characters replaced, text cut at
    ``MAX_MODEL_TEXT_CHARS``), except tool arguments too deep or too large to mean anything: that call
    is refused. So is a call whose arguments are not JSON (``invalid_tool_calls``). A refused call stays
    in the message, with no arguments, and the node answers it with an error.
    """
    if not isinstance(message, AIMessage):
        message = AIMessage(content=str(message.content))
    refused: list[tuple[dict[str, Any], str]] = []
    calls: list[dict[str, Any]] = []
    taken: set[str] = set()
    for original in message.tool_calls:
        call = _call(original["name"], original.get("id"), len(calls), taken)
        try:
            call["args"] = sanitize_value(original["args"], field=f"the arguments of {call['name']}")
        except InputRefused as exc:
            refused.append((call, str(exc)))
        calls.append(call)
    for bad in message.invalid_tool_calls:
        call = _call(bad.get("name") or "unknown_tool", bad.get("id"), len(calls), taken)
        refused.append((call, f"the arguments of {call['name']} are not a JSON object "
                              f"({_json_error(bad.get('args'))})"))
        calls.append(call)
    content = message.content
    kwargs = {k: v for k, v in message.additional_kwargs.items() if k not in ("tool_calls", "function_call")}
    clean = AIMessage(
        # The raw ``tool_calls`` copy in additional_kwargs is dropped: the parsed calls above are the ones
        # answered, and a client sends the raw copy back when no parsed call is left.
        content=clean_text(content, max_chars=MAX_MODEL_TEXT_CHARS) if isinstance(content, str)
        else clean_value(content, max_chars=MAX_MODEL_TEXT_CHARS),
        additional_kwargs=clean_value(kwargs),
        response_metadata=clean_value(message.response_metadata),
        usage_metadata=message.usage_metadata,
        id=None if message.id is None else clean_text(message.id, max_chars=MAX_ID_CHARS),
        name=name,
        tool_calls=calls,
    )
    return clean, refused


def _call(name: str, call_id: str | None, position: int, taken: set[str]) -> dict[str, Any]:
    """A tool call with a storable name and an id unique in its message.

    A model may leave the id out, or give two calls the same one; each answer must name exactly one
    call, or a strict server refuses every later request of the conversation.
    """
    wanted = clean_text(call_id, max_chars=MAX_ID_CHARS) if call_id else f"call_unnamed_{position}"
    unique, n = wanted, 1
    while unique in taken:
        n += 1
        unique = f"{wanted[:MAX_ID_CHARS - 8]}_dup{n}"
    taken.add(unique)
    return {"name": clean_text(name, max_chars=MAX_ID_CHARS), "args": {}, "id": unique, "type": "tool_call"}


def _json_error(args: Any) -> str:
    """Briefly, why ``args`` is not a JSON object."""
    if not isinstance(args, str):
        return "no arguments text"
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "nested too deep to read"
    return "an object was expected" if not isinstance(parsed, dict) else "unreadable"


def _prompt_tokens(ai: BaseMessage, prompt: list[BaseMessage]) -> int:
    meta = getattr(ai, "usage_metadata", None) or {}
    return int(meta.get("input_tokens") or count_tokens_approximately(prompt))
