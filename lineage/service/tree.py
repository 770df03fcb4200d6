"""Genealogy reads of ``LineageService``: lineages, branches, metrics, the tree and search.

The tree, its badges and search read the node index (migration m0004, kept up to date by
``refresh_index``) instead of the JSON event log, so that browsing a 1,000,000-node
lineage feels instant: a page of children is one query, built column-wise into
``NodeRow``s. Also the first screen in one burst (``opening``) and what changed since a
seq (``changes_since``), which the live view polls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from lineage.node_index import LEVEL_SQL, STANDING_RETRACTIONS
from lineage.service.rows import (
    Changes,
    Filter,
    LineageInfo,
    Metric,
    NodeRow,
    Opening,
    Page,
    first_lineage,
)

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
PAGE = 1000


_NODE_COLUMNS = f"""n.lineage, n.node, n.branch, n.label, n.generation, n.parent,
    coalesce(n.parents, []::VARCHAR[]) AS parents, n.missing_parent, n.children, n.events, n.human, n.ai,
    n.system, ({LEVEL_SQL.format(p="n.")})::INTEGER AS level, n.created_seq, n.created_at, n.actor AS created_by,
    n.first_seq, n.last_seq,
    (SELECT count(*) FROM node_links l WHERE l.lineage = n.lineage AND l.parent = n.node)::INTEGER AS links,
    (SELECT list(l.parent ORDER BY l.seq) FROM node_links l WHERE l.lineage = n.lineage AND l.node = n.node) AS also_from"""


def _best_sql(rel: str) -> str:
    """The best non-retracted value of the lineage's metric for each node of ``rel``."""
    return f"""SELECT s.node, CASE WHEN bool_and(s.higher_is_better) THEN max(s.value) ELSE min(s.value) END AS best
        FROM score_index s SEMI JOIN {rel} r ON r.node = s.node
        WHERE s.lineage = $lineage AND s.metric = $metric AND s.split = $split
          AND s.event_id NOT IN {STANDING_RETRACTIONS}
        GROUP BY s.node"""


def _rows_sql(where: str, *, order: str = "n.created_seq", limit: str = "") -> str:
    """Node rows matching ``where``, with ``total``: how many match in all (before the limit)."""
    return f"""
        WITH page AS (
            SELECT {_NODE_COLUMNS}, count(*) OVER () AS total FROM node_index n
            WHERE n.lineage = $lineage AND ({where})
            ORDER BY {order} {limit}
        ),
        best AS ({_best_sql("page")})
        SELECT page.*, best.best FROM page LEFT JOIN best USING (node) ORDER BY {order.replace("n.", "page.")}
    """


