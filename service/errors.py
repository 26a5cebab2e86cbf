"""What the service refuses, as exceptions that carry an HTTP status and a stable code."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """A request the service refuses; ``status`` is the HTTP status that fits."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "service_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ThreadNotFound(ServiceError):
    """No thread with this id was started through the service."""

    status, code = 404, "thread_not_found"


class UnknownGraph(ServiceError):
    """The request names a graph the service does not run."""

    status, code = 422, "unknown_graph"


class InvalidAnswer(ServiceError):
    """A person's answer the graph cannot take (e.g. handing back to an unknown agent)."""

    status, code = 422, "invalid_answer"


class ThreadBusy(ServiceError):
    """A turn is already running on the thread."""

    status, code = 409, "thread_busy"


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
