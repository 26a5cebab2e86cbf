"""Custom auth for `langgraph dev` and LangGraph server deployments (``langgraph.json`` -> ``auth``).

The same bearer tokens as the HTTP service: ``HANDOFF_API_TOKENS="token1:alice,token2:bob"``.
When it is set, every request must carry ``Authorization: Bearer <token>`` (401 otherwise,
without saying which tokens exist), and each client sees only what it created: threads,
their runs and crons carry ``metadata.owner`` and every read, search, run, update and
delete is filtered by it, so another client's thread answers 404 as if it did not exist.
The assistants the server makes from ``langgraph.json`` are shared, read-only, by everyone.

When it is unset or blank (Studio on a laptop), every request is allowed and nothing is
filtered. A malformed value stops the server at start-up rather than leaving it open.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from langgraph_sdk import Auth

from handoff.service.auth import Access, tokens_from_env
from handoff.service.errors import Unauthorized

OWNER = "owner"
"""The metadata key naming the client a thread, run, cron or assistant belongs to."""
ANONYMOUS = "anonymous"
"""Everyone's identity while access is open."""
SYSTEM_MARK = ("created_by", "system")
"""How the server marks the assistants it creates from langgraph.json; clients may not forge it."""


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other header."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _stamp(value: MutableMapping[str, Any], owner: str) -> None:
    """Write the owner into the request's metadata, over whatever the client claimed.

    The server keeps a reference to the metadata dict it handed us, so it is changed in
    place; rebinding ``value["metadata"]`` would not reach what gets stored.
    """
    metadata = value.get("metadata")
    if isinstance(metadata, MutableMapping):
        metadata[OWNER] = owner
        if metadata.get(SYSTEM_MARK[0]) == SYSTEM_MARK[1]:
            del metadata[SYSTEM_MARK[0]]


def build_auth(access: Access) -> Auth:
    """The server's auth: ``access`` decides who calls; open access filters nothing."""
    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
        try:
            client = access.client(_bearer(authorization))
        except Unauthorized as refused:
            raise Auth.exceptions.HTTPException(status_code=401, detail=refused.message) from None
        return {"identity": client or ANONYMOUS}

    def owner(ctx: Auth.types.AuthContext) -> str | None:
        """Whose resources this request may touch; None when access is open."""
        return ctx.user.identity if access.enabled else None

    # Threads and crons: stamped on the way in, filtered on every other action. Runs are
    # checked against their thread's metadata, and a run that creates its thread passes
    # its own (stamped) metadata on to it.
    @auth.on.threads
    @auth.on.crons
    async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
        me = owner(ctx)
        if me is None:
            return None
        if ctx.action in ("create", "update", "create_run"):
            _stamp(value, me)
        return {OWNER: me}

    # Assistants: the server's own (one per graph) are readable by all and changed by none;
    # a client's own are its alone.
    @auth.on.assistants
    async def own_assistants(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
        me = owner(ctx)
        if me is None:
            return None
        if ctx.action in ("create", "update"):
            _stamp(value, me)
        if ctx.action in ("read", "search"):
            return {"$or": [{OWNER: me}, {SYSTEM_MARK[0]: SYSTEM_MARK[1]}]}
        return {OWNER: me}

    # The store's API: each client's items live under a namespace that starts with its name.
    @auth.on.store
    async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
        me = owner(ctx)
        if me is None:
            return
        namespace = tuple(value.get("namespace") or ())
        if namespace[:1] != (me,):
            value["namespace"] = (me, *namespace)

    # Anything the server adds later is refused until someone decides who may see it.
    @auth.on
    async def refuse_the_rest(ctx: Auth.types.AuthContext, value: Any) -> bool:
        return owner(ctx) is None

    return auth


auth = build_auth(Access(tokens_from_env()))
"""What ``langgraph.json`` loads; ``HANDOFF_API_TOKENS`` is read once, at server start."""
