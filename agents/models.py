"""The one model factory: a real OpenAI-compatible model, or the offline model.

A real model's calls are bounded in total, not per chunk: the agent node gives
each call a deadline (graphs/agent_calls.py, ``MODEL_DEADLINE``), and the HTTP
client made here ends a response that is still arriving after it, so a server
that trickles bytes cannot hold a connection past the deadline either.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from handoff.agents.offline import OfflineChatModel
from handoff.agents.settings import ModelSettings
from handoff.agents.tool_calling_fake import ToolCallingFakeModel

MODEL_DEADLINE: ContextVar[float | None] = ContextVar("handoff_model_deadline", default=None)
"""When the model call running in this context must have ended (``time.monotonic()``); set by the agent
node for each call."""
ABANDON_GRACE_S = 1.0
"""How long after a call's deadline its HTTP request is ended: the node stops waiting at the deadline,
and a request still running then (an abandoned call on the sync path) is closed by the client after
this grace, so the node's own, clearer timeout always comes first."""
_DEADLINE_KEY = "handoff_deadline"


class ModelConfigError(ValueError):
    """The model settings in the environment are unusable; the message says which."""


def load_settings() -> ModelSettings:
    """Read settings, turning validation errors into one readable message."""
    try:
        return ModelSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelConfigError(f"bad model configuration: {problems}") from None


def make_chat_model(settings: ModelSettings | None = None) -> BaseChatModel:
    """The chat model the agents use, from settings (the environment by default).

    Real models get LangChain's own retries and timeout; a configured fallback
    model is attached per agent once tools are bound (see ``bind_agent_model``
    in graphs/agent_node.py), because fallbacks must wrap the tool-bound model.
    """
    settings = settings or load_settings()
    if not settings.uses_real_model:
        return OfflineChatModel()
    return _openai(settings, settings.model)


def make_fallback_model(settings: ModelSettings | None = None) -> BaseChatModel | None:
    """The configured fallback model, or None."""
    settings = settings or load_settings()
    if not settings.uses_real_model or not settings.fallback_model:
        return None
    return _openai(settings, settings.fallback_model)


def call_deadline(model: BaseChatModel) -> float | None:
    """Seconds one call of ``model`` may take in all, or None for an in-process model (the offline and
    scripted models answer at once and need none).

    A model's own numeric timeout (``ChatOpenAI(timeout=...)``) is its deadline; any other model gets
    ``HANDOFF_MODEL_TIMEOUT``.
    """
    if isinstance(model, ToolCallingFakeModel):
        return None
    timeout = getattr(model, "request_timeout", None)
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    try:
        return load_settings().timeout_s
    except ModelConfigError:
        return float(ModelSettings.model_fields["timeout_s"].default)


def _openai(settings: ModelSettings, model: str) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return ChatOpenAI(
        model=model,
        api_key=key,
        base_url=str(settings.openai_base_url) if settings.openai_base_url else None,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        temperature=0,
        http_client=deadline_http_client(settings.timeout_s),
    )


def deadline_http_client(total_s: float) -> Any:
    """A synchronous HTTP client for the OpenAI SDK whose every request ends within ``total_s`` seconds,
    or at its model call's deadline (``MODEL_DEADLINE``) plus ``ABANDON_GRACE_S``, whichever comes first.

    httpx bounds each read, not the whole response: a server sending a byte every half second is never
    timed out. Event hooks (not a custom transport, which would switch off the environment's proxy
    settings) cap every timeout at the time left and check the deadline on every chunk received; a
    body past its deadline stops with a read timeout, and httpx then closes the connection.
    """
    import openai

    http = _sdk_http()

    class UntilDeadline(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, deadline: float, request: Any) -> None:
            self._inner, self._deadline, self._request = inner, deadline, request

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if time.monotonic() > self._deadline:
                    raise http.ReadTimeout("the model call's deadline passed", request=self._request)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    def bound_request(request: Any) -> None:
        now = time.monotonic()
        deadline = now + total_s
        call = MODEL_DEADLINE.get()
        if call is not None:
            deadline = min(deadline, call + ABANDON_GRACE_S)
        left = max(deadline - now, 0.001)
        timeouts = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            phase: left if timeouts.get(phase) is None else min(timeouts[phase], left)
            for phase in ("connect", "read", "write", "pool")
        }
        request.extensions[_DEADLINE_KEY] = deadline

    def bound_response(response: Any) -> None:
        deadline = response.request.extensions.get(_DEADLINE_KEY)
        if deadline is not None:
            response.stream = UntilDeadline(response.stream, deadline, response.request)

    return openai.DefaultHttpxClient(event_hooks={"request": [bound_request], "response": [bound_response]})


def _sdk_http() -> ModuleType:
    """The HTTP library the installed OpenAI SDK is built on (``httpx2`` from openai 3, ``httpx`` before):
    a client handed to the SDK must be of its kind."""
    import openai

    return importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0])
