"""Embed the handoff graphs in applications: an embedding API, a FastAPI service, a web chat.

- ``service.embedding.HandoffService``: threads, turns streamed as events,
  state, handoff records and human escalations, over any persistence URL.
- ``service.app.create_app``: the HTTP service (needs the ``service`` extra).
- ``service.studio``: the graph factories ``langgraph.json`` points at.

Nothing is imported here, so ``langgraph dev`` can load ``service.studio``
without FastAPI installed.
"""
