"""The load benchmark's floor: bare LangGraph served over HTTP, on the same stack as the service.

``python -m benchmarks.load_floor --port P --db URL`` serves what ``benchmarks/load.py`` needs of a
worker (``POST /threads``, ``POST /threads/{id}/messages`` as JSON, ``/healthz``), each turn one
``graph.ainvoke`` of the storage benchmark's floor (benchmarks/peers.py): one node that answers
from the last 12 messages kept in state and appends the line and the answer to the thread's
transcript in the store, with a checkpoint per step. It runs on what the service runs on:
uvicorn and FastAPI with pydantic bodies, the service's persistence (``open_service_persistence``:
``LeanPostgresSaver`` and its serializer, ``LeanPostgresStore``, one psycopg pool), and the same
garbage-collector settings and log level. Its model is a zero-cost scripted one.

What it leaves out is what the service adds: the turn lock across workers, the resend check, the
handoff machinery and its triggers, the case file and the handoff log, masking, streaming, and the
offline model's work. The difference between the two rows of ``python -m benchmarks.load
--vs-floor`` is what those cost.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.store.base import BaseStore
from pydantic import BaseModel, Field

from benchmarks.conversation import floor_policy
from benchmarks.peers import FloorState, floor_prompt, floor_step
from handoff.agents.scripted import ScriptedChatModel

NAMESPACE = "floor-transcript"
"""The store namespace's first part; the second is the thread id."""


def transcript_namespace(thread_id: str) -> tuple[str, str]:
    return (NAMESPACE, thread_id)


class NewThread(BaseModel):
    graph: str | None = None


class ThreadCreated(BaseModel):
    thread_id: str


class Line(BaseModel):
    text: str = Field(min_length=1, max_length=8000)
    stream: bool = False


class Answer(BaseModel):
    thread_id: str
    reply: str
    transcript_len: int


def floor_graph(model: ScriptedChatModel) -> StateGraph:
    """The storage benchmark's floor, async, its transcript kept per thread."""

    async def chat(state: FloorState, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
        reply = await model.ainvoke(floor_prompt(state))
        model.calls.clear()  # the scripted model keeps every prompt: a long run would hoard them
        puts, update = floor_step(state, reply, transcript_namespace(config["configurable"]["thread_id"]))
        await store.abatch(puts)
        return update

    builder = StateGraph(FloorState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    return builder


def create_app(db: str) -> FastAPI:
    """The floor's app on the PostgreSQL database ``db``."""
    from handoff.service.storage import open_service_persistence

    graph: Any = None
    persistence_kind = "postgresql" if db.startswith(("postgresql://", "postgres://")) else "other"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal graph
        async with open_service_persistence(db) as persistence:
            graph = floor_graph(ScriptedChatModel(default=floor_policy)).compile(
                checkpointer=persistence.checkpointer, store=persistence.store)
            yield

    app = FastAPI(title="LangGraph floor", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "persistence": persistence_kind}

    @app.post("/threads")
    async def new_thread(_: NewThread) -> ThreadCreated:
        return ThreadCreated(thread_id=uuid.uuid4().hex)

    @app.post("/threads/{thread_id}/messages")
    async def send(thread_id: str, line: Line) -> Answer:
        result = await graph.ainvoke({"messages": [HumanMessage(line.text)]},
                                     {"configurable": {"thread_id": thread_id}})
        return Answer(thread_id=thread_id, reply=str(result["messages"][-1].content),
                      transcript_len=result["transcript_len"])

    return app


def main() -> None:
    import uvicorn

    from handoff.service.gc_policy import tune_for_serving

    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", required=True, help="postgresql://...")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.db)
    tune_for_serving()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
