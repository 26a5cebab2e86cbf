"""Bring your own agent: create_agent, compiled subgraphs, Runnables and swarm-style Command tools
as specialists, every handoff still through the gate; a model without bind_tools; extensible state
and run-time context; handoff policy as values (input filter, enabled-check, name overrides)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import InjectedToolArg, tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph_swarm import create_handoff_tool
from pydantic import Field

from handoff.agents.filters import last_messages, remove_all_tools, user_messages_only
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.spec import AgentSpec, ContextPolicy, Handoff, HandoffPayload, InitContext
from handoff.agents.tooling import ToolContext
from handoff.agents.triggers import Trigger, TriggerContext
from handoff.graphs.boundary import InputRefused
from handoff.graphs.build_errors import GraphBuildError
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.persistence import open_persistence
from handoff.state import HandoffInput, HandoffState, InitResult, records_of
from tests.support.openai_stub import OpenAIStub, text_reply


class BillingPayload(HandoffPayload):
    account_id: str = Field(min_length=3, description="The customer's account id.")


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by its id."""
    return f"order {order_id}: charged twice"


def billing_spec(**extra: Any) -> AgentSpec:
    return AgentSpec(name="billing", title="Billing", description="Refunds and invoices.",
                     instructions="You handle billing.", payload_schema=BillingPayload, **extra)


def run(graph: Any, text: str, thread: str = "t1", **kwargs: Any) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread}}
    graph.invoke({"messages": [HumanMessage(text)]}, config, **kwargs)
    return graph.get_state(config).values


def unanswered_calls(messages: list[BaseMessage]) -> list[str]:
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls if c["id"] not in answered]


def memory(builder: Any) -> Any:
    return builder.compile(checkpointer=InMemorySaver())


# --- create_agent, with the builder's transfer tools -------------------------------------------

def create_agent_graph(triage_replies: list[Any], billing_replies: list[Any]) -> tuple[Any, ScriptedChatModel]:
    triage_model = ScriptedChatModel(scripts={"triage": triage_replies})
    triage = AgentSpec(
        name="triage", title="Triage", description="First contact.", instructions="Route the customer.",
        handoffs=("billing",),
        agent=lambda transfer_tools: create_agent(triage_model, tools=[lookup_order, *transfer_tools]),
    )
    graph = build_handoff_graph([triage, billing_spec()], default_agent="triage",
                                model=ScriptedChatModel(scripts={"billing": billing_replies}))
    return memory(graph), triage_model


def test_a_create_agent_specialist_uses_its_own_tools_and_hands_off_through_the_gate() -> None:
    graph, triage_model = create_agent_graph(
        [calls(tool_call("lookup_order", {"order_id": "O-7"}, "c1")),
         calls(tool_call("transfer_to_billing", {"reason": "double charge", "account_id": "ACC-1"}, "c2"))],
        ["Billing here: the duplicate charge is refunded."],
    )
    state = run(graph, "I was charged twice for O-7")

    assert state["active_agent"] == "billing"
    [record] = records_of(state)
    assert (record.outcome, record.source, record.target) == ("accepted", "triage", "billing")
    assert record.request.tool_call_id == "c2"
    assert "ACC-1" in state["briefing"]  # the typed payload reached the receiver's briefing
    messages = state["messages"]
    assert any(isinstance(m, ToolMessage) and "charged twice" in m.text for m in messages)
    assert messages[-1].name == "billing" and "refunded" in messages[-1].text
    assert unanswered_calls(messages) == []
    # The agent was offered the builder's transfer tool beside its own.
    assert triage_model.calls[0]["tools"] == ["lookup_order", "transfer_to_billing"]
    # It ran without a checkpointer of its own: every checkpoint is the handoff graph's.
    assert {c.config["configurable"]["checkpoint_ns"] for c in graph.checkpointer.list(None)} == {""}


