"""The handoff service: HTTP + server-sent events over ``HandoffService``, and the web chat.

Run it with ``python -m handoff.service`` (or ``uvicorn --factory handoff.service.app:create_app``).
Settings: ``HANDOFF_DB`` (``memory``, a ``.sqlite`` path, or ``postgresql://...``;
default ``sqlite:///$HANDOFF_DATA_DIR/handoff.sqlite``), ``HANDOFF_API_TOKENS``
(``token:name,...``; access is open when unset, see service/auth.py), ``HANDOFF_OPEN_DOCS``
(serve the OpenAPI pages without a token), the model settings of agents/settings.py
(offline when none are set).

Every request passes service/guard.py first: the bearer token and the body's size are
checked before anything reads the body.

Concurrency: every accepted turn runs as a task of its own on the worker's
event loop (``graph.astream`` over an async checkpointer and store), so the
turns of many threads run at the same time and a slow model call is awaited
without holding anything else up. A turn finishes even if its client goes
away, so a thread's checkpoint is always a whole step; at shutdown the worker
waits for its running turns (``SHUTDOWN_WAIT``) before it closes the
database. Several worker processes may share one PostgreSQL database; a
thread runs one turn at a time across all of them (service/locks.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from handoff.graphs.boundary import THREAD_ID_MAX, THREAD_ID_PATTERN
from handoff.graphs.registry import GRAPHS, GraphEntry
from handoff.graphs.settings import StorageSettings
from handoff.graphs.streaming import TokenEvent
from handoff.service.auth import Access, bearer_token, open_docs_from_env, tokens_from_env
from handoff.service.embedding import TRANSCRIPT_LIMIT, HandoffService, checked_thread_id
from handoff.service.errors import (
    ERRORS_BY_CODE,
    TurnFailed,
    UnsupportedMediaType,
    as_service_error,
)
from handoff.service.gc_policy import tune_for_serving
from handoff.service.guard import CLIENT_KEY, MAX_BODY_BYTES, RequestGuard
from handoff.service.http_errors import install_error_handlers
from handoff.service.models import (
    AnswerEscalation,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    GraphInfo,
    SendMessage,
    StartThread,
    ThreadInfo,
    ThreadState,
    TurnEvent,
    TurnResponse,
)
from handoff.service.storage import open_service_persistence
from handoff.service.turns import STREAM_TOKENS, TurnStream
from handoff.state import HandoffRecord

STATIC = Path(__file__).parent / "static"
SHUTDOWN_WAIT = 30.0
"""Seconds a stopping worker gives its running turns to finish (the rest stop at their last step)."""
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown thread or escalation (or, with tokens on, "
          "another client's thread)."},
    422: {"model": ErrorBody, "description": "A malformed thread id."},
    409: {"model": ErrorBody, "description": "The thread is busy with another turn (`thread_busy`: nothing "
          "was done, send it again) or waiting for a person."},
    503: {"model": ErrorBody, "description": "The database is unreachable (`persistence_unavailable`) or "
          "busy (`persistence_busy`), or a turn lost its thread lock when the database restarted "
          "(`turn_interrupted`); send the same request again (see `Retry-After`)."},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The body is larger than the service reads (refused unread)."},
    415: {"model": ErrorBody, "description": "The body is not JSON (send `Content-Type: application/json`)."},
    422: {"model": ErrorBody, "description": "Malformed or invalid body or thread id, a text with control "
          "characters, or a `message_id` reused for another text."},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Access tokens are on and the bearer token is missing or unknown."},
}
TOKEN_EVENTS_DOC = (
    "`token` events (schema `TokenEvent`, `schema_version` 1) carry the agents' replies as they are "
    "written, tagged with the writing agent and a `message_id`: `delta` events append `text`; `complete` "
    "says the message is whole, and its `message` event (same `message_id`) follows with the stored text "
    "once the agent's step ends; `interrupted` says it broke off (a dropped connection, a deadline, a "
    "model error): its text is not part of the conversation, was not stored, and an honest message or a "
    "new attempt follows. Handoff events come between one agent's tokens and the next's; tool calls are "
    "never sent as tokens. A client that shows whole messages only can ignore `token` events."
)
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TurnResponse,
        "description": "Server-sent turn events (`stream: true`: handoff, token, step, message, escalation, "
        "then done or error), or the turn's JSON result (`stream: false`). " + TOKEN_EVENTS_DOC,
        "content": {"text/event-stream": {"itemSchema": {
            "type": "object",
            "description": "One server-sent event: its name, and its TurnEvent as one line of JSON.",
            "required": ["event", "data"],
            "properties": {
                "event": {"enum": ["handoff", "token", "step", "message", "escalation", "done", "error"]},
                "data": {"type": "string", "contentMediaType": "application/json"},
            },
            # The token event's schema, inline: the versioned contract a streaming client codes against.
            "if": {"properties": {"event": {"const": "token"}}},
            "then": {"properties": {"data": {"contentSchema": TokenEvent.model_json_schema(mode="serialization")}}},
        }}},
    },
}
BEARER = HTTPBearer(auto_error=False, description="A token of HANDOFF_API_TOKENS (only when tokens are on).")

log = logging.getLogger("handoff.service")


class Health(BaseModel):
    """The service is up, and on which persistence."""

    ok: bool
    persistence: str = Field(description="memory, sqlite or postgresql.")


def create_app(
    db_url: str | None = None,
    *,
    model: BaseChatModel | None = None,
    graphs: Mapping[str, GraphEntry] | None = None,
    tokens: Mapping[str, str] | None = None,
    open_docs: bool | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app; persistence opens at startup and closes at shutdown.

    Args:
        db_url: ``memory``, a ``.sqlite`` path or ``postgresql://...``; StorageSettings by default.
        model: Chat model for every graph; the environment's (offline when unset) by default.
        graphs: Graphs served by name; the registry's by default.
        tokens: Bearer token -> client name; ``HANDOFF_API_TOKENS`` by default; empty means open access.
        open_docs: Serve ``/openapi.json``, ``/docs`` and ``/redoc`` without a token when tokens are on;
            ``HANDOFF_OPEN_DOCS`` by default (off).
        max_body_bytes: Largest request body; a larger one is refused with 413 before it is read.
    """
    url = db_url or StorageSettings().db_url
    access = Access(tokens if tokens is not None else tokens_from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service_persistence(url) as persistence:
            service = HandoffService(persistence, model=model, graphs=graphs)
            for name in service.entries:  # now, not on a first request: a turn never waits on a compile
                service.graph(name)
            app.state.service = service
            app.state.turns = set()
            try:
                yield
            finally:
                if app.state.turns:
                    await asyncio.wait(app.state.turns, timeout=SHUTDOWN_WAIT)
                await service.close()

    app = FastAPI(
        title="Handoff service",
        summary="Conversations with specialist agents that hand over to one another.",
        lifespan=lifespan,
    )
    app.state.access = access
    install_error_handlers(app)
    _install_routes(app, access)
    _document_graphs(app, sorted(graphs if graphs is not None else GRAPHS))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(RequestGuard, access=access, max_body_bytes=max_body_bytes,
                       open_docs=open_docs_from_env() if open_docs is None else open_docs)
    return app


def _document_graphs(app: FastAPI, names: list[str]) -> None:
    """The OpenAPI document names the graphs this app serves as the only values of ``graph``, and lists
    the token event's schema among its schemas."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build()["components"]["schemas"]
            graph = schemas["StartThread"]["properties"]["graph"]
            graph.pop("maxLength", None)  # the enum bounds it
            graph["enum"] = names
            schemas.setdefault("TokenEvent", TokenEvent.model_json_schema(mode="serialization"))  # listed with the others
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _service(request: Request) -> HandoffService:
    return request.app.state.service


async def caller(request: Request) -> str | None:
    """The client a request comes from (``Authorization: Bearer``); None when access is open.

    The guard (service/guard.py) has checked the token before the body was read; the check here
    only covers an app run without it.

    Raises:
        Unauthorized: tokens are on and the token is missing or unknown.
    """
    if CLIENT_KEY in request.scope:
        return request.scope[CLIENT_KEY]
    return request.app.state.access.client(bearer_token(request.headers))


async def json_body(request: Request) -> None:
    """Refuse a body sent as anything but JSON before reading it.

    Raises:
        UnsupportedMediaType: a non-empty body whose ``Content-Type`` is not JSON.
    """
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if has_body and media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"the body is {media}; send JSON with Content-Type: application/json")


async def thread_id_param(
    thread_id: Annotated[str, PathParam(
        description="The thread's id: letters, digits and `._:@+-`, starting with a letter or digit.",
        # documented here, checked by the graph's own rule (graphs/boundary.py) in checked_thread_id
        json_schema_extra={"minLength": 1, "maxLength": THREAD_ID_MAX,
                           "pattern": f"^{THREAD_ID_PATTERN.pattern}$"},
    )],
) -> str:
    """The path's thread id, if the graphs take it.

    Raises:
        InvalidInput: 422 naming ``thread_id`` and the rule (a NUL, a control character, too long).
    """
    return checked_thread_id(thread_id, location="path")


ThreadId = Annotated[str, Depends(thread_id_param)]
Caller = Annotated[str | None, Depends(caller)]


def _install_routes(app: FastAPI, access: Access) -> None:
    # The bearer scheme is declared only when tokens are on, so the OpenAPI document says
    # exactly what the running service asks for.
    secured: list[Any] = [Depends(BEARER)] if access.enabled else []
    with_body = [*secured, Depends(json_body)]
    errors = {**ERRORS, **AUTH_ERRORS} if access.enabled else ERRORS
    body_errors = {**errors, **BODY_ERRORS}
    auth_errors = AUTH_ERRORS if access.enabled else {}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def health(request: Request) -> Health:
        """Liveness, and which persistence is in use (never needs a token)."""
        url = _service(request).persistence.url
        kind = "memory" if url == "memory" else "postgresql" if url.startswith("postgres") else "sqlite"
        return Health(ok=True, persistence=kind)

    @app.get("/graphs", dependencies=secured, responses=auth_errors)
    async def list_graphs(request: Request, who: Caller) -> list[GraphInfo]:
        """The graphs a thread can run on."""
        return _service(request).graphs()

    @app.post("/threads", status_code=status.HTTP_201_CREATED, responses=body_errors, dependencies=with_body)
    async def start_thread(request: Request, who: Caller, body: StartThread | None = None) -> ThreadInfo:
        """Start a conversation (the customer-service graph unless another is named)."""
        return await _service(request).start_thread((body or StartThread()).graph, owner=who)

    @app.get("/threads/{thread_id}", responses=errors, dependencies=secured)
    async def read_thread(
        request: Request,
        thread_id: ThreadId,
        who: Caller,
        limit: Annotated[int, Query(ge=1, le=5000, description="Most recent messages to return.")] = TRANSCRIPT_LIMIT,
    ) -> ThreadState:
        """The thread's transcript, active agent, case file, handoff records and pending escalation."""
        return await _service(request).state(thread_id, limit=limit, owner=who)

    @app.get("/threads/{thread_id}/handoffs", responses=errors, dependencies=secured)
    async def read_handoffs(request: Request, thread_id: ThreadId, who: Caller) -> list[HandoffRecord]:
        """Every handoff record of the thread: who, why, trigger, outcome, payload, init result."""
        return await _service(request).handoffs(thread_id, owner=who)

    @app.post("/threads/{thread_id}/messages", responses={**STREAM_RESPONSE, **body_errors},
              response_model=None, dependencies=with_body)
    async def send_message(
        request: Request, thread_id: ThreadId, body: SendMessage, who: Caller
    ) -> Response:
        """Send the user's message; the answer and handoff events stream as SSE (JSON with `stream: false`).

        Send a `message_id` to make retries safe: the same id never adds the message twice.
        """
        turn = await _service(request).send(thread_id, body.text, message_id=body.message_id, owner=who)
        return await _respond(request, turn, stream=body.stream)

    @app.post("/threads/{thread_id}/escalation", responses={**STREAM_RESPONSE, **body_errors},
              response_model=None, dependencies=with_body)
    async def answer_escalation(
        request: Request, thread_id: ThreadId, body: AnswerEscalation, who: Caller
    ) -> Response:
        """A person answers the pending human escalation; the graph resumes (``Command(resume=...)``)."""
        turn = await _service(request).answer(thread_id, body, owner=who)
        return await _respond(request, turn, stream=body.stream)


async def _respond(request: Request, turn: TurnStream, *, stream: bool) -> Response:
    """Run the accepted turn as a task of its own; stream its events or wait for its result.

    The result is written by pydantic's own JSON serializer: handing the model to FastAPI would
    walk it again in Python (``jsonable_encoder``), the costliest part of answering a turn.
    """
    events = run_in_background(turn, request.app.state.turns, tokens=stream)
    if not stream:
        while (event := await events.get()) is not None:
            if isinstance(event, DoneEvent):
                return json_response(event.result)
            if isinstance(event, ErrorEvent):
                raise ERRORS_BY_CODE.get(event.code, TurnFailed)(event.message)
        raise TurnFailed("the turn ended without a result")
    return StreamingResponse(
        sse(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def run_in_background(
    turn: TurnStream, running: set[asyncio.Task[None]], *, tokens: bool = True
) -> asyncio.Queue[TurnEvent | None]:
    """Start the turn now, as a task of its own; its events arrive on the queue (``None`` after
    the last); with its replies' ``token`` events when ``tokens``.

    The turn runs to its end even if nobody reads the queue (the client went away), so the
    thread's checkpoint is always a whole step and its lock is always released. Starlette
    would instead stop a response's own generator where the client left. ``running`` holds
    the task until it ends (the loop keeps only weak references to tasks).
    """
    queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()

    async def produce() -> None:
        STREAM_TOKENS.set(tokens)  # this task's own context: the turn reads it when it starts
        try:
            async for event in turn:
                queue.put_nowait(event)
        except Exception as exc:  # a bug in the stream itself: report it to the client
            error = as_service_error(exc)
            log.warning("turn stream failed code=%s error=%s", error.code, type(exc).__name__)
            queue.put_nowait(ErrorEvent(code=error.code, message=error.message))
        finally:
            await turn.aclose()
            queue.put_nowait(None)

    task = asyncio.create_task(produce(), name="handoff-turn")
    running.add(task)
    task.add_done_callback(running.discard)
    return queue


def json_response(model: BaseModel) -> Response:
    """``model`` as a JSON response, as FastAPI would write it (by alias), by pydantic's serializer."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


async def sse(events: asyncio.Queue[TurnEvent | None]) -> AsyncIterator[str]:
    """Server-sent events: ``event: <type>`` and one line of JSON data per event (pydantic's JSON
    never holds a raw line break: one inside a text is written ``\\n``)."""
    while (event := await events.get()) is not None:
        yield f"event: {event.type}\ndata: {event.model_dump_json(by_alias=True)}\n\n"


def main() -> None:
    """``python -m handoff.service [--host H] [--port P] [--db URL]``: serve the API and the web chat."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m handoff.service", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default=None, help="memory, a .sqlite path, or postgresql://...")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.db)
    tune_for_serving()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
