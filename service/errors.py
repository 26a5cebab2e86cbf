"""What the service refuses, as exceptions that carry an HTTP status and a stable code.

Every error a client sees is one of these, in one shape (service/http_errors.py). A failure
inside the service that is not one of them is told by its kind only: a database driver's
message quotes the statement's parameters (the user's text) and the server's internals, so it
never reaches a response.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar


class ServiceError(Exception):
    """A request the service refuses; ``status`` is the HTTP status that fits.

    ``retry_after`` (seconds), when set, is sent as the ``Retry-After`` header:
    the same request may succeed later, unchanged.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "service_error"
    retry_after: ClassVar[int | None] = None

    fields: list[dict[str, Any]] | None = None
    """Per-field problems, as in a 422 from request validation (``loc``, ``msg``, ``type``)."""

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


class InvalidInput(ServiceError):
    """A value the graph's boundary (graphs/boundary.py) refuses: a thread id, a message, an answer.

    The same 422 as request validation, naming the field and what is wrong with it (the limit).
    """

    status, code = 422, "invalid_request"

    def __init__(self, location: str, field: str, reason: str) -> None:
        """Args:
        location: ``path``, ``query`` or ``body``.
        field: The field's name.
        reason: What is wrong, and the limit.
        """
        super().__init__(f"{field}: {reason}")
        self.fields = [{"loc": [location, field], "msg": reason, "type": "input_refused"}]


def refused(location: str, exc: Exception, field: str | None = None) -> InvalidInput:
    """A refusal of the graph's boundary (``InputRefused``) as the service's 422.

    The boundary's messages start with what it checked (``"reply: ..."``,
    ``"case_file_updates.notes: ..."``); that names the field unless ``field`` is given.
    """
    label, sep, reason = str(exc).partition(": ")
    if not sep:
        label, reason = "body", str(exc)
    return InvalidInput(location, field or label, reason)


class PayloadTooLarge(ServiceError):
    """The request's body is larger than the service reads (refused before it is read)."""

    status, code = 413, "payload_too_large"


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


class PersistenceBusy(ServiceError):
    """SQLite stayed locked by other writes past its busy timeout; a turn stopped at its last checkpoint."""

    status, code, retry_after = 503, "persistence_busy", 1


class InternalError(ServiceError):
    """A failure of the service itself, outside any turn; told by its kind only."""

    status, code = 500, "internal_error"


class TurnInterrupted(ServiceError):
    """The turn stopped between two steps because its thread lock was lost (the database restarted)."""

    status, code, retry_after = 503, "turn_interrupted", 1


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls for cls in (TurnFailed, PersistenceUnavailable, PersistenceBusy, TurnInterrupted, ThreadBusy,
                              InternalError)
}
"""Error events a turn stream can end with, by code (``HandoffService.result`` raises them)."""


class LockLost(RuntimeError):
    """A turn's thread lock is no longer held (its database session ended); see service/locks.py."""


MESSAGE_CHARS = 300
"""Longest part of an exception's own message a client is shown."""


def as_service_error(exc: BaseException) -> ServiceError:
    """What a failure inside a turn means to the client: database down or busy, lock lost, or a
    failed turn (a database's own refusal named by its kind only)."""
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
    if is_busy(exc):
        return PersistenceBusy(
            f"the database stayed busy with other writes ({type(exc).__name__}); send the same request "
            "again (a message with the same message_id)")
    if is_database_error(exc):
        return TurnFailed(f"the database refused the turn ({type(exc).__name__}); the thread is at its last "
                          "checkpoint")
    return TurnFailed(f"{type(exc).__name__}: {str(exc)[:MESSAGE_CHARS]}")


def as_request_error(exc: BaseException) -> ServiceError:
    """What a failure while answering a request (outside a turn) means to the client."""
    error = as_service_error(exc)
    if isinstance(error, TurnFailed):
        kind = "database" if is_database_error(exc) else "service"
        return InternalError(f"the request failed in the {kind} ({type(exc).__name__})")
    return error


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite's ``database is locked``/``busy``: worth the same request again."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def is_database_error(exc: BaseException) -> bool:
    """True when ``exc`` comes from a database driver (its message may quote data and internals)."""
    if isinstance(exc, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.Error)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable (connection lost, pool timed out)."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout)