def test_a_create_agent_handoff_the_gate_refuses_goes_back_to_the_agent_with_the_reason() -> None:
    graph, triage_model = create_agent_graph(
        [calls(tool_call("transfer_to_billing", {"reason": "double charge"}, "c1")),
         "Could you tell me your account id first?"],
        ["never used"],
    )
    state = run(graph, "I was charged twice")

    assert state["active_agent"] == "triage"
    [record] = records_of(state)
    assert record.outcome == "rejected" and record.rejection is not None
    assert record.rejection.code == "invalid_payload" and "account_id" in record.rejection.message
    assert state["messages"][-1].name == "triage" and "account id" in state["messages"][-1].text
    # The second call saw the gate's refusal as the transfer call's result.
    second = triage_model.calls[1]["messages"]
    assert any(isinstance(m, ToolMessage) and "invalid_payload" in m.text for m in second)
    assert unanswered_calls(state["messages"]) == []


# --- a compiled subgraph and a plain Runnable ---------------------------------------------------

class NotesState(MessagesState):
    notes: Annotated[list[str], operator.add]


class NotesHandoffState(HandoffState, total=False):
    notes: Annotated[list[str], operator.add]


def subgraph_agent(*replies: AIMessage) -> Any:
    queue = list(replies)

    def think(state: NotesState) -> dict[str, Any]:
        return {"messages": [queue.pop(0)], "notes": ["triage looked"]}

    builder = StateGraph(NotesState)
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    builder.add_edge("think", END)
    return builder.compile()


@pytest.mark.parametrize(("payload", "outcome"), [({"account_id": "ACC-9"}, "accepted"), ({}, "rejected")])
def test_a_compiled_subgraph_specialist_hands_off_through_the_gate(payload: dict[str, Any], outcome: str) -> None:
    transfer = calls(tool_call("transfer_to_billing", {"reason": "billing question", **payload}, "s1"))
    triage = AgentSpec(name="triage", title="Triage", description="First contact.", instructions="Route.",
                       handoffs=("billing",), agent=subgraph_agent(transfer, AIMessage("I need your account id.")))
    model = ScriptedChatModel(scripts={"billing": ["Billing speaking."]})
    graph = memory(build_handoff_graph([triage, billing_spec()], default_agent="triage", model=model,
                                       state_schema=NotesHandoffState))
    state = run(graph, "question about my bill")

    [record, *_] = records_of(state)
    assert record.outcome == outcome
    assert state["active_agent"] == ("billing" if outcome == "accepted" else "triage")
    assert "triage looked" in state["notes"]  # the subgraph's own key reached the extended state
    assert unanswered_calls(state["messages"]) == []


def test_a_runnable_over_messages_is_a_specialist_and_sees_the_briefed_prompt() -> None:
    seen: list[list[BaseMessage]] = []

    def answer(messages: list[BaseMessage]) -> AIMessage:
        seen.append(messages)
        return AIMessage("A runnable answered.")

    helper = AgentSpec(name="helper", title="Helper", description="Anything.", instructions="Help briefly.",
                       agent=RunnableLambda(answer))
    graph = memory(build_handoff_graph([helper], default_agent="helper", model=ScriptedChatModel()))
    state = run(graph, "hello there")

    assert state["messages"][-1].text == "A runnable answered." and state["messages"][-1].name == "helper"
    assert "Help briefly." in seen[0][0].text  # its instructions and briefing arrive as the system prompt
    assert seen[0][-1].text == "hello there"


def test_an_agent_returning_something_else_ends_the_turn_honestly() -> None:
    broken = AgentSpec(name="broken", title="Broken", description="x", instructions="x",
                       agent=RunnableLambda(lambda _: 42))
    graph = memory(build_handoff_graph([broken], default_agent="broken", model=ScriptedChatModel()))
    state = run(graph, "hello there")
    assert "could not answer" in state["messages"][-1].text
    assert [type(m) for m in state["messages"]] == [HumanMessage, AIMessage]


# --- swarm-style Command handoff tools ------------------------------------------------------------

