"""What an agent's turn asks for, and the two drivers that carry it out.

The turn (graphs/agent_node.py) is a generator: it yields a ``ModelCall`` or a
``ToolCall`` and is sent the result. ``drive`` makes the calls with
``invoke`` (``graph.stream``), ``adrive`` with ``await ainvoke``
(``graph.astream``), so the turn's logic is written once.

Each model call has a total deadline (``within_deadline``), not one per chunk
received, on both paths:

- async: ``asyncio.timeout`` cancels the call, which closes its connection;
- sync: a thread cannot be cancelled, so the call runs on a thread of its own
  and the node stops waiting at the deadline. The abandoned call keeps its
  thread until it ends by itself: for the models ``make_chat_model`` builds,
  the HTTP client closes its connection at the deadline plus a second
  (agents/models.py, ``MODEL_DEADLINE``); another model's call ends when its
  own client gives up, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_config, get_stream_writer

from handoff.agents.models import MODEL_DEADLINE
from handoff.agents.tooling import CONTEXT_ARG, ToolContext
from handoff.graphs.boundary import MAX_MODEL_TEXT_CHARS, MAX_NOTE_CHARS, clean_text, clean_value

T = TypeVar("T")

MODEL_CALL_BROKEN = "model_call_broken"
"""``type`` of the custom stream event a failed model call writes (``{"type": ..., "agent": node}``):
whatever the call had streamed broke off, and a client can say so at once rather than after the
retry's backoff (graphs/streaming.py)."""


class ModelDeadlineExceeded(TimeoutError):
    """A model call did not finish within its deadline (a ``TimeoutError``, so it is retried like one)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the model did not answer within {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class ModelCall:
    """One model call the turn asks for; the node's sync or async driver makes it."""

    runnable: Runnable
    prompt: list[BaseMessage]

    def run(self) -> BaseMessage:
        try:
            return self.runnable.invoke(self.prompt)
        except Exception:
            say_call_broke()
            raise

    async def arun(self) -> BaseMessage:
        try:
            return await self.runnable.ainvoke(self.prompt)
        except Exception:
            say_call_broke()
            raise


def say_call_broke() -> None:
    """Tell the run's stream that this node's model call failed (nothing outside a graph run)."""
    try:
        agent = (get_config().get("metadata") or {}).get("langgraph_node")
    except RuntimeError:  # not in a graph run: nobody streams
        return
    get_stream_writer()({"type": MODEL_CALL_BROKEN, "agent": agent})


class WithinDeadline(Runnable[Any, Any]):
    """``bound`` with a total deadline on every call, sync and async; see the module doc."""

    def __init__(self, bound: Runnable, seconds: float) -> None:
        self.bound = bound
        self.seconds = seconds

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return call_within(self.seconds, self.bound.invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        # Set here too: a model without a native async path runs its sync call on an executor thread,
        # which cancelling cannot stop; its HTTP client then ends the request (agents/models.py).
        token = MODEL_DEADLINE.set(time.monotonic() + self.seconds)
        timer = asyncio.timeout(self.seconds)
        try:
            async with timer:
                return await self.bound.ainvoke(input, config, **kwargs)
        except TimeoutError:
            if timer.expired():
                raise ModelDeadlineExceeded(self.seconds) from None
            raise
        finally:
            MODEL_DEADLINE.reset(token)


def within_deadline(bound: Runnable, seconds: float | None) -> Runnable:
    """``bound`` with a total deadline of ``seconds`` per call (unchanged when None)."""
    return bound if seconds is None else WithinDeadline(bound, seconds)


def call_within(seconds: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a thread of its own, waited for ``seconds`` at most.

    The call runs in a copy of this context (the run's config, callbacks and tracing reach it) with
    ``MODEL_DEADLINE`` set, so a client that reads it ends its request too.

    Raises:
        ModelDeadlineExceeded: the call had not ended by then; it is abandoned (see the module doc).
    """
    context = contextvars.copy_context()
    context.run(MODEL_DEADLINE.set, time.monotonic() + seconds)
    outcome: Future[T] = Future()

    def work() -> None:
        try:
            outcome.set_result(context.run(fn, *args, **kwargs))
        except BaseException as exc:  # handed to the waiting node, which raises it
            outcome.set_exception(exc)

    threading.Thread(target=work, name="handoff-model-call", daemon=True).start()
    try:
        return outcome.result(timeout=seconds)
    except TimeoutError:
        if outcome.done():  # the call itself raised a TimeoutError
            raise
        raise ModelDeadlineExceeded(seconds) from None


@dataclass(frozen=True)
class ToolCall:
    """One call of the agent's own tool, with the trusted context injected."""

    tool: BaseTool
    call: dict[str, Any]
    ctx: ToolContext

    def run(self) -> tuple[ToolMessage, dict[str, Any]]:
        try:
            message = self.tool.invoke(tool_input(self.tool, self.call, self.ctx))
        except Exception as exc:  # a tool error is shown to the model, not raised
            return tool_note(self.call, f"error: {type(exc).__name__}: {exc}"), {}
        return tool_result(message)

    async def arun(self) -> tuple[ToolMessage, dict[str, Any]]:
        try:
            message = await self.tool.ainvoke(tool_input(self.tool, self.call, self.ctx))
        except Exception as exc:
            return tool_note(self.call, f"error: {type(exc).__name__}: {exc}"), {}
        return tool_result(message)


Steps = Generator[ModelCall | ToolCall, Any, dict[str, Any]]
"""A turn written once: it yields the calls it needs and is sent their results."""


def drive(steps: Steps) -> dict[str, Any]:
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = call.run()


async def adrive(steps: Steps) -> dict[str, Any]:
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = await call.arun()


def tool_input(tool: BaseTool, call: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    args = dict(call["args"])
    args.pop(CONTEXT_ARG, None)  # a model may not forge the trusted context
    if CONTEXT_ARG in tool._injected_args_keys:  # langchain's own marker for injected args
        args[CONTEXT_ARG] = ctx
    return {**call, "args": args, "type": "tool_call"}


def tool_result(message: ToolMessage) -> tuple[ToolMessage, dict[str, Any]]:
    """The tool's message made storable (its text may echo anything), and its case-file updates."""
    content, artifact = message.content, message.artifact
    stored = {
        "content": clean_text(content, max_chars=MAX_MODEL_TEXT_CHARS) if isinstance(content, str)
        else clean_value(content, max_chars=MAX_MODEL_TEXT_CHARS),
        # The node checks the updates themselves (and may refuse them); the stored copy must load anyway.
        "artifact": None if artifact is None else clean_value(artifact),
    }
    return message.model_copy(update=stored), artifact if isinstance(artifact, dict) else {}


def tool_note(call: dict[str, Any], text: str) -> ToolMessage:
    return ToolMessage(content=clean_text(text, max_chars=MAX_NOTE_CHARS), tool_call_id=call["id"],
                       name=call["name"], status="error")
