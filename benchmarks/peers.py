"""The LangGraph peers the storage benchmark plays: this project, the floor, langgraph-swarm, langgraph-supervisor.

Each peer is a context manager that opens its graph on a SQLite file of its own and yields a
``Side``: ``send`` plays one user line, ``drain`` returns the prompt size of each model call
since the last drain. Every peer runs on ``open_persistence``'s SQLite checkpointer (and store,
where it keeps one), so they share the file settings; the project and the floor also share its
serializer, swarm and supervisor run with LangGraph's stock serializer, as their users get them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, message_to_dict
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore, PutOp
from typing_extensions import TypedDict

from benchmarks.conversation import (
    CYCLE,
    SUPERVISOR,
    floor_policy,
    prompt_chars,
    reply_policy,
    supervisor_policy,
)
from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.prompt_markers import AGENT_MARKER
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession
from handoff.state import MESSAGE_WINDOW

STOCK = JsonPlusSerializer()
"""LangGraph's default checkpoint serializer: what a swarm or supervisor user gets."""
THREAD = {"configurable": {"thread_id": "bench"}}


@dataclass
class Side:
    """One peer, open: play a line, then read what its model was sent."""

    send: Callable[[str], None]
    model: ScriptedChatModel

    def drain(self) -> list[int]:
        """Prompt characters of each model call since the last drain (the calls are then forgotten,
        so a long run does not keep every prompt alive)."""
        chars = [prompt_chars(call["messages"]) for call in self.model.calls]
        self.model.calls.clear()
        return chars


def _invoke(graph: Any, **options: Any) -> Callable[[str], None]:
    return lambda text: graph.invoke({"messages": [HumanMessage(text)]}, THREAD, **options) and None


@contextmanager
def project(db: Path, serde: SerializerProtocol | None = None, *, url: str | None = None,
            **options: Any) -> Iterator[Side]:
    """This project's customer-service graph through ``graph.invoke`` (checkpointer + store).

    Args:
        db: The SQLite file.
        serde: The checkpoint serializer; the project's own unless given.
        url: Another persistence URL instead of ``db`` (``memory``).
        options: Passed to every ``invoke`` (``durability="exit"``).
    """
    model = ScriptedChatModel(default=reply_policy(typed_payloads=True))
    with open_persistence(url or f"sqlite:///{db}", serde=serde) as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        yield Side(_invoke(graph, **options), model)


@contextmanager
def session(db: Path) -> Iterator[Side]:
    """The same graph through ``HandoffSession.send``: each step durable, the turn's result read back."""
    model = ScriptedChatModel(default=reply_policy(typed_payloads=True))
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        handoff_session = HandoffSession(graph, "bench")
        yield Side(lambda text: handoff_session.send(text) and None, model)


FLOOR_PROMPT = "You are a helpful customer-service agent. Answer briefly and politely."


def keep_window(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """The floor's reducer: ``add_messages``, then the last ``MESSAGE_WINDOW`` messages."""
    return add_messages(left, right)[-MESSAGE_WINDOW:]


class FloorState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], keep_window]
    transcript_len: int


def floor_prompt(state: FloorState) -> list[AnyMessage]:
    """What the floor's one agent is sent: its instructions and the recent window."""
    return [SystemMessage(FLOOR_PROMPT), *state["messages"]]


def floor_step(state: FloorState, reply: AnyMessage, ns: tuple[str, ...]) -> tuple[list[PutOp], dict[str, Any]]:
    """The floor's writes for one answer: the line and the answer appended to the transcript at ``ns``,
    and the state update."""
    start = state.get("transcript_len", 0)
    puts = [PutOp(ns, f"{start + i:09d}", message_to_dict(m), index=False)
            for i, m in enumerate((state["messages"][-1], reply))]
    return puts, {"messages": [reply], "transcript_len": start + 2}


def floor_graph(model: ScriptedChatModel) -> StateGraph:
    """One node: answer from the recent window, append the line and the answer to the store's transcript."""

    def chat(state: FloorState, *, store: BaseStore) -> dict[str, Any]:
        puts, update = floor_step(state, model.invoke(floor_prompt(state)), ("floor", "transcript", "bench"))
        store.batch(puts)
        return update

    builder = StateGraph(FloorState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    return builder


@contextmanager
def floor(db: Path) -> Iterator[Side]:
    """The floor: a one-node chat graph on the same SQLite checkpointer, serializer and store as the project."""
    model = ScriptedChatModel(default=floor_policy)
    with open_persistence(f"sqlite:///{db}") as persistence:
        graph = floor_graph(model).compile(checkpointer=persistence.checkpointer, store=persistence.store)
        yield Side(_invoke(graph), model)


def _specialists(model: ScriptedChatModel, tools: Callable[[str], list[Any]]) -> list[Any]:
    """The three customer-service specialists as prebuilt LangChain agents."""
    from langchain.agents import create_agent

    from handoff.agents.customer_service.specialists import customer_service_agents

    return [
        create_agent(model, tools=tools(spec.name), name=spec.name,
                     system_prompt=f"{spec.instructions}\n\n{AGENT_MARKER} {spec.name}")
        for spec in customer_service_agents()
    ]


@contextmanager
def swarm(db: Path) -> Iterator[Side]:
    """The same three agents as a langgraph-swarm graph, each able to hand to the other two."""
    from langgraph_swarm import create_handoff_tool, create_swarm

    from handoff.agents.customer_service.specialists import customer_service_agents

    model = ScriptedChatModel(default=reply_policy(typed_payloads=False))
    descriptions = {spec.name: spec.description for spec in customer_service_agents()}
    agents = _specialists(model, lambda me: [
        create_handoff_tool(agent_name=target, description=descriptions[target])
        for target in CYCLE if target != me])
    with open_persistence(f"sqlite:///{db}", serde=STOCK) as persistence:
        graph = create_swarm(agents, default_active_agent=CYCLE[0]).compile(checkpointer=persistence.checkpointer)
        yield Side(_invoke(graph), model)


@contextmanager
def supervisor(db: Path) -> Iterator[Side]:
    """The same three agents under a langgraph-supervisor supervisor that routes every line."""
    from langgraph_supervisor import create_supervisor

    model = ScriptedChatModel(default=supervisor_policy())
    with warnings.catch_warnings():  # it builds its supervisor with LangGraph's deprecated create_react_agent
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = create_supervisor(
            _specialists(model, lambda _: []), model=model, supervisor_name=SUPERVISOR,
            prompt=f"Route each customer message to the right specialist.\n\n{AGENT_MARKER} {SUPERVISOR}",
        )
    with open_persistence(f"sqlite:///{db}", serde=STOCK) as persistence:
        yield Side(_invoke(graph.compile(checkpointer=persistence.checkpointer)), model)