def swarm_style_graph(target: str) -> Any:
    model = ScriptedChatModel(scripts={"triage": [calls(tool_call(f"transfer_to_{target}", {}, "w1")),
                                                  "Staying with you, then."]})
    triage = AgentSpec(name="triage", title="Triage", description="First contact.", instructions="Route.",
                       handoffs=("billing",),
                       agent=create_agent(model, tools=[create_handoff_tool(agent_name=target)]))
    others = [AgentSpec(name="billing", title="Billing", description="Bills.", instructions="Bill."),
              AgentSpec(name="sales", title="Sales", description="Sells.", instructions="Sell.")]
    return memory(build_handoff_graph([triage, *others], default_agent="triage",
                                      model=ScriptedChatModel(default="Hello from the receiver.")))


def test_a_swarm_style_command_handoff_tool_becomes_a_handoff_request() -> None:
    state = run(swarm_style_graph("billing"), "my invoice is wrong")

    [record] = records_of(state)
    assert (record.outcome, record.target, record.request.trigger) == ("accepted", "billing", "tool")
    assert record.request.tool_call_id == "w1"
    assert state["active_agent"] == "billing"
    assert unanswered_calls(state["messages"]) == []


def test_a_swarm_style_command_to_an_agent_not_allowed_is_refused_by_the_gate() -> None:
    state = run(swarm_style_graph("sales"), "my invoice is wrong")

    [record] = records_of(state)
    assert record.outcome == "rejected" and record.rejection is not None
    assert record.rejection.code == "edge_not_allowed"
    assert state["active_agent"] == "triage"
    assert state["messages"][-1].text == "Staying with you, then."


# --- models without bind_tools ---------------------------------------------------------------------

def test_a_model_without_bind_tools_builds_and_answers_in_text() -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage("Plain answer.")]))
    solo = AgentSpec(name="solo", title="Solo", description="x", instructions="x", handoffs=("billing",))
    graph = memory(build_handoff_graph([solo, billing_spec()], default_agent="solo", model=fake))
    assert run(graph, "hi")["messages"][-1].text == "Plain answer."


def test_a_model_without_bind_tools_for_an_agent_with_tools_is_refused_at_build() -> None:
    fake = GenericFakeChatModel(messages=iter([]))
    spec = AgentSpec(name="solo", title="Solo", description="x", instructions="x", tools=(lookup_order,))
    with pytest.raises(GraphBuildError, match="cannot call tools.*lookup_order"):
        build_handoff_graph([spec], default_agent="solo", model=fake)


# --- extensible state, surviving a restart ----------------------------------------------------------

class TaggedState(HandoffState, total=False):
    tags: Annotated[list[str], operator.add]


class TaggedInput(HandoffInput, total=False):
    tags: list[str]


def tagged_graph() -> Any:
    solo = AgentSpec(name="solo", title="Solo", description="x", instructions="x")
    return build_handoff_graph([solo], default_agent="solo", model=ScriptedChatModel(default="ok"),
                               state_schema=TaggedState, input_schema=TaggedInput)


def test_an_extended_state_key_keeps_its_reducer_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.sqlite'}"
    config = {"configurable": {"thread_id": "tagged"}}
    with open_persistence(url) as persistence:
        graph = tagged_graph().compile(checkpointer=persistence.checkpointer, store=persistence.store)
        graph.invoke({"messages": [HumanMessage("one")], "tags": ["vip"]}, config)
    with open_persistence(url) as persistence:  # a new process would open the file the same way
        graph = tagged_graph().compile(checkpointer=persistence.checkpointer, store=persistence.store)
        graph.invoke({"messages": [HumanMessage("two")], "tags": ["renewal"]}, config)
        values = graph.get_state(config).values
    assert values["tags"] == ["vip", "renewal"]
    assert values["turn"] == 2


def test_the_extended_input_still_refuses_trusted_and_undeclared_keys() -> None:
    graph = memory(tagged_graph())
    config = {"configurable": {"thread_id": "x"}}
    with pytest.raises(InputRefused, match="active_agent"):
        graph.invoke({"messages": [HumanMessage("hi")], "active_agent": "solo"}, config)
    with pytest.raises(InputRefused, match="unknown key.*mood"):
        graph.invoke({"messages": [HumanMessage("hi")], "mood": "x"}, config)
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InputRefused, match="tags"):
        graph.invoke({"messages": [HumanMessage("hi")], "tags": deep}, config)
    assert graph.get_state(config).values == {}


