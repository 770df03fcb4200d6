"""Everything about one node, beside the tree: a header and six tabs.

Events (the timeline of its making), Diff (its code changes, highlighted), Scores (with the
change against its parent), Artifacts (datasets, checkpoints, diffs and snapshots, each
with its integrity), Involvement (who did each stage of the loop) and Signals (oversight
findings, each with the events that are its evidence).

Only the tab in view is loaded, in a worker, when the cursor rests on a node; results
for a node the cursor has left are dropped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from lineage.service import LEVELS, STAGES, LineageService, NodeDetail, NodeRow
from tui.format import (
    ACTOR_STYLE,
    INTEGRITY_STYLE,
    LEVEL_STYLE,
    OUTCOME_STYLE,
    SEVERITY_STYLE,
    badge,
    level_text,
    number,
    pct,
)
from tui.workers import ReportsWorkerErrors

TABS = ("events", "diff", "scores", "artifacts", "involvement", "signals")
TAB_TITLES = {
    "events": "Events", "diff": "Diff", "scores": "Scores", "artifacts": "Artifacts",
    "involvement": "Involvement", "signals": "Signals",
}
MAX_DIFF_LINES = 4000
# Tabs DuckDB computes for the whole lineage (projections); on a large lineage they wait for `x`.
WHOLE_LINEAGE_TABS = ("involvement", "signals")


class Deferred:
    """A whole-lineage tab not computed yet on a large lineage."""


class NodeDetailPane(ReportsWorkerErrors, Vertical):
    class Loaded(Message):
        def __init__(self, key: tuple[str, str], tab: str, detail: NodeDetail | None, data: Any) -> None:
            self.key = key
            self.tab = tab
            self.detail = detail
            self.data = data
            super().__init__()

    def __init__(self, service: LineageService, **kwargs) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.row: NodeRow | None = None
        self.detail: NodeDetail | None = None
        self.best_node: str | None = None
        self._loaded: dict[str, Any] = {}
        self._force = False
        self._primed: tuple[NodeRow, NodeDetail | None, list | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("select a node", style="dim"), id="node-header")
        with TabbedContent(id="tabs", initial="events"):
            with TabPane("Events", id="events"):
                yield DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Diff", id="diff"), VerticalScroll(id="diff-scroll"):
                yield Static(id="diff-body")
            with TabPane("Scores", id="scores"):
                yield DataTable(id="scores-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Artifacts", id="artifacts"):
                yield DataTable(id="artifacts-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Involvement", id="involvement"), VerticalScroll():
                yield Static(id="involvement-body")
            with TabPane("Signals", id="signals"), VerticalScroll():
                yield Static(id="signals-body")

    def on_mount(self) -> None:
        self.query_one("#events-table", DataTable).add_columns("seq", "UTC", "kind", "actor", "what")
        self.query_one("#scores-table", DataTable).add_columns("metric", "split", "value", "vs parent", "latest", "by", "seq")
        self.query_one("#artifacts-table", DataTable).add_columns("kind", "name", "role", "sha256", "size", "integrity", "detail")

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or "events"

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    # -- which node -------------------------------------------------------------------------

    def prime(self, row: NodeRow, detail: NodeDetail | None, events: list | None) -> None:
        """The first screen's node, already read: shown as soon as the cursor lands on it."""
        self._primed = (row, detail, events)

    def show_row(self, row: NodeRow | None) -> None:
        """Show a node's header now; its tabs load when ``load`` is called."""
        same = row is not None and self.row is not None and (row.lineage, row.node) == (self.row.lineage, self.row.node)
        self.row = row
        if not same:
            self.detail = None
            self._loaded.clear()
            self._force = False
        primed, self._primed = self._primed, None
        if row is not None and primed is not None and (primed[0].lineage, primed[0].node) == (row.lineage, row.node):
            self.detail = primed[1]
            if primed[2] is not None and self.active_tab == "events":
                self._loaded["events"] = primed[2]
                self._draw_events(primed[2])
        self._draw_header()

    def refresh_node(self) -> None:
        """Reload what is shown (new events arrived for this node)."""
        self._loaded.clear()
        self.load()

    def load(self) -> None:
        if self.row is None:
            return
        tab = self.active_tab
        if tab in self._loaded:
            return
        self._fetch(self.row, tab, need_detail=self.detail is None, force=self._force)

    def compute_whole_lineage(self) -> None:
        """Compute the involvement and signals tabs even on a large lineage."""
        if self.row is None or self.active_tab not in WHOLE_LINEAGE_TABS:
            return
        self._force = True
        for tab in WHOLE_LINEAGE_TABS:
            self._loaded.pop(tab, None)
        getattr(self, f"_draw_{self.active_tab}")(None, computing=True)
        self.load()

    @work(thread=True, group="detail", exclusive=True, exit_on_error=False)
    def _fetch(self, row: NodeRow, tab: str, need_detail: bool, force: bool) -> None:
        svc = self.service
        lineage, node = row.lineage, row.node
        within = (row.first_seq, row.last_seq) if row.last_seq is not None else None
        detail = svc.node_detail(lineage, node, row) if need_detail else None
        if tab in WHOLE_LINEAGE_TABS and not force and svc.is_large(lineage):
            data = Deferred()
        elif tab == "events":
            data = svc.node_events(lineage, node, within=within)
        elif tab == "diff":
            data = svc.node_diffs(lineage, node, within=within)
        elif tab == "scores":
            data = svc.node_scores(lineage, node)
        elif tab == "artifacts":
            data = svc.node_artifacts(lineage, node, within=within)
        elif tab == "involvement":
            data = svc.node_involvement(lineage, node)
        else:
            data = svc.node_signals(lineage, node)
        self.post_message(self.Loaded((lineage, node), tab, detail, data))

    @on(Loaded)
    def _on_loaded(self, message: Loaded) -> None:
        message.stop()
        if self.row is None or message.key != (self.row.lineage, self.row.node):
            return
        if message.detail is not None:
            self.detail = message.detail
            self.row = message.detail.row
            self._draw_header()
        self._loaded[message.tab] = message.data
        getattr(self, f"_draw_{message.tab}")(message.data)

    @on(TabbedContent.TabActivated)
    def _on_tab(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self.load()

    # -- drawing -----------------------------------------------------------------------------

    def _draw_header(self) -> None:
        header = self.query_one("#node-header", Static)
        row = self.row
        if row is None:
            header.update(Text("no node selected", style="dim"))
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(row.node, "bold")
        if row.label and row.label != row.node:
            t.append(f"  {row.label}", "italic")
        if row.node == self.best_node:
            t.append("  ★ best", "bold yellow")
        t.append("\n")
        t.append(f"generation {row.generation}", "cyan")
        t.append(f" · branch {row.branch or '?'}")
        d = self.detail
        parents = d.known_parents if d else tuple(p for p in row.parents)
        t.append(" · parents " + (", ".join(parents) if parents else "none (root)"))
        if d and d.missing_parents:
            t.append(f" · missing {', '.join(d.missing_parents)}", "red")
        t.append(f" · {row.children} child" + ("" if row.children == 1 else "ren"))
        if d and d.merged_children:
            t.append(f" · merged into {', '.join(d.merged_children[:3])}", "magenta")
        if d and d.created_at:
            t.append(f"\ncreated {d.created_at:%Y-%m-%d %H:%M} UTC by ", "dim")
            kind = (d.created_by or "").split(":")[0]
            t.append(d.created_by or "?", ACTOR_STYLE.get(kind, ""))
        t.append("\n")
        metric = self.app.metric if hasattr(self.app, "metric") else None
        if row.best is not None and metric is not None:
            t.append(f"{metric.name}@{metric.split} ", "dim")
            t.append(number(row.best), "bold green")
            t.append("  ")
        t.append_text(badge(row))
        if row.level is not None:
            t.append(f"  {LEVELS[row.level].split(':')[0][3:]}", LEVEL_STYLE.get(row.level, ""))
        if row.signals:
            t.append("  ⚠ " + ", ".join(row.signals), SEVERITY_STYLE["warning"])
        header.update(t)

    def _draw_events(self, events) -> None:
        table = self.query_one("#events-table", DataTable)
        table.clear()
        # Fit the summary to the pane (the other columns are narrow and fixed).
        width = max(24, (table.size.width or self.size.width or 80) - 52)
        for e in events:
            kind = Text(e.kind, style="strike dim" if e.retracted else "")
            actor = Text(e.actor, style=ACTOR_STYLE.get(e.actor_kind, ""))
            summary = e.summary + (" (retracted)" if e.retracted else "")
            if len(summary) > width:
                summary = summary[: width - 1] + "…"
            what = Text(summary, style="dim" if e.retracted else "")
            table.add_row(str(e.seq), f"{e.occurred_at:%m-%d %H:%M}", kind, actor, what, key=str(e.seq))

    def _draw_diff(self, diffs) -> None:
        body = self.query_one("#diff-body", Static)
        if not diffs:
            body.update(Text("no code diff recorded for this node", style="dim"))
            return
        parts = []
        for d in diffs:
            head = Text()
            head.append(f"seq {d.seq} ", "dim")
            head.append(d.actor, ACTOR_STYLE.get(d.actor.split(":")[0], ""))
            head.append(f"  +{d.lines_added} -{d.lines_removed}  ", "bold")
            head.append(", ".join(d.paths[:6]) + (" …" if len(d.paths) > 6 else ""), "cyan")
            parts.append(head)
            if d.text is None:
                parts.append(Text(d.problem or "diff text unavailable", style="red"))
                continue
            lines = d.text.splitlines()
            text = d.text
            if len(lines) > MAX_DIFF_LINES:
                text = "\n".join(lines[:MAX_DIFF_LINES])
            parts.append(Syntax(text, "diff", theme="ansi_dark", word_wrap=False, background_color="default"))
            if len(lines) > MAX_DIFF_LINES:
                parts.append(Text(f"… {len(lines) - MAX_DIFF_LINES} more lines (checkout the node to see it all)",
                                  style="italic dim"))
            parts.append(Text(""))
        body.update(Group(*parts))

    def _draw_scores(self, scores) -> None:
        table = self.query_one("#scores-table", DataTable)
        table.clear()
        for s in scores:
            if s.parent_value is None or s.retracted:
                vs = Text("–", style="dim")
            else:
                delta = s.value - s.parent_value
                better = delta > 0 if s.higher_is_better else delta < 0
                vs = Text(f"{delta:+.4g}", style="green" if better else ("red" if delta else "dim"))
            value = Text(number(s.value), style="strike dim" if s.retracted else "bold")
            table.add_row(s.metric, s.split, value, vs, "✓" if s.latest else "", s.actor, str(s.seq))
        if not scores:
            table.add_row(Text("no scores", style="dim"), "", "", "", "", "", "")

    def _draw_artifacts(self, artifacts) -> None:
        table = self.query_one("#artifacts-table", DataTable)
        table.clear()
        for a in artifacts:
            name = a.name or a.uri or "–"
            size = f"{a.bytes:,}" if a.bytes is not None else ("" if a.rows is None else f"{a.rows:,} rows")
            integrity = Text(a.integrity, style=INTEGRITY_STYLE.get(a.integrity, ""))
            table.add_row(a.artifact, name, a.role or (f"step {a.step}" if a.step is not None else ""),
                          (a.content_hash or "")[:12], size, integrity, a.detail)
        if not artifacts:
            table.add_row(Text("no datasets, checkpoints or diffs", style="dim"), "", "", "", "", "", "")

    def _deferred(self, body: Static, what: str, computing: bool) -> None:
        if computing:
            body.update(Text(f"computing {what} for the whole lineage…", style="dim"))
        else:
            body.update(Text.assemble(
                (f"{what.capitalize()} is computed by DuckDB for the whole lineage at once, and this lineage is "
                 "large (seconds, and gigabytes of memory).\n\n", ""),
                ("press x to compute it", "bold"), (" · the tree's marks and the Scores tab need no wait", "dim")))

    def _draw_involvement(self, inv, computing: bool = False) -> None:
        body = self.query_one("#involvement-body", Static)
        if computing or isinstance(inv, Deferred):
            self._deferred(body, "involvement", computing)
            return
        if not inv:
            body.update(Text("no involvement: this node has no events of its making", style="dim"))
            return
        level = inv.get("autonomy_level")
        head = Text()
        head.append(level_text(level), "bold " + LEVEL_STYLE.get(level, ""))
        head.append(f"  {inv.get('level_text', '')}\n")
        if inv.get("self_built"):
            head.append("self-built", "bold magenta")
            head.append(f": made by its ancestor {', '.join(inv.get('producer_nodes') or [])}; "
                        f"recursion depth {inv.get('recursion_depth', 0)}\n")
        shares = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        shares.add_column("share of")
        for kind in ("human", "ai", "system"):
            shares.add_column(kind, justify="right", style=ACTOR_STYLE[kind])
        shares.add_row("events", *(pct(inv.get(f"{k}_share")) + "%" for k in ("human", "ai", "system")))
        shares.add_row("diff lines", *(pct(inv.get(f"{k}_line_share")) + "%" for k in ("human", "ai", "system")))
        shares.add_row("decisions", *(pct(inv.get(f"{k}_decision_share")) + "%" for k in ("human", "ai", "system")))
        stages = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        stages.add_column("stage")
        stages.add_column("by")
        for kind in ("human", "ai", "system"):
            stages.add_column(kind, justify="right", style=ACTOR_STYLE[kind])
        counts = inv.get("stage_counts", {})
        for stage in STAGES:
            who = inv.get(stage) or "none"
            c = counts.get(stage, {})
            stages.add_row(stage, Text(who, style=ACTOR_STYLE.get(who, "dim")),
                           *(str(c.get(k, 0) or "·") for k in ("human", "ai", "system")))
        body.update(Group(head, shares, Text(""), stages))

    def _draw_signals(self, signals, computing: bool = False) -> None:
        body = self.query_one("#signals-body", Static)
        if computing or isinstance(signals, Deferred):
            self._deferred(body, "oversight signals", computing)
            return
        if not signals:
            body.update(Text("no oversight signal for this node", style="green"))
            return
        parts = []
        for s in signals:
            head = Text()
            head.append(f"{s.severity.upper():<8}", SEVERITY_STYLE.get(s.severity, ""))
            head.append(f" {s.signal}", "bold")
            if s.metric:
                head.append(f" ({s.metric})", "dim")
            head.append(f"\n  {s.detail}")
            parts.append(head)
            for e in s.evidence:
                line = Text("    ")
                line.append(f"seq {e.seq:<6}", "dim")
                line.append(f" {e.kind:<12}")
                line.append(f" {e.actor:<22}", ACTOR_STYLE.get(e.actor_kind, ""))
                line.append(f" {e.summary}")
                parts.append(line)
            parts.append(Text(""))
        body.update(Group(*parts))


__all__ = ["NodeDetailPane", "OUTCOME_STYLE", "TABS", "TAB_TITLES"]
