"""Bearer tokens: who is calling, when the service is told to ask.

Off by default. ``HANDOFF_API_TOKENS="token1:alice,token2:bob"`` (or
``create_app(tokens={"token1": "alice"})``) turns it on: every API request
must carry ``Authorization: Bearer <token>`` (401 otherwise, checked before the
body is read: service/guard.py), and a thread belongs to the client that started it. Another client's thread answers 404,
exactly like a thread that does not exist, so ids cannot be probed. Tokens are
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping

from handoff.service.errors import Unauthorized

TOKENS_ENV = "HANDOFF_API_TOKENS"
OPEN_DOCS_ENV = "HANDOFF_OPEN_DOCS"
"""``1``/``true``: ``/openapi.json``, ``/docs`` and ``/redoc`` need no token even when tokens are on."""

log = logging.getLogger("handoff.service.auth")


class TokenConfigError(ValueError):
    """``HANDOFF_API_TOKENS`` is malformed; the message never contains a token."""


def parse_tokens(spec: str) -> dict[str, str]:
    """``"token1:alice,token2:bob"`` -> ``{"token1": "alice", "token2": "bob"}``; ``""`` -> ``{}``.

    Raises:
        TokenConfigError: an entry without ``:``, an empty token or name, or a token given twice.
    """
    tokens: dict[str, str] = {}
    for position, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        token, sep, name = entry.rpartition(":")
        token, name = token.strip(), name.strip()
        if not sep or not token or not name:
            raise TokenConfigError(f"{TOKENS_ENV}: entry {position} is not 'token:name'")
        if token in tokens:
            raise TokenConfigError(f"{TOKENS_ENV}: entry {position} repeats a token")
        tokens[token] = name
    return tokens


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case of ``Bearer``); None without one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def open_docs_from_env() -> bool:
    """Whether ``HANDOFF_OPEN_DOCS`` serves the OpenAPI document and pages without a token."""
    return os.environ.get(OPEN_DOCS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def tokens_from_env() -> dict[str, str]:
    """The tokens ``HANDOFF_API_TOKENS`` sets; empty (access open) when it is unset or blank."""
    return parse_tokens(os.environ.get(TOKENS_ENV, ""))


class Access:
    """Maps a bearer token to a client name; open to everyone when no tokens are set."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """Args:
        tokens: token -> client name; empty means access is open.
        """
        self._tokens = [(token.encode(), name) for token, name in tokens.items()]

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self._tokens)

    def client(self, token: str | None) -> str | None:
        """The client name for ``token``; None when access is open.

        Raises:
            Unauthorized: tokens are on and ``token`` is missing or unknown.
        """
        if not self.enabled:
            return None
        if not token:
            log.warning("refused a request without a bearer token")
            raise Unauthorized("this service needs an access token: send 'Authorization: Bearer <token>'")
        given = token.encode()
        found = None
        for known, name in self._tokens:  # compare with every token, in constant time each
            if hmac.compare_digest(known, given):
                found = name
        if found is None:
            log.warning("refused a request with an unknown bearer token")
            raise Unauthorized("the access token is not valid")
        return found