def test_schemas_that_do_not_extend_the_handoff_state_are_refused_at_build() -> None:
    solo = AgentSpec(name="solo", title="Solo", description="x", instructions="x")
    with pytest.raises(GraphBuildError, match="must extend HandoffState"):
        build_handoff_graph([solo], default_agent="solo", model=ScriptedChatModel(), state_schema=NotesState)

    class SneakyInput(HandoffInput, total=False):
        case_file: dict[str, Any]

    with pytest.raises(GraphBuildError, match="case_file"):
        build_handoff_graph([solo], default_agent="solo", model=ScriptedChatModel(), input_schema=SneakyInput)


# --- run-time context -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    plan: str = "pro"


def context_graph() -> tuple[Any, ScriptedChatModel, list[Any]]:
    @tool
    def tenant_of(ctx: Annotated[ToolContext, InjectedToolArg]) -> str:
        """Say which tenant this conversation belongs to."""
        return f"tenant={ctx.context.tenant_id}"

    seen: list[Any] = []

    def paid_plans_only(case_file: dict[str, Any], payload: HandoffPayload, context: Tenant) -> str | None:
        seen.append(("precondition", context))
        return None if context.plan != "free" else "billing is for paid plans"

    def greet(ctx: InitContext) -> InitResult:
        seen.append(("init", ctx.context))
        return InitResult(action="greet", summary=f"tenant {ctx.context.tenant_id}")

    model = ScriptedChatModel(scripts={"triage": [
        calls(tool_call("tenant_of", {}, "k1")),
        calls(tool_call("transfer_to_billing", {"reason": "bill", "account_id": "ACC-2"}, "k2")),
        "Billing is not available on your plan.",
    ], "billing": ["Billing here."]})
    triage = AgentSpec(name="triage", title="Triage", description="x", instructions="x",
                       tools=(tenant_of,), handoffs=("billing",))
    billing = billing_spec(preconditions=(paid_plans_only,), on_enter=greet)
    graph = memory(build_handoff_graph([triage, billing], default_agent="triage", model=model,
                                       context_schema=Tenant))
    return graph, model, seen


@pytest.mark.parametrize("plan", ["pro", "free"])
def test_context_schema_values_reach_tools_preconditions_and_initialisation(plan: str) -> None:
    graph, _, seen = context_graph()
    state = run(graph, "bill please", context=Tenant(tenant_id="acme", plan=plan))

    assert any(isinstance(m, ToolMessage) and m.text == "tenant=acme" for m in state["messages"])
    assert ("precondition", Tenant("acme", plan)) in seen
    [record] = records_of(state)
    if plan == "pro":
        assert record.outcome == "accepted" and ("init", Tenant("acme", plan)) in seen
        assert "tenant acme" in state["briefing"]
    else:
        assert record.rejection is not None and record.rejection.code == "precondition_failed"
        assert "paid plans" in record.rejection.message


def test_context_reaches_triggers() -> None:
    class TenantTrigger(Trigger):
        def fires(self, ctx: TriggerContext) -> bool:
            return ctx.context is not None and ctx.context.plan == "enterprise"

    triage = AgentSpec(name="triage", title="Triage", description="x", instructions="x", handoffs=("vip",),
                       triggers=(TenantTrigger(name="enterprise", target="vip", reason="enterprise tenant"),))
    vip = AgentSpec(name="vip", title="VIP", description="x", instructions="x")
    graph = memory(build_handoff_graph([triage, vip], default_agent="triage",
                                       model=ScriptedChatModel(default="hi"), context_schema=Tenant))
    assert run(graph, "hello", thread="e", context=Tenant("big", "enterprise"))["active_agent"] == "vip"
    assert run(graph, "hello", thread="p", context=Tenant("small", "pro"))["active_agent"] == "triage"


# --- handoff policy as values ---------------------------------------------------------------------

