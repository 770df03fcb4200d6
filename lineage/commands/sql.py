"""`lineage sql`: read-only SQL over the log and its views."""

from __future__ import annotations

import sys

import click
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.table import Table

from lineage.commands._common import console, open_store, store_option
from lineage.query import run_query


def register(cli: click.Group) -> None:
    cli.add_command(sql)


@click.command()
@store_option
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--max-rows", type=int, default=1000, show_default=True, help="Row limit for table output (0: none).")
def sql(store_dir, query, fmt, max_rows) -> None:
    """Run a read-only SQL query (DuckDB dialect) against the store.

    \b
    Tables and views: events (the whole log), segments, and the projections
    (nodes, edges, scores, artifacts, involvement, signals) where present.
      lineage sql "SELECT kind, count(*) FROM events GROUP BY ALL"
    """
    store = open_store(store_dir)
    limit = max_rows if fmt == "table" and max_rows else None
    table = run_query(store, query, limit=limit)
    if fmt == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink)
        sys.stdout.buffer.write(sink.getvalue().to_pybytes())
    elif fmt == "json":
        for row in table.to_pylist():
            sys.stdout.buffer.write(orjson.dumps(row, default=str, option=orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    else:
        t = Table(header_style="bold", box=None)
        for name in table.column_names:
            t.add_column(name, overflow="fold")
        for row in table.to_pylist():
            t.add_row(*("∅" if v is None else str(v) for v in row.values()))
        console.print(t)
        console.print(f"[dim]{table.num_rows} row{'s' if table.num_rows != 1 else ''}"
                      + (" (limit reached; --max-rows 0 for all)" if limit and table.num_rows >= limit else "") + "[/]")
