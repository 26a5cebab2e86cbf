"""LangGraph's async PostgreSQL store, a batch of one statement sent without a pipeline.

``AsyncPostgresStore`` runs every batch in a psycopg pipeline, so that a batch of several
statements lands together. Most of a turn's batches are one statement: the journal's writes of a
step are one ``INSERT`` across its namespaces, and a read of the transcript's earlier messages is
one ``SELECT``. For those the pipeline only adds work: entering it, a ``Sync`` and a flush, and
taking the results apart again. On the load benchmark's workers the store's batches were about
13% of their CPU (py-spy), most of it in that machinery.

``LeanPostgresStore`` sends such a batch as one plain statement, which PostgreSQL runs as a
transaction of its own (the pool's connections are in autocommit mode); it builds the statement
with the stock store's own methods, so the SQL, its parameters and the rows it reads are the
stock store's. A batch of more than one statement (deletes beside writes, reads of several
namespaces, a search, embeddings to compute) goes the stock way, in one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langgraph.store.base import GetOp, PutOp, Result
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import DictRow


class LeanPostgresStore(AsyncPostgresStore):
    """``AsyncPostgresStore`` whose one-statement batches skip the pipeline."""

    async def _execute_batch(
        self, grouped_ops: dict[Any, Any], results: list[Result], conn: AsyncConnection[DictRow] | None = None,
    ) -> None:
        kinds = set(grouped_ops)
        if kinds == {GetOp}:
            gets = cast(Sequence[tuple[int, GetOp]], grouped_ops[GetOp])
            if len({op.namespace for _, op in gets}) == 1:
                async with self._cursor(pipeline=False) as cur:
                    await self._batch_get_ops(gets, results, cur)
                return
        elif kinds == {PutOp}:
            queries, embedding_request = self._prepare_batch_PUT_queries(
                cast(Sequence[tuple[int, PutOp]], grouped_ops[PutOp]))
            if len(queries) == 1 and embedding_request is None:
                async with self._cursor(pipeline=False) as cur:
                    await cur.execute(*queries[0])
                return
        await super()._execute_batch(grouped_ops, results, conn)
