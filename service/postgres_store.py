"""LangGraph's async PostgreSQL store, a batch of one statement sent without a pipeline.

``AsyncPostgresStore`` runs every batch in a psycopg pipeline, so that a batch of several
statements lands together. Most of a turn's batches are one statement: the journal's writes of a
step are one ``INSERT`` across its namespaces, and a read of the transcript's earlier messages is
one ``SELECT``. For those the pipeline only adds work: entering it, a ``Sync`` and a flush, and
taking the results apart again. On the load benchmark's workers the store's batches were about
15% of their CPU (py-spy), about half of it in that machinery; 10% without it.

``LeanPostgresStore`` sends such a batch as one plain statement, which PostgreSQL runs as a
transaction of its own (the pool's connections are in autocommit mode). Writes are built by the
stock store's own methods. A read is the stock statement (the same rows, the same TTL refresh)
with its keys as ``VALUES`` rows of scalar parameters, which psycopg adapts in C, instead of two
arrays to ``unnest``, which it adapts in Python. A batch of more than one statement (deletes
beside writes, reads of several namespaces, a search, embeddings to compute) goes the stock way,
in one pipeline. ``tests/test_postgres_store.py`` runs both stores side by side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, cast

from langgraph.store.base import GetOp, PutOp, Result
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

MAX_KEYS = 5000
"""Keys of one namespace one read sends as parameters (two each); a larger read is the stock statement.
PostgreSQL takes at most 65,535 parameters in a statement."""


def padded(keys: int) -> int:
    """The statement size a read of ``keys`` keys uses: the next power of two, so that reads of every size
    share a dozen statements (psycopg prepares each on each connection, and keeps 100)."""
    return 1 << max(keys - 1, 0).bit_length()


@lru_cache(maxsize=32)
def get_sql(keys: int, omit_expired: bool) -> str:
    """The stock read of ``keys`` keys of one namespace (refreshing the TTL of those asked to), its keys
    as ``VALUES`` rows of scalar parameters instead of two arrays to ``unnest``. Rows past the keys asked
    for are ``(NULL, false)``: a NULL key matches no row."""
    expiry = "AND (s.expires_at IS NULL OR s.expires_at > NOW())" if omit_expired else ""
    rows = ", ".join(["(%s::text, %s::bool)"] * keys)
    return f"""
        WITH passed_in (key, do_refresh) AS (VALUES {rows}),
        updated AS (
            UPDATE store s
            SET expires_at = NOW() + (s.ttl_minutes || ' minutes')::interval
            FROM passed_in p
            WHERE s.prefix = %s
            AND s.key = p.key
            AND p.do_refresh = TRUE
            AND s.ttl_minutes IS NOT NULL
            {expiry}
            RETURNING s.key
        )
        SELECT s.key, s.value, s.created_at, s.updated_at
        FROM store s
        JOIN passed_in p ON s.key = p.key
        WHERE s.prefix = %s
        {expiry}
    """


class LeanPostgresStore(AsyncPostgresStore):
    """``AsyncPostgresStore`` whose one-statement batches skip the pipeline, and whose reads send their
    keys as scalar parameters."""

    def _get_batch_GET_ops_queries(
        self, get_ops: Sequence[tuple[int, GetOp]],
    ) -> list[tuple[str, tuple[Any, ...], tuple[str, ...], list[tuple[int, str]]]]:
        """The stock reads (one statement per namespace, the same rows), each key and its refresh flag
        a scalar parameter: psycopg adapts those in C, and the stock statement's two arrays in Python
        (the store's reads were its costliest statements on the load benchmark's workers)."""
        by_namespace: dict[tuple[str, ...], list[tuple[int, str, bool]]] = defaultdict(list)
        for idx, op in get_ops:
            by_namespace[op.namespace].append((idx, op.key, op.refresh_ttl))
        if any(len(wanted) > MAX_KEYS or not all(isinstance(key, str) for _, key, _ in wanted)
               for wanted in by_namespace.values()):
            return super()._get_batch_GET_ops_queries(get_ops)  # keys of other types answer as the stock casts them
        queries = []
        for namespace, wanted in by_namespace.items():
            ns = ".".join(namespace)  # the stock store's prefix text (its _namespace_to_text)
            size = padded(len(wanted))
            keys = [v for _, key, refresh in wanted for v in (key, refresh)]
            params = (*keys, *[None, False] * (size - len(wanted)), ns, ns)
            queries.append((get_sql(size, self._omit_expired), params, namespace,
                            [(idx, key) for idx, key, _ in wanted]))
        return queries

    async def _execute_batch(
        self, grouped_ops: dict[Any, Any], results: list[Result], conn: AsyncConnection[DictRow] | None = None,
    ) -> None:
        plain = self._one_statement(grouped_ops, results)
        if plain is None:
            await super()._execute_batch(grouped_ops, results, conn)
            return
        async with self._cursor(pipeline=False) as cur:
            await plain(cur)

    def _one_statement(
        self, grouped_ops: dict[Any, Any], results: list[Result],
    ) -> Callable[[AsyncCursor[DictRow]], Awaitable[Any]] | None:
        """The batch as one plain statement, or None: it is more than one, or the store is not over a pool.
        One connection may sit in its caller's pipeline, where only the stock batch's own pipeline syncs
        (commits, and raises a refused statement's error) before the batch returns."""
        if self.pipe is not None or not isinstance(self.conn, AsyncConnectionPool):
            return None
        if set(grouped_ops) == {GetOp}:
            gets = cast(Sequence[tuple[int, GetOp]], grouped_ops[GetOp])
            if len({op.namespace for _, op in gets}) == 1:
                return lambda cur: self._batch_get_ops(gets, results, cur)
        elif set(grouped_ops) == {PutOp}:
            queries, embedding_request = self._prepare_batch_PUT_queries(
                cast(Sequence[tuple[int, PutOp]], grouped_ops[PutOp]))
            if len(queries) == 1 and embedding_request is None:
                return lambda cur: cur.execute(*queries[0])
        return None