class TreeReads:
    """The genealogy of a lineage as the tree and its search show it (a mixin of
    ``LineageService``: needs ``ServiceBase`` for its queries and caches)."""

    # -- lineages, branches, metrics ------------------------------------------------------

    def lineages(self) -> list[LineageInfo]:
        rows = self._rows(
            "SELECT lineage, count(*) FILTER (WHERE created_seq IS NOT NULL) AS nodes, "
            "list(DISTINCT branch ORDER BY branch) FILTER (WHERE branch IS NOT NULL) AS branches, "
            "max(last_seq) AS last_seq FROM node_index GROUP BY lineage ORDER BY lineage"
        )
        self._sizes.update({r["lineage"]: r["nodes"] for r in rows})
        return [LineageInfo(r["lineage"], r["nodes"], tuple(_main_first(r["branches"] or [])),
                            self.primary_metric(r["lineage"]), r["last_seq"] or 0) for r in rows]

    def opening(self, prefer: str | None = None) -> Opening:
        """Everything the first screen shows, on one connection (see ``Opening``).

        The lineage opened is ``prefer`` when the store has it, else the one written to
        last. Reads what the tree and the detail pane would read one by one."""
        with self.session():
            lineages = self.lineages()
            name = first_lineage(lineages, prefer)
            if name is None:
                return Opening(lineages)
            roots = self.roots(name)
            if not roots.rows:
                return Opening(lineages, name, roots)
            first = roots.rows[0]
            expanded = next((r for r in roots.rows if r.children > 0 or r.links > 0), None)
            children = None
            if expanded is not None:
                children = self.children(name, expanded.node, links=expanded.links > 0)
            within = (first.first_seq, first.last_seq) if first.last_seq is not None else None
            return Opening(lineages, name, roots, expanded, children, self.node_detail(name, first.node, first),
                           self.node_events(name, first.node, within=within))

    def branches(self, lineage: str) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT branch FROM node_index WHERE lineage = ? AND branch IS NOT NULL "
            "UNION SELECT DISTINCT branch FROM events WHERE lineage = ? AND kind = 'branch_created'",
            [lineage, lineage],
        )
        return _main_first(sorted(r["branch"] for r in rows))

    def primary_metric(self, lineage: str) -> Metric | None:
        """The metric the tree shows: the one scored most often on a public split."""
        if lineage not in self._metrics:
            # Among the metrics scored on a public split, the one by which the latest
            # promoted node is best (a loop promotes by its own metric), then the most scored.
            rows = self._rows(
                f"""WITH m AS (
                        SELECT metric, split, bool_and(higher_is_better) AS hib, count(*) AS n FROM score_index
                        WHERE lineage = $lineage AND NOT list_contains(setting_list('heldout_splits'), split)
                          AND NOT list_contains(setting_list('train_splits'), split)
                        GROUP BY metric, split),
                    promoted AS (
                        SELECT coalesce(payload->>'node', node) AS node, payload->>'reason' AS reason FROM events
                        WHERE lineage = $lineage AND kind = 'selection' AND payload->>'purpose' IN ('best', 'promote')
                        ORDER BY seq DESC LIMIT 1),
                    best AS (
                        SELECT s.metric, s.split,
                               CASE WHEN m.hib THEN max(s.value) ELSE min(s.value) END AS top,
                               CASE WHEN m.hib THEN max(s.value) FILTER (WHERE s.node IN (SELECT node FROM promoted))
                                    ELSE min(s.value) FILTER (WHERE s.node IN (SELECT node FROM promoted)) END AS mine
                        FROM score_index s JOIN m USING (metric, split)
                        WHERE s.lineage = $lineage AND s.event_id NOT IN {STANDING_RETRACTIONS}
                        GROUP BY s.metric, s.split, m.hib)
                    SELECT m.metric, m.split, m.hib FROM m LEFT JOIN best b USING (metric, split)
                    ORDER BY coalesce(b.mine = b.top, false) DESC,
                             coalesce(contains(lower((SELECT reason FROM promoted)), lower(m.metric)), false) DESC,
                             m.split = 'public' DESC, m.n DESC, m.metric, m.split
                    LIMIT 1""",
                {"lineage": lineage},
            )
            self._metrics[lineage] = Metric(rows[0]["metric"], rows[0]["split"], rows[0]["hib"]) if rows else None
        return self._metrics[lineage]

    def metrics(self, lineage: str) -> list[Metric]:
        rows = self._rows(
            "SELECT metric, split, bool_and(higher_is_better) AS hib FROM score_index WHERE lineage = ? "
            "GROUP BY ALL ORDER BY metric, split", [lineage])
        return [Metric(r["metric"], r["split"], r["hib"]) for r in rows]

    # -- the tree ----------------------------------------------------------------------------

    def _params(self, lineage: str, metric: Metric | None, **extra: Any) -> dict:
        metric = metric or self.primary_metric(lineage)
        return {"lineage": lineage, "metric": metric.name if metric else "", "split": metric.split if metric else "",
                **extra}

    def _node_rows(self, table: pa.Table) -> list[NodeRow]:
        """NodeRows from ``_rows_sql`` results, built column-wise (a page of 1,000 rows is
        read on every expand: row dicts cost twice as much)."""
        if table.num_rows == 0:
            return []
        c = table.set_column(table.schema.get_field_index("created_at"), "created_at",
                             table.column("created_at").cast(pa.int64())).to_pydict()
        rows = [
            NodeRow(lineage, node, branch, label, generation, parent, tuple(parents), missing, children, events,
                    human, ai, system, level, best, created_seq, links, created_at, created_by, first_seq, last_seq,
                    also_from=tuple(also_from) if also_from else ())
            for (lineage, node, branch, label, generation, parent, parents, missing, children, events, human, ai,
                 system, level, best, created_seq, links, created_at, created_by, first_seq, last_seq, also_from)
            in zip(c["lineage"], c["node"], c["branch"], c["label"], c["generation"], c["parent"], c["parents"],
                   c["missing_parent"], c["children"], c["events"], c["human"], c["ai"], c["system"], c["level"],
                   c["best"], c["created_seq"], c["links"], c["created_at"], c["created_by"], c["first_seq"],
                   c["last_seq"], c["also_from"], strict=True)
        ]
        if self._signals.get(table.column("lineage")[0].as_py()):
            rows = [self._with_signals(r) for r in rows]
        return rows

    def _page(self, sql: str, params: dict) -> tuple[list[NodeRow], int]:
        """The rows of a ``_rows_sql`` query and how many match in all."""
        table = self._query(sql, params)
        return self._node_rows(table), (table.column("total")[0].as_py() if table.num_rows else 0)

    def _with_signals(self, row: NodeRow) -> NodeRow:
        cached = self._signals.get(row.lineage)
        if not cached:
            return row
        found = cached[1].get(row.node)
        if not found:
            return row
        names = tuple(dict.fromkeys(f["signal"] for f in found))
        return replace(row, signals=names, severity=max(SEVERITY_RANK.get(f["severity"], 1) for f in found))

    def roots(self, lineage: str, branch: str | None = None, *, metric: Metric | None = None,
              offset: int = 0, limit: int = PAGE) -> Page:
        """The top of the tree: nodes with no known parent. For a branch: the nodes where
        it leaves another branch (its fork points) and its own parentless nodes."""
        if branch is None:
            where = "n.parent IS NULL"
            params = self._params(lineage, metric)
        else:
            where = ("(n.branch = $branch AND n.parent IS NULL) OR n.node IN ("
                     "SELECT c.parent FROM node_index c LEFT JOIN node_index p ON p.lineage = c.lineage "
                     "AND p.node = c.parent WHERE c.lineage = $lineage AND c.branch = $branch "
                     "AND c.parent IS NOT NULL AND p.branch <> $branch) OR n.node IN ("
                     "SELECT node FROM events WHERE lineage = $lineage AND branch = $branch "
                     "AND kind = 'branch_created' AND node IS NOT NULL)")
            params = self._params(lineage, metric, branch=branch)
        rows, total = self._page(_rows_sql(where, limit=f"LIMIT {int(limit)} OFFSET {int(offset)}"), params)
        return Page(rows, total, offset)

    def children(self, lineage: str, node: str, *, branch: str | None = None, metric: Metric | None = None,
                 offset: int = 0, limit: int = PAGE, flatten: bool = True, links: bool = True) -> Page:
        """A node's children in creation order, ``limit`` at a time; with the first page,
        the nodes that have this one as a further parent (``links``; pass False when the
        node's row says it has none, to save a query).

        ``flatten``: when the node has a single child, the page is the whole run of only
        children below it (up to ``limit``), so a long line of descent reads as a list
        instead of a staircase (``Page.chain``)."""
        where = "n.parent = $node" + (" AND n.branch = $branch" if branch else "")
        params = self._params(lineage, metric, node=node, **({"branch": branch} if branch else {}))
        rows, total = self._page(_rows_sql(where, limit=f"LIMIT {int(limit)} OFFSET {int(offset)}"), params)
        linked: list[NodeRow] = []
        if offset == 0 and links:
            link_where = "n.node IN (SELECT node FROM node_links WHERE lineage = $lineage AND parent = $node)"
            if branch:
                link_where += " AND n.branch = $branch"
            linked = self._page(_rows_sql(link_where, limit=f"LIMIT {PAGE}"), params)[0]
        if flatten and offset == 0 and total == 1 and rows[0].children > 0:
            run = self._chain(lineage, node, branch, limit)
            if len(run) > 1:
                found = {r.node: r for r in self.nodes(lineage, run, metric=metric)}
                return Page([found[n] for n in run if n in found], 1, 0, linked, chain=True)
        return Page(rows, total, offset, linked)

    def _chain(self, lineage: str, node: str, branch: str | None, cap: int) -> list[str]:
        """The run of only children below ``node``: each the single child of the one before,
        ending at a node with no child, several children, or children through merges."""
        on_branch = " AND {t}.branch = $branch" if branch else ""
        rows = self._rows(
            f"""WITH RECURSIVE run(node, depth) AS (
                    SELECT $node::VARCHAR, 0
                    UNION ALL
                    SELECT c.node, r.depth + 1
                    FROM run r JOIN node_index c ON c.lineage = $lineage AND c.parent = r.node{on_branch.format(t="c")}
                    WHERE r.depth < $cap
                      AND (SELECT count(*) FROM node_index k WHERE k.lineage = $lineage
                           AND k.parent = r.node{on_branch.format(t="k")}) = 1
                      AND (r.depth = 0 OR NOT EXISTS (SELECT 1 FROM node_links l
                           WHERE l.lineage = $lineage AND l.parent = r.node))
                )
                SELECT node FROM run WHERE depth > 0 ORDER BY depth""",
            {"lineage": lineage, "node": node, "cap": int(cap), **({"branch": branch} if branch else {})},
        )
        return [r["node"] for r in rows]

    def nodes(self, lineage: str, ids: Sequence[str], *, metric: Metric | None = None) -> list[NodeRow]:
        if not ids:
            return []
        return self._page(_rows_sql("n.node IN (SELECT unnest($ids))"), self._params(lineage, metric, ids=list(ids)))[0]

    def node(self, lineage: str, node: str, *, metric: Metric | None = None) -> NodeRow | None:
        found = self.nodes(lineage, [node], metric=metric)
        return found[0] if found else None

    def path_to(self, lineage: str, node: str) -> list[str]:
        """The tree path from a root down to ``node`` (through first known parents)."""
        path = [node]
        seen = {node}
        current = node
        while True:
            rows = self._rows("SELECT parent FROM node_index WHERE lineage = ? AND node = ?", [lineage, current])
            if not rows or rows[0]["parent"] is None or rows[0]["parent"] in seen:
                break
            current = rows[0]["parent"]
            seen.add(current)
            path.append(current)
        return list(reversed(path))

    def best_node(self, lineage: str, branch: str | None = None, *, metric: Metric | None = None) -> NodeRow | None:
        """The node with the best value of the lineage's metric (ties: the earliest)."""
        metric = metric or self.primary_metric(lineage)
        if metric is None:
            return None
        order = "DESC" if metric.higher_is_better else "ASC"
        rows = self._rows(
            f"""SELECT s.node FROM score_index s JOIN node_index n USING (lineage, node)
                WHERE s.lineage = $lineage AND s.metric = $metric AND s.split = $split
                  AND ($branch IS NULL OR n.branch = $branch) AND s.event_id NOT IN {STANDING_RETRACTIONS}
                ORDER BY s.value {order}, s.seq LIMIT 1""",
            self._params(lineage, metric, branch=branch),
        )
        return self.node(lineage, rows[0]["node"], metric=metric) if rows else None

    def resolve(self, lineage: str, text: str) -> NodeRow | None:
        """A node by exact id, else by exact label, else by id or label prefix."""
        text = text.strip()
        if not text:
            return None
        rows = self._rows(
            """SELECT node FROM node_index WHERE lineage = $lineage AND created_seq IS NOT NULL
               AND (node = $t OR label = $t OR starts_with(node, $t) OR starts_with(lower(label), lower($t)))
               ORDER BY node = $t DESC, label = $t DESC, created_seq LIMIT 1""",
            {"lineage": lineage, "t": text},
        )
        return self.node(lineage, rows[0]["node"]) if rows else None

    def find(self, lineage: str, flt: Filter, *, branch: str | None = None, limit: int = 500,
             metric: Metric | None = None) -> tuple[list[NodeRow], int]:
        """Nodes matching every given criterion (creation order), and how many match in all."""
        where = ["n.created_seq IS NOT NULL"]
        params = self._params(lineage, metric)
        if branch:
            where.append("n.branch = $branch")
            params["branch"] = branch
        if flt.text:
            where.append("(contains(lower(n.node), lower($text)) OR contains(lower(coalesce(n.label, '')), lower($text)))")
            params["text"] = flt.text.strip()
        if flt.actor:
            actor = flt.actor.strip()
            if actor.rstrip(":") in ("human", "ai", "system"):
                where.append(f"n.{actor.rstrip(':')} > 0")
            else:
                where.append("n.node IN (SELECT node FROM events WHERE lineage = $lineage AND actor = $actor)")
                params["actor"] = actor
        if flt.level is not None:
            where.append(f"({LEVEL_SQL.format(p='n.')}) = $level")
            params["level"] = int(flt.level)
        if flt.min_score is not None:
            if not params["metric"]:
                return [], 0
            where.append(f"n.node IN (SELECT node FROM ({_best_sql('node_index')}) WHERE "
                         "CASE WHEN $hib THEN best >= $min ELSE best <= $min END)")
            params["min"] = float(flt.min_score)
            params["hib"] = (metric or self.primary_metric(lineage)).higher_is_better
        if flt.signal:
            flagged = self.signal_map(lineage)
            ids = [n for n, found in flagged.items() if any(f["signal"] == flt.signal for f in found)]
            where.append("n.node IN (SELECT unnest($ids))")
            params["ids"] = ids
        cond = " AND ".join(f"({w})" for w in where)
        return self._page(_rows_sql(cond, limit=f"LIMIT {int(limit)}"), params)

    # -- live --------------------------------------------------------------------------------

    def changes_since(self, lineage: str, seq: int, *, metric: Metric | None = None) -> Changes:
        """New nodes and nodes whose making changed after ``seq`` (read from the index, so
        call ``refresh_index`` first)."""
        params = self._params(lineage, metric, seq=seq)
        new = self._page(_rows_sql("n.created_seq > $seq"), params)[0]
        touched = self._page(_rows_sql("n.last_seq > $seq AND NOT (n.created_seq > $seq)"), params)[0]
        head = self.latest_seq()
        lineage_new = self._rows("SELECT count(*) AS n FROM node_index WHERE lineage <> ? AND created_seq > ?",
                                 [lineage, seq])[0]["n"]
        return Changes(head, new, touched, lineage_new > 0)


def _main_first(branches: list[str]) -> list[str]:
    return sorted(branches, key=lambda b: (b != "main", b))
