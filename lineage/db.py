"""Small DuckDB helpers shared by the store modules."""

from __future__ import annotations

import duckdb


def first_row(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a result, consuming the rest (DuckDB 2 refuses new work on a
    connection while a result is still open)."""
    rows = result.fetchall()
    return rows[0] if rows else None
