"""Turn AgentSpecs and triggers into a LangGraph StateGraph.

Topology (every edge is declared, so Studio and the Mermaid picture show it):

    START -> {active agent (no rule fires: it takes the message in itself) | intake (a rule fires, or
              the human has the conversation: it pauses, so the message is archived before it)}
    intake -> {handoff_gate | active agent (the rule did not fire after all)}
    agent -> {END (reply) | handoff_gate (one edge labelled with every agent it may hand to)}
    handoff_gate -> {any agent (the receiver, or the source after a rejection)}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START
from langgraph.runtime import get_runtime

from handoff.agents.models import make_chat_model, make_fallback_model
from handoff.agents.spec import AgentSpec
from handoff.graphs.agent_node import make_agent_node
from handoff.graphs.build_errors import GraphBuildError
from handoff.graphs.compiled import HandoffStateGraph
from handoff.graphs.gate import GATE, GatePolicy, make_gate
from handoff.graphs.human import HUMAN, make_human_node, with_escalation
from handoff.graphs.intake import INTAKE, RULE_FIRES, TurnRules, make_intake
from handoff.graphs.masking import Sensitivity
from handoff.graphs.retry import MODEL_RETRY
from handoff.state import CaseFile, HandoffInput, HandoffOutput, HandoffState

REPLY = "reply"
RULE_HANDOFF = "rule fired"


def handoff_label(targets: Sequence[str]) -> str:
    """The label of an agent's one edge to the gate: every agent it may hand to.

    One label per source, not one per target: a drawing (LangGraph's ``get_graph``, so Studio)
    keeps one edge per pair of nodes, and per-target labels to the same gate were merged into
    one, hiding the others. A request for a target not listed takes the same edge; the gate
    refuses it.
    """
    return "hands to " + ", ".join(targets) if targets else "hands to nobody"


def check_specs(agents: Sequence[AgentSpec], default_agent: str) -> dict[str, AgentSpec]:
    """Build-time validation: unique names, known targets, a known default."""
    specs: dict[str, AgentSpec] = {}
    for spec in agents:
        if spec.name in specs:
            raise GraphBuildError(f"two agents are named {spec.name!r}")
        if spec.name in (INTAKE, GATE) or (spec.name == HUMAN and (spec.tools or spec.agent is not None)):
            raise GraphBuildError(f"agent name {spec.name!r} is reserved")
        specs[spec.name] = spec
    for spec in agents:
        for target in spec.handoffs:
            if target not in specs:
                raise GraphBuildError(f"{spec.name} hands to unknown agent {target!r}")
            if target == spec.name:
                raise GraphBuildError(f"{spec.name} may not hand to itself")
        names = [t.name for t in spec.tools] + [spec.tool_name_for(t) for t in spec.handoffs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GraphBuildError(f"{spec.name} would offer its model two tools named {', '.join(twice)}: "
                                  "give each transfer tool (Handoff.tool_name) and own tool a name of its own")
        for trigger in spec.triggers:
            if trigger.target not in spec.handoffs:
                raise GraphBuildError(
                    f"trigger {trigger.name!r} of {spec.name} targets {trigger.target!r}, "
                    "which is not among its handoffs"
                )
    if default_agent not in specs:
        raise GraphBuildError(f"default agent {default_agent!r} is not among the agents")
    return specs


def build_handoff_graph(
    agents: Sequence[AgentSpec],
    *,
    default_agent: str,
    case_file_model: type[CaseFile] = CaseFile,
    model: BaseChatModel | None = None,
    fallback_model: BaseChatModel | None = None,
    policy: GatePolicy | None = None,
    human_escalation: bool = False,
    name: str = "handoff",
    sensitivity: Sensitivity | None = None,
    state_schema: type[Any] = HandoffState,
    input_schema: type[Any] = HandoffInput,
    context_schema: type[Any] | None = None,
) -> HandoffStateGraph:
    """The uncompiled graph; compile it with the checkpointer and store you choose.

    Args:
        agents: The specialists; each becomes one node.
        default_agent: Who answers first, and the fallback unless the policy names one.
        case_file_model: The domain's CaseFile; every update is validated by it.
        model: The chat model for agents without their own; the environment's by default.
        fallback_model: Tried after the model's retries fail; the environment's by default.
        policy: Hop budget, ping-pong limit and fallback for the gate.
        human_escalation: Add a ``human`` node (``interrupt()``) every agent may hand to, and
            the escalation triggers (the user asks for a person, frustration).
        name: Graph name for traces and reports.
        sensitivity: What the domain declares sensitive; masked in traces and logs however the graph
            is run (graphs/masking.py). A graph that declares one is masked by default.
        state_schema: ``HandoffState`` or a TypedDict extending it with the application's own keys and
            reducers; they are checkpointed like the rest. A caller's input may carry those declared
            in ``input_schema``; a bring-your-own agent may return any of them.
        input_schema: What a turn's input may carry: ``HandoffInput`` (the user's messages), or a
            TypedDict extending it with some of ``state_schema``'s own keys.
        context_schema: The run-time context (``graph.invoke(..., context=...)``, e.g. a user or tenant
            id); tools (``ToolContext.context``), triggers, enabled-checks, preconditions and
            initialisation actions receive it.
    """
    if human_escalation:
        agents = with_escalation(list(agents))
    specs = check_specs(agents, default_agent)
    policy = policy or GatePolicy()
    if policy.fallback is not None and policy.fallback not in specs:
        raise GraphBuildError(f"fallback {policy.fallback!r} is not among the agents")
    if model is None:
        model = make_chat_model()
        fallback_model = fallback_model or make_fallback_model()

    extension_keys, input_keys = check_schemas(state_schema, input_schema)
    graph = HandoffStateGraph(state_schema, context_schema=context_schema, input_schema=input_schema,
                              output_schema=HandoffOutput)
    graph.name = graph.handoff_name = name
    graph.extra_input_keys = input_keys
    graph.sensitivity = sensitivity
    graph.agent_specs = dict(specs)
    rules = TurnRules(specs, default_agent=default_agent, case_file_model=case_file_model,
                      pausing=frozenset({HUMAN} & specs.keys()))
    graph.add_node(INTAKE, make_intake(rules))
    graph.add_node(GATE, make_gate(specs, case_file_model=case_file_model, policy=policy,
                                   default_agent=default_agent))
    for spec in agents:
        if spec.name == HUMAN:
            graph.add_node(HUMAN, make_human_node(specs, case_file_model=case_file_model))
            graph.add_edge(HUMAN, END)
            continue
        node = make_agent_node(spec, specs=specs, model=model, fallback=fallback_model,
                               case_file_model=case_file_model, policy=policy,
                               default_agent=default_agent, extension_keys=extension_keys)
        graph.add_node(spec.name, node, retry_policy=MODEL_RETRY)
        graph.add_conditional_edges(spec.name, _after_agent(spec),
                                    {REPLY: END, handoff_label(spec.handoffs): GATE})

    graph.add_conditional_edges(START, _turn_router(rules),
                                {RULE_FIRES: INTAKE, **{n: n for n in specs if n not in rules.pausing}})
    graph.add_conditional_edges(
        INTAKE, _after_intake, {RULE_HANDOFF: GATE, **{n: n for n in specs}}
    )
    graph.add_conditional_edges(GATE, _after_gate, {n: n for n in specs})
    return graph


def check_schemas(state_schema: type[Any], input_schema: type[Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The keys ``state_schema`` adds to ``HandoffState``, and those of them a turn's input may carry.

    Raises:
        GraphBuildError: the state schema drops a handoff key, or the input schema has a key that is
            trusted or not in the state.
    """
    state_keys = set(_all_annotations(state_schema))
    missing = [k for k in HandoffState.__annotations__ if k not in state_keys]
    if missing:
        raise GraphBuildError(f"state_schema {state_schema.__name__} must extend HandoffState; it lacks "
                              f"{', '.join(missing)}")
    extension = frozenset(state_keys - set(HandoffState.__annotations__))
    input_keys = set(_all_annotations(input_schema))
    if "messages" not in input_keys:
        raise GraphBuildError(f"input_schema {input_schema.__name__} must carry 'messages'")
    refused = sorted(k for k in input_keys - {"messages"} if k not in extension)
    if refused:
        raise GraphBuildError(
            f"input_schema {input_schema.__name__} may add only state_schema's own keys, not {', '.join(refused)} "
            "(the handoff keys are written by the graph's own nodes)"
        )
    return extension, frozenset(input_keys - {"messages"})


def _all_annotations(schema: type[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for klass in reversed(getattr(schema, "__mro__", (schema,))):
        merged.update(getattr(klass, "__annotations__", {}))
    return merged


def _after_agent(spec: AgentSpec):
    label = handoff_label(spec.handoffs)

    def route(state: HandoffState) -> str:
        return REPLY if state.get("pending_handoff") is None else label

    route.__name__ = f"after_{spec.name}"
    return route


def _turn_router(rules: TurnRules) -> Callable[[HandoffState, RunnableConfig], str]:
    """START's branch, as a named function (its traced run is called ``route_turn``).

    It asks for the run's config, not its ``runtime``: LangGraph runs branches without a runtime when
    a caller updates the state as START (Studio adding a user's message), and a branch that requires
    one fails there. ``get_runtime()`` gives the run's runtime, or None outside a run.
    """

    def route_turn(state: HandoffState, config: RunnableConfig) -> str:
        return rules.route(state, get_runtime())

    return route_turn


def _after_intake(state: HandoffState) -> str:
    return RULE_HANDOFF if state.get("pending_handoff") else state["active_agent"]


def _after_gate(state: HandoffState) -> str:
    return state["active_agent"]
