"""Oversight signals: findings about a node's evaluation that deserve a human look.

Each finding is a row of the ``signals`` view (node, signal, severity, detail, and the
ids of the events that are its evidence); definitions in docs/sql.md. The thresholds
and path globs they use are rows of the ``settings`` table, which ``set_setting`` (or
plain SQL on a writable connection) changes.
"""

from __future__ import annotations

import math

import orjson

from lineage.errors import LineageError
from lineage.genealogy import cut, records
from lineage.store import Store

SIGNALS = (
    "self_evaluation",
    "evaluator_touched",
    "contamination",
    "unreviewed_promotion",
    "heldout_gap",
    "suspicious_jump",
)
SEVERITIES = ("info", "warning", "critical")


def signals(store: Store, *, lineage: str | None = None, node_id: str | None = None,
            signal: str | None = None, max_seq: int | None = None) -> list[dict]:
    """The findings, most severe first, then in the order they arose."""
    if signal is not None and signal not in SIGNALS:
        raise LineageError(f"unknown signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
    table = store.query_arrow(
        "SELECT * FROM signals_at($cut) "
        "WHERE ($lineage IS NULL OR lineage = $lineage) AND ($node IS NULL OR node = $node) "
        "AND ($signal IS NULL OR signal = $signal) "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, seq, node, signal, metric",
        {"cut": cut(max_seq), "lineage": lineage, "node": node_id, "signal": signal},
    )
    return records(table)


def evidence_seqs(store: Store, findings: list[dict]) -> dict[str, int]:
    """The seq of every evidence event of these findings, by event id."""
    ids = sorted({e for f in findings for e in f["evidence"]})
    if not ids:
        return {}
    table = store.query_arrow("SELECT event_id, seq FROM events WHERE list_contains($ids, event_id)", {"ids": ids})
    return dict(zip(table.column("event_id").to_pylist(), table.column("seq").to_pylist(), strict=True))


def settings(store: Store) -> list[dict]:
    """The tunable thresholds and globs: key, value (text: a number or a JSON list), description."""
    return store.query_arrow("SELECT key, value, description FROM settings ORDER BY key").to_pylist()


def set_setting(store: Store, key: str, value: str) -> str:
    """Change one setting; the value is checked against the kind the key holds (a number,
    or a JSON list of strings). Returns the value stored."""
    current = {s["key"]: s["value"] for s in settings(store)}
    if key not in current:
        raise LineageError(f"unknown setting {key!r}; settings are: {', '.join(sorted(current))}")
    if current[key].lstrip().startswith("["):
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise LineageError(f"{key} takes a JSON list of strings, like '[\"*eval*\", \"tests/*\"]'; got {value!r}")
        value = orjson.dumps(items).decode()
    else:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise LineageError(f"{key} takes a number; got {value!r}")
        value = repr(number) if not number.is_integer() else str(int(number))
    with store.writer() as w:
        w.con.execute("UPDATE settings SET value = ? WHERE key = ?", [value, key]).fetchall()
    return value


__all__ = ["SEVERITIES", "SIGNALS", "evidence_seqs", "set_setting", "settings", "signals"]
