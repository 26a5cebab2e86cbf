"""Replies as the agents write them: LangGraph's run stream turned into typed token events.

A run streamed with ``TOKEN_STREAM`` yields LangGraph's ``(namespace, mode, chunk)`` items (subgraphs
included, so a bring-your-own agent that is a graph streams too); ``TokenTranslator`` turns them into
``TokenEvent``s, the one translation the CLI, the service and any app share:

- ``delta``: the next piece of a message an agent is writing (``message_id`` names the message);
- ``complete``: the model finished that message; it is whole;
- ``interrupted``: the message is not part of the conversation: it broke off (a dropped connection, a
  deadline, a model error), or its step failed later and was run again; the text shown for it is not
  stored, and an honest message or a new attempt follows.

Only agent nodes' chat-model text counts, tagged with the top-level node (the agent) however deep the
model ran: a model called elsewhere (a classifier trigger, run where START routes the turn or in the
intake) and tool-call chunks are never shown as reply text. Handoff events (``custom`` mode) come in the same stream, in order, so they sit between
one agent's text and the next.

A message is settled as soon as it can be: ``complete`` with its model call's last chunk;
``interrupted`` when its model call fails (the node writes a ``MODEL_CALL_BROKEN`` custom event,
graphs/agent_calls.py), when its node starts another message while it was still open (a fallback
model took over inside the call), when its node's update arrives while it is still open, or when the
run ends. A complete message its step will not keep is ``interrupted`` too: at a later model call's
failure in the same step (the step is run again, or ends with an honest message), or when the step's
update does not hold it. So what the user was shown, once settled, is what was stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any, Literal

from langchain_core.messages import AIMessageChunk
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field

from handoff.graphs.agent_calls import MODEL_CALL_BROKEN
from handoff.graphs.boundary import MAX_ID_CHARS, clean_text
from handoff.graphs.gate import GATE
from handoff.graphs.human import HUMAN
from handoff.graphs.intake import INTAKE

TOKEN_SCHEMA_VERSION = 1
"""Version of ``TokenEvent``'s fields; a change that could break a client gets a new number."""
TOKEN_STREAM: dict[str, Any] = {"stream_mode": ["custom", "updates", "messages"], "subgraphs": True}
"""How a run whose replies are shown as they are written streams: handoff events, node updates (whole
messages) and the chat models' tokens, from subgraphs too (LangGraph drops a subgraph's tokens
otherwise). Items are ``(namespace, mode, chunk)``; the namespace is ``()`` at the top level."""
Item = tuple[tuple[str, ...], str, Any]
NOT_SPEAKING = frozenset({"__start__", INTAKE, GATE, HUMAN})

TokenKind = Literal["delta", "complete", "interrupted"]


class TokenEvent(BaseModel):
    """A piece of a reply as an agent writes it, or the end of one (schema version 1)."""

    # Every field is always sent, and the published schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    type: Literal["token"] = "token"
    schema_version: Literal[1] = Field(default=TOKEN_SCHEMA_VERSION,
                                       description="Version of this event's fields (1).")
    kind: TokenKind = Field(default="delta", description=(
        "`delta`: `text` is the next piece of the message; `complete`: the message is whole (its stored "
        "text follows in a `message` event with the same `message_id`); `interrupted`: the message is not "
        "part of the conversation (it broke off, or its step failed later and was run again): the text "
        "shown for it was not stored, and an honest message or a new attempt follows."))
    agent: str = Field(description="The agent (node name) writing the message.")
    message_id: str = Field(description="Shared by every token event of one message.")
    text: str = Field(default="", description="The new piece of text (`delta` only).")


def items(stream: Iterator[Any], *, subgraphs: bool) -> Iterator[Item]:
    """A run's stream as ``(namespace, mode, chunk)`` items, whether or not it streamed subgraphs."""
    for item in stream:
        yield item if subgraphs else ((), *item)


async def aitems(stream: AsyncIterator[Any], *, subgraphs: bool) -> AsyncIterator[Item]:
    """``items`` for ``astream``."""
    async for item in stream:
        yield item if subgraphs else ((), *item)


def speaking_agents(graph: CompiledStateGraph) -> frozenset[str]:
    """The nodes whose models write replies: a handoff graph's agents but the person; for another graph,
    every node but the handoff machinery's own."""
    specs = getattr(getattr(graph, "builder", None), "agent_specs", None)
    names = set(specs) if specs else set(graph.nodes)
    return frozenset(names - NOT_SPEAKING)


