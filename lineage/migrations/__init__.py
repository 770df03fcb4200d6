"""Numbered schema migrations of the store's DuckDB file. The schema version is their count.

Each module ``mNNNN_*.py`` has a docstring and ``SQL``; they run in order, once, inside
the transaction that records them in ``schema_migrations``.
"""

from __future__ import annotations

import importlib
import pkgutil

import duckdb


def _modules() -> list[tuple[int, object]]:
    """(version, module) pairs; the version is the number in the file name, ``mNNNN_``."""
    found = []
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("m") and m.name[1:5].isdigit():
            found.append((int(m.name[1:5]), importlib.import_module(f"{__name__}.{m.name}")))
    found.sort(key=lambda pair: pair[0])
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return found


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT current_timestamp)")
    done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    modules = _modules()
    for version, module in modules:
        if version in done:
            continue
        con.execute("BEGIN")
        try:
            for stmt in module.SQL:
                con.execute(stmt)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, module.__name__.rsplit(".", 1)[-1]])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return len(modules)
