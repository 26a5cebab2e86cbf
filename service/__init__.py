"""Embed the handoff graphs in applications: an embedding API, a FastAPI service, a web chat.

- ``handoff.service.embedding.HandoffService``: threads, turns streamed as events,
  state, handoff records and human escalations, over any persistence URL;
  async (``astream`` over async checkpointers), so turns of many threads run at once.
- ``handoff.service.blocking.BlockingHandoffService``: the same for synchronous code.
- ``handoff.service.app.create_app``: the HTTP service (needs the ``service`` extra);
  ``handoff.service.guard`` checks each request's token and body size before the body is read,
  ``handoff.service.http_errors`` answers every error in one JSON shape.
- ``handoff.service.turns`` / ``handoff.service.transcript``: running one turn under the
  thread's lock; what users see of a thread, and finding a message sent before.
- ``handoff.service.locks``: one turn at a time per thread (advisory locks on PostgreSQL).
- ``handoff.service.storage``: the service's async persistence (pooled on PostgreSQL;
  on SQLite, store batches that take the write lock first: ``handoff.service.sqlite_store``).
- ``handoff.service.auth``: optional bearer tokens (``HANDOFF_API_TOKENS``).
- ``handoff.service.studio``: the graph factories ``langgraph.json`` points at.

Nothing is imported here, so ``langgraph dev`` can load ``handoff.service.studio``
without FastAPI installed.
"""