class TokenTranslator:
    """Turns one run's stream items into ``TokenEvent``s; feed it every item, then ``close``."""

    def __init__(self, agents: Collection[str]) -> None:
        """Args:
        agents: The nodes whose model text is a reply (``speaking_agents(graph)``).
        """
        self.agents = frozenset(agents)
        self._open: dict[str, str] = {}
        """Messages being written: id -> agent, oldest first."""
        self._settled: set[str] = set()
        self._text: dict[str, list[str]] = {}
        self._unconfirmed: dict[str, str] = {}
        """Messages streamed whole that their node's update has yet to keep: id -> agent."""
        self.completed: dict[str, str] = {}
        """The messages streamed whole (and kept, once their node's update came): id -> text."""

    def feed(self, mode: str, chunk: Any, namespace: tuple[str, ...] = ()) -> list[TokenEvent]:
        """The token events one stream item makes (none for most)."""
        if mode == "messages" and isinstance(chunk, tuple) and len(chunk) == 2:
            message, metadata = chunk
            # A model inside a subgraph writes for the top-level node (the agent) the subgraph runs in.
            node = namespace[0].partition(":")[0] if namespace else (metadata or {}).get("langgraph_node")
            return self._token(message, node)
        if namespace:
            return []  # a subgraph's own steps and events are not the agent's
        if mode == "updates" and isinstance(chunk, dict):
            return [event for node, update in chunk.items() if node in self.agents
                    for event in self._settle(node, update)]
        if mode == "custom" and isinstance(chunk, dict) and chunk.get("type") == MODEL_CALL_BROKEN:
            # The step keeps nothing it wrote so far: it is run again, or ends with an honest message.
            return self._settle(str(chunk.get("agent")), None)
        return []

    def close(self) -> list[TokenEvent]:
        """The run ended: every message still open broke off."""
        return [event for node in dict.fromkeys(self._open.values()) for event in self._interrupt(node)]

    def _token(self, message: Any, agent: Any) -> list[TokenEvent]:
        # Whole messages (a model that does not stream, a node's output) arrive with the node's update.
        if not isinstance(message, AIMessageChunk) or agent not in self.agents:
            return []
        message_id = clean_text(str(message.id or ""), max_chars=MAX_ID_CHARS)
        if message_id in self._settled:
            return []  # a call the node stopped waiting for may still be writing
        events: list[TokenEvent] = []
        text = clean_text(str(message.text))  # text only: tool-call chunks carry none
        if text:
            if message_id not in self._open:
                events.extend(self._interrupt(agent))  # this node's earlier message was abandoned
                self._open[message_id] = agent
            self._text.setdefault(message_id, []).append(text)
            events.append(TokenEvent(agent=agent, message_id=message_id, text=text))
        if getattr(message, "chunk_position", None) == "last" and message_id in self._open:
            del self._open[message_id]
            self._settled.add(message_id)
            self.completed[message_id] = "".join(self._text.pop(message_id, []))
            self._unconfirmed[message_id] = agent
            events.append(TokenEvent(kind="complete", agent=agent, message_id=message_id))
        return events

    def _settle(self, agent: str, update: Any) -> list[TokenEvent]:
        """``agent``'s step ended: what it is still writing broke off, and what it wrote whole but does
        not keep (an earlier attempt's, or one an honest message replaced) is withdrawn."""
        events = self._interrupt(agent)
        messages = (update.get("messages") if isinstance(update, dict) else None) or []
        kept_ids = {clean_text(str(m.id), max_chars=MAX_ID_CHARS) for m in messages if getattr(m, "id", None)}
        # A text match too: an agent may store its messages under new ids (a bring-your-own graph).
        kept_texts = {str(m.content) for m in messages if isinstance(getattr(m, "content", None), str)}
        for message_id, owner in list(self._unconfirmed.items()):
            if owner != agent:
                continue
            del self._unconfirmed[message_id]
            if message_id not in kept_ids and self.completed.get(message_id) not in kept_texts:
                del self.completed[message_id]
                events.append(TokenEvent(kind="interrupted", agent=agent, message_id=message_id))
        return events

    def _interrupt(self, agent: str) -> list[TokenEvent]:
        broken = [message_id for message_id, owner in self._open.items() if owner == agent]
        for message_id in broken:
            del self._open[message_id]
            self._settled.add(message_id)
            self._text.pop(message_id, None)
        return [TokenEvent(kind="interrupted", agent=agent, message_id=message_id) for message_id in broken]