def two_agents(handoff: Handoff | str, billing_context: ContextPolicy | None = None,
               triage_replies: list[Any] | None = None) -> tuple[Any, ScriptedChatModel]:
    model = ScriptedChatModel(scripts={
        "triage": triage_replies or [
            calls(tool_call("lookup_order", {"order_id": "O-1"}, "p1"), content="Let me look."),
            calls(tool_call("transfer_to_billing", {"reason": "refund", "account_id": "ACC-3"}, "p2")),
        ],
        "billing": ["Billing here."],
    })
    triage = AgentSpec(name="triage", title="Triage", description="x", instructions="x",
                       tools=(lookup_order,), handoffs=(handoff,))
    extra = {"context": billing_context} if billing_context else {}
    return memory(build_handoff_graph([triage, billing_spec(**extra)], default_agent="triage", model=model)), model


def billing_prompt(model: ScriptedChatModel) -> list[BaseMessage]:
    return model.calls_by("billing")[0]["messages"][1:]


def test_a_handoffs_input_filter_shapes_what_the_receiver_sees() -> None:
    graph, model = two_agents("billing")
    run(graph, "refund O-1")
    assert any(isinstance(m, ToolMessage) for m in billing_prompt(model))  # the default window keeps tools

    graph, model = two_agents(Handoff(target="billing", input_filter=user_messages_only))
    run(graph, "refund O-1")
    assert [m.text for m in billing_prompt(model)] == ["refund O-1"]
    assert "ACC-3" in model.calls_by("billing")[0]["messages"][0].text  # what was learnt still arrives


def test_a_receivers_context_policy_filter_and_the_ready_filters() -> None:
    graph, model = two_agents("billing", ContextPolicy(input_filter=remove_all_tools))
    run(graph, "refund O-1")
    prompt = billing_prompt(model)
    assert not any(isinstance(m, ToolMessage) or getattr(m, "tool_calls", None) for m in prompt)
    assert [m.text for m in prompt] == ["refund O-1", "Let me look."]
    assert [m.text for m in last_messages(1)(prompt)] == ["Let me look."]
    with pytest.raises(ValueError, match="at least 1"):
        last_messages(0)


def test_a_failing_input_filter_ends_the_turn_honestly() -> None:
    def broken(_: list[BaseMessage]) -> str:
        return "not messages"

    graph, _ = two_agents(Handoff(target="billing", input_filter=broken))  # type: ignore[arg-type]
    state = run(graph, "refund O-1")
    assert "could not take over" in state["messages"][-1].text
    assert state["active_agent"] == "triage"


def test_name_and_description_overrides_reach_the_model_and_the_gate() -> None:
    handoff = Handoff(target="billing", tool_name="escalate_billing", tool_description="Money matters only.")
    graph, model = two_agents(handoff, triage_replies=[
        calls(tool_call("escalate_billing", {"reason": "refund", "account_id": "ACC-3"}, "n1"))])
    state = run(graph, "refund O-1")

    first = model.calls_by("triage")[0]
    assert first["tools"] == ["lookup_order", "escalate_billing"]
    assert "(tool escalate_billing)" in first["messages"][0].text
    [record] = records_of(state)
    assert record.outcome == "accepted" and record.request.trigger_name == "escalate_billing"
    answer = next(m for m in state["messages"] if isinstance(m, ToolMessage) and m.tool_call_id == "n1")
    assert answer.name == "escalate_billing"
    with pytest.raises(ValueError, match="tool name"):
        Handoff(target="billing", tool_name="has spaces")


def enabled_when_account(check: Any) -> bool:
    return bool(check.case_file.get("account_id"))


def test_an_enabled_check_keeps_the_transfer_tool_out_of_the_openai_request(openai_stub: OpenAIStub) -> None:
    openai_stub.add(text_reply("How can I help?"))
    model = ChatOpenAI(model="stub", base_url=openai_stub.base_url, api_key="local", max_retries=0)
    triage = AgentSpec(name="triage", title="Triage", description="x", instructions="x", tools=(lookup_order,),
                       handoffs=(Handoff(target="billing", is_enabled=enabled_when_account), "sales"))
    sales = AgentSpec(name="sales", title="Sales", description="Sells.", instructions="Sell.")
    graph = memory(build_handoff_graph([triage, billing_spec(), sales], default_agent="triage", model=model))
    run(graph, "hello")

    [request] = openai_stub.requests
    offered = [t["function"]["name"] for t in request["tools"]]
    assert offered == ["lookup_order", "transfer_to_sales"]
    assert "transfer_to_billing" not in request["messages"][0]["content"]


