"""Which model errors are worth retrying, the retry policy agent nodes use, and how a failure is told.

An upstream error's text can quote the prompt (a 400 often echoes the request),
so it goes nowhere: not into logs, not to the user. ``ModelFailure`` keeps what
may be said about a failure, its kind, a stable code, the exception type and
the HTTP status, and the agent node raises that in its place for LangGraph to
retry and log.

A missed deadline (``ModelDeadlineExceeded``) is transient, like the client's
own timeouts: a server that stalls once often answers the next time. So a turn
waits at most ``MAX_ATTEMPTS`` deadlines (plus the backoff, and the fallback
model's own deadline if one is configured) before it ends with an honest
"(system) ... did not answer within N s" message.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import RetryPolicy

from handoff.graphs.agent_calls import ModelDeadlineExceeded

MAX_ATTEMPTS = 3


class ModelFailure(Exception):
    """A failed model call as it may be retried, logged and shown: never the upstream error's text."""

    def __init__(self, code: str, kind: str, error_type: str, *, transient: bool) -> None:
        super().__init__(f"{code}: {kind} ({error_type})")
        self.code = code
        """Stable code for logs: ``model_deadline``, ``model_timeout``, ``model_rate_limited``,
        ``model_server_error``, ``model_refused``, ``model_unreachable``, ``unexpected_error``."""
        self.kind = kind
        """What happened, in words a user may read: 'the model server failed (HTTP 503)'."""
        self.error_type = error_type
        self.transient = transient


def model_failure(exc: BaseException) -> ModelFailure:
    """What may be said about ``exc``; see ``ModelFailure``."""
    if isinstance(exc, ModelFailure):
        return exc
    name = type(exc).__name__
    status = _status(exc)
    if isinstance(exc, ModelDeadlineExceeded):
        return ModelFailure("model_deadline", f"the model did not answer within {exc.seconds:g} s", name,
                            transient=True)
    if status is not None:
        if status == 429:
            return ModelFailure("model_rate_limited", "the model server is rate-limiting requests (HTTP 429)",
                                name, transient=True)
        if status >= 500:
            return ModelFailure("model_server_error", f"the model server failed (HTTP {status})", name,
                                transient=True)
        return ModelFailure("model_refused", f"the model server refused the request (HTTP {status})", name,
                            transient=False)
    if _is_timeout(exc):
        return ModelFailure("model_timeout", "the model server did not answer in time", name, transient=True)
    if _is_connection_error(exc):
        return ModelFailure("model_unreachable", "the model server could not be reached", name, transient=True)
    return ModelFailure("unexpected_error", "an unexpected error", name, transient=False)


def is_transient(exc: BaseException) -> bool:
    """True for rate limits (429), server errors (5xx), timeouts, missed deadlines and dropped
    connections."""
    return model_failure(exc).transient


def _status(exc: BaseException) -> int | None:
    import httpx

    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai brings it
        openai = None  # type: ignore[assignment]
    if openai is not None and isinstance(exc, openai.APIStatusError):
        return int(exc.status_code)
    if isinstance(exc, httpx.HTTPStatusError):
        return int(exc.response.status_code)
    return None


def _is_timeout(exc: Any) -> bool:
    import httpx

    try:
        import openai
    except ImportError:  # pragma: no cover
        return isinstance(exc, TimeoutError | httpx.TimeoutException)
    return isinstance(exc, TimeoutError | httpx.TimeoutException | openai.APITimeoutError)


def _is_connection_error(exc: Any) -> bool:
    import httpx

    try:
        import openai
    except ImportError:  # pragma: no cover
        return isinstance(exc, ConnectionError | httpx.TransportError)
    return isinstance(exc, ConnectionError | httpx.TransportError | openai.APIConnectionError)


MODEL_RETRY = RetryPolicy(
    max_attempts=MAX_ATTEMPTS, initial_interval=0.2, backoff_factor=2.0, jitter=True,
    retry_on=is_transient,
)
"""Agent nodes are retried with backoff on transient model errors; after the last
attempt the node itself recovers (see graphs/agent_node.py), so a failing model
ends the turn with an honest message instead of killing the conversation."""
