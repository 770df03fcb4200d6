"""Whole-lineage views of ``LineageService``: signals of every node, per-generation stats,
two branches compared, and read-only SQL.

These read a whole lineage at once, so the costly ones are cached (``signal_map``, per
seq) or wait for an explicit request above ``LARGE_LINEAGE`` nodes: on 1,000,000 nodes
the lineage-wide projections take seconds and gigabytes.
"""

from __future__ import annotations

import pyarrow as pa

from lineage import signals as signals_mod
from lineage.node_index import LEVEL_SQL, STANDING_RETRACTIONS
from lineage.query import run_query
from lineage.service.rows import GenerationStat, Metric

SIGNALS = signals_mod.SIGNALS
# Above this many nodes, lineage-wide projections (signals for the tree's marks, the
# involvement and signals tabs, which DuckDB computes for the whole lineage) wait for an
# explicit request: on 1,000,000 nodes they take seconds and gigabytes.
LARGE_LINEAGE = 100_000


class LineageAnalytics:
    """Views over a whole lineage (a mixin of ``LineageService``: needs ``ServiceBase``
    for its queries and ``TreeReads`` for metrics and best nodes)."""

    # -- the whole lineage -------------------------------------------------------------------------

    def signal_map(self, lineage: str, *, refresh: bool = False) -> dict[str, list[dict]]:
        """Every finding of a lineage by node (cached per seq: it reads the whole lineage)."""
        seq = self.latest_seq()
        cached = self._signals.get(lineage)
        if cached and (cached[0] == seq or not refresh):
            return cached[1]
        with self._lock.read():
            found = signals_mod.signals(self.store, lineage=lineage)
        by_node: dict[str, list[dict]] = {}
        for f in found:
            by_node.setdefault(f["node"], []).append(f)
        self._signals[lineage] = (seq, by_node)
        return by_node

    def signals_known(self, lineage: str) -> bool:
        return lineage in self._signals

    def is_large(self, lineage: str) -> bool:
        """Whether lineage-wide projections are too costly to compute without being asked."""
        info = self._sizes.get(lineage)
        if info is None:
            info = self._rows("SELECT count(*) AS n FROM node_index WHERE lineage = ?", [lineage])[0]["n"]
            self._sizes[lineage] = info
        return info > LARGE_LINEAGE

    def generation_stats(self, lineage: str, branch: str | None = None, *,
                         metric: Metric | None = None) -> list[GenerationStat]:
        """Per generation: nodes, the best value of the metric (and where), human and AI shares."""
        params = self._params(lineage, metric, branch=branch)
        hib = (metric or self.primary_metric(lineage) or Metric("", "", True)).higher_is_better
        rows = self._rows(
            f"""WITH n AS (SELECT * FROM node_index WHERE lineage = $lineage AND created_seq IS NOT NULL
                           AND ($branch IS NULL OR branch = $branch)),
                g AS (SELECT generation, count(*) AS nodes, sum(human)::DOUBLE AS human, sum(ai)::DOUBLE AS ai,
                             sum(events)::DOUBLE AS events,
                             count(*) FILTER (WHERE ({LEVEL_SQL.format(p="")}) = 3) AS level3
                      FROM n GROUP BY generation),
                b AS (SELECT n.generation, {"arg_max" if hib else "arg_min"}(s.node, s.value) AS best_node,
                             {"max" if hib else "min"}(s.value) AS best
                      FROM score_index s JOIN n USING (lineage, node)
                      WHERE s.metric = $metric AND s.split = $split AND s.event_id NOT IN {STANDING_RETRACTIONS}
                      GROUP BY n.generation)
                SELECT g.*, b.best, b.best_node FROM g LEFT JOIN b USING (generation) ORDER BY generation""",
            params,
        )
        return [GenerationStat(r["generation"], r["nodes"], r["best"], r["best_node"],
                               r["human"] / r["events"] if r["events"] else None,
                               r["ai"] / r["events"] if r["events"] else None, r["level3"]) for r in rows]

    def compare_branches(self, lineage: str, a: str, b: str, *, metric: Metric | None = None) -> dict:
        """Two branches side by side: nodes, best value (and node), human share, fork point."""
        out = {}
        for br in (a, b):
            stats = self.generation_stats(lineage, br, metric=metric)
            best = self.best_node(lineage, br, metric=metric)
            rows = self._rows(
                "SELECT count(*) AS nodes, sum(human)::DOUBLE AS human, sum(events)::DOUBLE AS events, max(generation) AS depth "
                "FROM node_index WHERE lineage = ? AND branch = ? AND created_seq IS NOT NULL", [lineage, br])[0]
            fork = self._rows(
                "SELECT node, payload->>'from_branch' AS from_branch FROM events WHERE lineage = ? AND branch = ? "
                "AND kind = 'branch_created' ORDER BY seq LIMIT 1", [lineage, br])
            out[br] = {
                "nodes": rows["nodes"], "depth": rows["depth"],
                "human_share": rows["human"] / rows["events"] if rows["events"] else None,
                "best": best.best if best else None, "best_node": best.node if best else None,
                "fork": fork[0]["node"] if fork else None, "from_branch": fork[0]["from_branch"] if fork else None,
                "generations": stats,
            }
        return out

    # -- SQL -----------------------------------------------------------------------------------------

    def sql(self, query: str, *, limit: int = 10_000) -> pa.Table:
        """A read-only query, as ``lineage sql`` runs it (QueryError / ReadOnlyViolation on refusal)."""
        return self._query_limited(query, limit)

    def _query_limited(self, query: str, limit: int) -> pa.Table:
        with self._lock.read():
            return run_query(self.store, query, limit=limit)
