"""Time travel: the projections as the store stood after a given event.

Every projection of the store is a table macro taking a cut-off seq (``nodes_at(120)``,
``scores_at``, ``involvement_at``, ``signals_at``, ...; see the projections migration), so
"as of" is not a copy or a rebuild: it is the same SQL over the events with ``seq <= N``.
From SQL: ``SELECT * FROM nodes_at(120)``. From Python: ``as_of(store, 120)``. From the
command line: ``lineage replay --as-of 120`` or ``--as-of 2025-06-01T12:00:00Z``.

A time is turned into a seq with the store's own clock: the last event whose
``recorded_at`` is at or before it (``occurred_at`` is what a producer claims and may be
out of order; ``recorded_at`` follows the log).

Invariant (checked by a property test): the state as of seq N equals the state of a
fresh store that only ever received the first N events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from lineage.errors import QueryError
from lineage.query import run_query
from lineage.store import Store
from replay.errors import ReplayError

PROJECTIONS = ("nodes", "scores", "involvement", "signals")

# A stable row order for each projection, so two states compare as tables.
ORDER = {
    "nodes": "lineage, node",
    "scores": "lineage, node, seq",
    "involvement": "lineage, node",
    "signals": "lineage, node, signal, coalesce(metric, ''), seq",
    "edges": "lineage, child, parent",
    "artifacts": "lineage, seq, artifact",
}


def head_seq(store: Store) -> int:
    return run_query(store, "SELECT coalesce(max(seq), 0) AS s FROM events").column("s")[0].as_py()


def resolve_as_of(store: Store, value: str | int | datetime) -> int:
    """A seq from ``SEQ`` or a time (ISO 8601; naive means UTC)."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        seq = int(value)
        if seq < 0:
            raise ReplayError(f"--as-of {value}: a seq is >= 0 (0 is the empty store)")
        head = head_seq(store)
        if seq > head:
            raise ReplayError(f"--as-of {value}: the store has {head} events; pick a seq up to {head}")
        return seq
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ReplayError(f"--as-of {value!r}: expected an event seq (integer) or an ISO 8601 time "
                              "such as 2025-06-01T12:00:00Z") from None
    else:
        when = value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    row = run_query(store, "SELECT coalesce(max(seq), 0) AS s FROM events WHERE recorded_at <= ?", [when])
    return row.column("s")[0].as_py()


def _projection_sql(name: str, lineage: str | None, branch: str | None) -> tuple[str, list[Any]]:
    if not name.isidentifier():
        raise ReplayError(f"not a projection name: {name!r}")
    where, params = [], []
    if lineage:
        where.append("lineage = ?")
        params.append(lineage)
    if branch:
        where.append(f"{'child_branch' if name == 'edges' else 'branch'} = ?")
        params.append(branch)
    sql = f"SELECT * FROM {name}_at(?)" + (" WHERE " + " AND ".join(where) if where else "")
    if name in ORDER:
        sql += f" ORDER BY {ORDER[name]}"
    return sql, params


def _run(con: duckdb.DuckDBPyConnection, name: str, seq: int, lineage: str | None, branch: str | None) -> pa.Table:
    sql, params = _projection_sql(name, lineage, branch)
    try:
        return con.sql(sql, params=[int(seq), *params]).to_arrow_table()
    except duckdb.CatalogException as exc:
        if f"{name}_at" in str(exc):
            raise ReplayError(f"this store has no {name}_at projection: it predates the projections migration, or "
                              f"{name!r} is not a projection; a store is migrated whenever it is opened for writing "
                              "(e.g. `lineage record ...` or the SDK)") from None
        raise QueryError(str(exc).split("\n")[0]) from None
    except duckdb.Error as exc:
        raise QueryError(str(exc).split("\n")[0]) from None


def projection_at(store: Store, name: str, seq: int, *, lineage: str | None = None,
                  branch: str | None = None) -> pa.Table:
    """One projection (``nodes``, ``scores``, ``involvement``, ``signals``, ``edges``, ...) as of ``seq``."""
    with store.reader() as con:
        return _run(con, name, seq, lineage, branch)


@dataclass
class State:
    """The projections as of one seq."""

    seq: int
    recorded_at: datetime | None
    tables: dict[str, pa.Table] = field(default_factory=dict)
    source: str = "projections (*_at macros)"

    def __getitem__(self, name: str) -> pa.Table:
        return self.tables[name]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "recorded_at": self.recorded_at,
                **{name: t.to_pylist() for name, t in self.tables.items()}}


def as_of(store: Store, seq: int, *, lineage: str | None = None, branch: str | None = None,
          projections: tuple[str, ...] = PROJECTIONS) -> State:
    """The projections (nodes, scores, involvement, signals by default) as of event ``seq``."""
    if seq < 0:
        raise ReplayError("a seq is >= 0")
    with store.reader() as con:  # one connection for every projection: one consistent read
        rows = con.execute("SELECT recorded_at FROM events WHERE seq = ?", [int(seq)]).fetchall()
        state = State(int(seq), rows[0][0] if rows else None)
        for name in projections:
            state.tables[name] = _run(con, name, seq, lineage, branch)
    return state


__all__ = ["PROJECTIONS", "State", "as_of", "head_seq", "projection_at", "resolve_as_of"]
