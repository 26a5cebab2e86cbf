"""Which model errors are worth retrying, and the retry policy agent nodes use."""

from __future__ import annotations

from langgraph.types import RetryPolicy

MAX_ATTEMPTS = 3


def is_transient(exc: BaseException) -> bool:
    """True for rate limits (429), server errors (5xx), timeouts and dropped connections."""
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai brings it
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code == 429 or exc.status_code >= 500
        if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            return True
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, ConnectionError | TimeoutError | httpx.TransportError)


MODEL_RETRY = RetryPolicy(
    max_attempts=MAX_ATTEMPTS, initial_interval=0.2, backoff_factor=2.0, jitter=True,
    retry_on=is_transient,
)
"""Agent nodes are retried with backoff on transient model errors; after the last
attempt the node itself recovers (see graphs/agent_node.py), so a failing model
ends the turn with an honest message instead of killing the conversation."""