def test_the_gate_refuses_a_disabled_handoff_asked_for_anyway() -> None:
    handoff = Handoff(target="billing", is_enabled=enabled_when_account)
    graph, model = two_agents(handoff, triage_replies=[
        calls(tool_call("transfer_to_billing", {"reason": "refund", "account_id": "ACC-3"}, "d1")),
        "I can't hand you over yet."])
    state = run(graph, "refund O-1")

    assert model.calls_by("triage")[0]["tools"] == ["lookup_order"]
    [record] = records_of(state)
    assert record.rejection is not None and record.rejection.code == "handoff_disabled"
    assert state["active_agent"] == "triage"


def test_an_enabled_check_that_raises_counts_as_disabled() -> None:
    def explodes(_: Any) -> bool:
        raise RuntimeError("no")

    graph, model = two_agents(Handoff(target="billing", is_enabled=explodes), triage_replies=["Hello."])
    run(graph, "hi")
    assert model.calls_by("triage")[0]["tools"] == ["lookup_order"]


@pytest.mark.anyio
async def test_a_bring_your_own_agent_runs_on_the_async_path_too() -> None:
    graph, _ = create_agent_graph(
        [calls(tool_call("transfer_to_billing", {"reason": "double charge", "account_id": "ACC-1"}, "a1"))],
        ["Billing, async."],
    )
    config = {"configurable": {"thread_id": "async"}}
    await graph.ainvoke({"messages": [HumanMessage("charged twice")]}, config)
    state = (await graph.aget_state(config)).values
    assert state["active_agent"] == "billing" and state["messages"][-1].text == "Billing, async."


def test_a_spec_with_both_a_model_and_an_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="either model or agent"):
        AgentSpec(name="x_y", title="X", description="x", instructions="x", model=ScriptedChatModel(),
                  agent=RunnableLambda(lambda m: AIMessage("x")))


def test_a_precondition_that_raises_refuses_the_handoff_instead_of_failing_the_turn() -> None:
    def broken(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
        raise KeyError("plan")

    model = ScriptedChatModel(scripts={"triage": [
        calls(tool_call("transfer_to_billing", {"reason": "bill", "account_id": "ACC-2"}, "b1")), "Still here."]})
    triage = AgentSpec(name="triage", title="Triage", description="x", instructions="x", handoffs=("billing",))
    graph = memory(build_handoff_graph([triage, billing_spec(preconditions=(broken,))], default_agent="triage",
                                       model=model))
    state = run(graph, "bill")
    [record] = records_of(state)
    assert record.rejection is not None and record.rejection.code == "precondition_failed"
    assert "broken failed (KeyError)" in record.rejection.message
    assert state["messages"][-1].text == "Still here."


def test_a_create_agent_specialist_runs_in_a_durable_session_and_streams_its_tokens() -> None:
    """HandoffSession runs with durability="sync": the agent's own graph, which has no checkpointer,
    must not wait for a save; and its model's tokens reach the session under the agent's name."""
    from handoff.agents.offline import OfflineChatModel
    from handoff.graphs.session import HandoffSession

    offline = OfflineChatModel()
    helper = AgentSpec(name="helper", title="Helper", description="Anything.", instructions="Help.",
                       agent=lambda transfer_tools: create_agent(offline, transfer_tools))
    graph = memory(build_handoff_graph([helper], default_agent="helper", model=offline))
    tokens: list[Any] = []
    result = HandoffSession(graph, "durable").send("hello there", on_token=tokens.append)

    assert result.active_agent == "helper" and result.reply.startswith("[offline model]")
    deltas = [t for t in tokens if t.kind == "delta"]
    assert len(deltas) > 1 and {t.agent for t in deltas} == {"helper"}
    assert "".join(t.text for t in deltas) == result.reply
