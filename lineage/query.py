"""Read-only SQL over a store: the one door through which the CLI and the terminal UI read.

A query runs on a read-only connection opened for that query alone, so it never holds
the file against a writer for longer than it runs. Statements that could change anything
are refused before they reach DuckDB, with a message that says what is allowed; DuckDB's
read-only mode is the second line of defence. DuckDB errors leave as ``QueryError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from lineage.errors import QueryError, ReadOnlyViolation
from lineage.store import Store

_ALLOWED = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
}


def check_read_only(sql: str) -> list:
    """Refuse anything but reads; returns the parsed statements."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_clean(exc)) from None
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        if st.type not in _ALLOWED:
            kind = st.type.name if hasattr(st.type, "name") else str(st.type)
            raise ReadOnlyViolation(
                f"`lineage sql` is read-only: {kind} statements are refused. The log is append-only; "
                "record corrections as new events (`lineage record`, e.g. kind retraction or annotation)."
            )
    return statements


def _clean(exc: Exception) -> str:
    return str(exc).strip().split("\n\nLINE")[0]


def run_query(store: Store, sql: str, params: Sequence | None = None, *, limit: int | None = None,
              con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Run a read-only query and return its result as an Arrow table.

    ``con``: a read-only connection the caller already holds (several reads in a burst);
    by default the query opens its own and closes it at once."""
    statements = check_read_only(sql)
    if con is not None:
        return _run(con, statements, params, limit)
    with store.reader() as con:
        return _run(con, statements, params, limit)


def _run(con: duckdb.DuckDBPyConnection, statements: list, params: Sequence | None, limit: int | None) -> pa.Table:
    try:
        for st in statements[:-1]:
            con.execute(st.query).fetchall()
        rel = con.sql(statements[-1].query, params=params or None)
        if rel is None:
            return pa.table({})
        if limit is not None:
            rel = rel.limit(limit)
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        msg = _clean(exc)
        if "read-only" in msg.lower():
            raise ReadOnlyViolation(f"`lineage sql` is read-only: {msg}") from None
        raise QueryError(msg) from None
