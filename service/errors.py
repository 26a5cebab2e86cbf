"""What the service refuses, as exceptions that carry an HTTP status and a stable code."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """A request the service refuses; ``status`` is the HTTP status that fits.

    ``retry_after`` (seconds), when set, is sent as the ``Retry-After`` header:
    the same request may succeed later, unchanged.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "service_error"
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ServiceError):
    """Access tokens are on and the request carries none, or an unknown one."""

    status, code = 401, "unauthorized"


class ThreadNotFound(ServiceError):
    """No thread with this id was started through the service (or, with tokens on, by this client)."""

    status, code = 404, "thread_not_found"


class UnknownGraph(ServiceError):
    """The request names a graph the service does not run."""

    status, code = 422, "unknown_graph"


class InvalidAnswer(ServiceError):
    """A person's answer the graph cannot take (e.g. handing back to an unknown agent)."""

    status, code = 422, "invalid_answer"


class MessageIdReused(ServiceError):
    """The ``message_id`` was already used on this thread for a message with another text."""

    status, code = 422, "message_id_reused"


class UnsupportedMediaType(ServiceError):
    """The request has a body that is not JSON."""

    status, code = 415, "unsupported_media_type"


class ThreadBusy(ServiceError):
    """A turn is already running on the thread (on this worker or another one); nothing was done."""

    status, code, retry_after = 409, "thread_busy", 1


class EscalationPending(ServiceError):
    """The thread waits for a person; a new user message would lose the escalation."""

    status, code = 409, "escalation_pending"


class NoPendingEscalation(ServiceError):
    """There is no escalation to answer on the thread."""

    status, code = 409, "no_pending_escalation"


class EscalationNotFound(ServiceError):
    """The escalation id named is not the one pending on the thread."""

    status, code = 404, "escalation_not_found"


class TurnFailed(ServiceError):
    """The graph raised while running the turn."""

    status, code = 500, "turn_failed"


class PersistenceUnavailable(ServiceError):
    """The database could not be reached; the thread stays at its last checkpoint."""

    status, code, retry_after = 503, "persistence_unavailable", 1


class TurnInterrupted(ServiceError):
    """The turn stopped between two steps because its thread lock was lost (the database restarted)."""

    status, code, retry_after = 503, "turn_interrupted", 1


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls for cls in (TurnFailed, PersistenceUnavailable, TurnInterrupted, ThreadBusy)
}
"""Error events a turn stream can end with, by code (``HandoffService.result`` raises them)."""


class LockLost(RuntimeError):
    """A turn's thread lock is no longer held (its database session ended); see service/locks.py."""


def as_service_error(exc: BaseException) -> ServiceError:
    """What a failure inside a turn means to the client: database down, lock lost, or a failed turn."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, LockLost):
        return TurnInterrupted(
            "the turn stopped at its last checkpoint because the thread's lock was lost (the database "
            "restarted); send the same message with the same message_id to complete it")
    if is_unavailable(exc):
        return PersistenceUnavailable(
            f"the database is unavailable ({type(exc).__name__}); the thread is at its last checkpoint: "
            "send the same message with the same message_id to complete the turn")
    return TurnFailed(f"{type(exc).__name__}: {exc}")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable (connection lost, pool timed out)."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout)
