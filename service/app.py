"""The handoff service: HTTP + server-sent events over ``HandoffService``, and the web chat.

Run it with ``python -m service`` (or ``uvicorn --factory service.app:create_app``).
Settings: ``HANDOFF_DB`` (``memory``, a ``.sqlite`` path, or ``postgresql://...``;
default ``sqlite:///$HANDOFF_DATA_DIR/handoff.sqlite``), the model settings of
agents/settings.py (offline when none are set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, status
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from graphs.persistence import PersistenceError, open_persistence
from graphs.registry import GraphEntry
from graphs.settings import StorageSettings
from service.embedding import TRANSCRIPT_LIMIT, HandoffService
from service.errors import ServiceError, TurnFailed
from service.models import (
    AnswerEscalation,
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
from state import HandoffRecord

STATIC = Path(__file__).parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown thread or escalation."},
    409: {"model": ErrorBody, "description": "The thread is busy or waiting for a person."},
    422: {"model": ErrorBody, "description": "Malformed or invalid body."},
}
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TurnResponse,
        "description": "Server-sent turn events (`stream: true`: step, message, handoff, escalation, "
        "then done or error), or the turn's JSON result (`stream: false`).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}


class Health(BaseModel):
    """The service is up, and on which persistence."""

    ok: bool
    persistence: str = Field(description="memory, sqlite or postgresql.")


def create_app(
    db_url: str | None = None,
    *,
    model: BaseChatModel | None = None,
    graphs: Mapping[str, GraphEntry] | None = None,
) -> FastAPI:
    """The FastAPI app; persistence opens at startup and closes at shutdown.

    Args:
        db_url: ``memory``, a ``.sqlite`` path or ``postgresql://...``; StorageSettings by default.
        model: Chat model for every graph; the environment's (offline when unset) by default.
        graphs: Graphs served by name; the registry's by default.
    """
    url = db_url or StorageSettings().db_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_persistence(url) as persistence:
            app.state.service = HandoffService(persistence, model=model, graphs=graphs)
            yield

    app = FastAPI(
        title="Handoff service",
        summary="Conversations with specialist agents that hand over to one another.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _install_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _service(request: Request) -> HandoffService:
    return request.app.state.service


ThreadId = Annotated[str, PathParam(min_length=1, max_length=128, description="The thread's id.")]


def _install_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def health(request: Request) -> Health:
        """Liveness, and which persistence is in use."""
        url = _service(request).persistence.url
        kind = "memory" if url == "memory" else "postgresql" if url.startswith("postgres") else "sqlite"
        return Health(ok=True, persistence=kind)

    @app.get("/graphs")
    def list_graphs(request: Request) -> list[GraphInfo]:
        """The graphs a thread can run on."""
        return _service(request).graphs()

    @app.post("/threads", status_code=status.HTTP_201_CREATED, responses=ERRORS)
    def start_thread(request: Request, body: StartThread | None = None) -> ThreadInfo:
        """Start a conversation (the customer-service graph unless another is named)."""
        return _service(request).start_thread((body or StartThread()).graph)

    @app.get("/threads/{thread_id}", responses=ERRORS)
    def read_thread(
        request: Request,
        thread_id: ThreadId,
        limit: Annotated[int, Query(ge=1, le=5000, description="Most recent messages to return.")] = TRANSCRIPT_LIMIT,
    ) -> ThreadState:
        """The thread's transcript, active agent, case file, handoff records and pending escalation."""
        return _service(request).state(thread_id, limit=limit)

    @app.get("/threads/{thread_id}/handoffs", responses=ERRORS)
    def read_handoffs(request: Request, thread_id: ThreadId) -> list[HandoffRecord]:
        """Every handoff record of the thread: who, why, trigger, outcome, payload, init result."""
        return _service(request).handoffs(thread_id)

    @app.post("/threads/{thread_id}/messages", responses={**STREAM_RESPONSE, **ERRORS},
              response_model=None)
    def send_message(request: Request, thread_id: ThreadId, body: SendMessage) -> StreamingResponse | TurnResponse:
        """Send the user's message; the answer and handoff events stream as SSE (JSON with `stream: false`)."""
        return _respond(_service(request).send(thread_id, body.text), stream=body.stream)

    @app.post("/threads/{thread_id}/escalation", responses={**STREAM_RESPONSE, **ERRORS},
              response_model=None)
    def answer_escalation(
        request: Request, thread_id: ThreadId, body: AnswerEscalation
    ) -> StreamingResponse | TurnResponse:
        """A person answers the pending human escalation; the graph resumes (``Command(resume=...)``)."""
        return _respond(_service(request).answer(thread_id, body), stream=body.stream)


def _respond(events: Iterator[TurnEvent], *, stream: bool) -> StreamingResponse | TurnResponse:
    if not stream:
        return HandoffService.result(events)
    return StreamingResponse(
        sse(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def sse(events: Iterator[TurnEvent]) -> AsyncIterator[str]:
    """Server-sent events: ``event: <type>`` and one line of JSON data per event.

    The turn runs start to end in one worker thread of its own (a sync
    generator handed to Starlette would be resumed on a different pool thread
    at every step) and finishes even if the client goes away, so the thread's
    checkpoint is always a whole turn.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()

    def put(item: TurnEvent | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def produce() -> None:
        try:
            for event in events:
                put(event)
        except Exception as exc:  # a bug in the stream itself: report it to the client
            put(ErrorEvent(code=TurnFailed.code, message=f"{type(exc).__name__}: {exc}"))
        finally:
            put(None)

    threading.Thread(target=produce, name="handoff-turn", daemon=True).start()
    while (event := await queue.get()) is not None:
        data = json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
        yield f"event: {event.type}\ndata: {data}\n\n"


def _error(status_code: int, code: str, message: str, fields: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse(status_code=status_code, content={"error": body})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(PersistenceError)
    async def persistence_error(request: Request, exc: PersistenceError) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "persistence_unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field(e) for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, f['loc'][1:])) or f['loc'][0]}: {f['msg']}"
                            for f in fields) or "invalid request"
        return _error(422, "invalid_request", message,
                      jsonable_encoder(fields))


def _field(error: dict[str, Any]) -> dict[str, Any]:
    """One validation problem as ``{loc, msg, type}`` with a message a person can act on."""
    loc = list(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if kind == "json_invalid":
        at = loc[1] if len(loc) > 1 else "?"
        loc = loc[:1]
        cause = (error.get("ctx") or {}).get("error", "")
        msg = f"malformed JSON at character {at}" + (f" ({cause})" if cause else "")
    return {"loc": loc, "msg": msg, "type": kind}


def main() -> None:
    """``python -m service [--host H] [--port P] [--db URL]``: serve the API and the web chat."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m service", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default=None, help="memory, a .sqlite path, or postgresql://...")
    args = parser.parse_args()
    uvicorn.run(create_app(args.db), host=args.host, port=args.port)
