"""The main screen: the genealogy on the left, the selected node on the right."""

from __future__ import annotations

import getpass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from lineage.service import Changes, Filter, LineageInfo, Metric, NodeRow, Opening, first_lineage
from tui import actions
from tui.screens.dialogs import ChoiceDialog, ConfirmDialog, FilterDialog, InputDialog
from tui.screens.generations import GenerationsScreen
from tui.screens.replay import DEFAULT_TIMEOUT, CompareScreen, ReplayScreen
from tui.widgets.detail import TABS, NodeDetailPane
from tui.widgets.genealogy import GenealogyTree, View
from tui.workers import ReportsWorkerErrors

DETAIL_DELAY = 0.08  # seconds the cursor rests on a node before its detail loads
EXTRAS_DELAY = 0.3  # seconds after opening a lineage before the lineage-wide facts are computed


class MainScreen(ReportsWorkerErrors, Screen):
    extras_pending = False  # True from opening a lineage until its lineage-wide facts are loaded

    BINDINGS = [
        Binding("question_mark", "app.help", "Help", tooltip="Every key and what the tree's marks mean"),
        Binding("slash", "find", "Find", tooltip="Search and filter nodes: id or label, actor, autonomy level, signal, score"),
        Binding("o", "goto", "Go to", tooltip="Jump to a node by id or label (a prefix is enough)"),
        Binding("asterisk", "best", "Best", tooltip="Jump to the best node by the lineage's metric"),
        Binding("0", "root", "Root", show=False, tooltip="Back to the first root"),
        Binding("p", "other_parent", "Other parent", show=False, tooltip="Jump to the node's further parent (merge, crossover)"),
        Binding("L", "pick_lineage", "Lineage", tooltip="Switch lineage"),
        Binding("B", "pick_branch", "Branch view", tooltip="Show one branch (from where it forks) or all"),
        Binding("m", "next_metric", "Metric", show=False, tooltip="Cycle the metric the tree and charts show"),
        Binding("g", "generations", "Generations", tooltip="Best score and human share per generation, as charts"),
        Binding("s", "app.sql", "SQL", tooltip="Read-only SQL console with history"),
        Binding("r", "replay", "Replay", tooltip="Re-run the node's recorded commands (shows them, asks first), report reproducibility"),
        Binding("c", "checkout", "Checkout", tooltip="Write the node's code tree to a directory"),
        Binding("b", "branch", "Branch here", tooltip="Start a named branch at the selected node"),
        Binding("C", "compare", "Compare", tooltip="Compare two branches side by side"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("x", "compute", "Compute involvement/signals (large lineage)", show=False),
        Binding("f5", "app.refresh_store", "Refresh", show=False),
        *(Binding(str(i + 1), f"tab('{tab}')", f"{tab.capitalize()} tab", show=False) for i, tab in enumerate(TABS)),
        Binding("left_square_bracket", "prev_tab", "Previous tab", show=False),
        Binding("right_square_bracket", "next_tab", "Next tab", show=False),
    ]

    class Planned(Message):
        def __init__(self, plan, error: str | None) -> None:
            self.plan = plan
            self.error = error
            super().__init__()

    class ActionDone(Message):
        def __init__(self, text: str, error: bool = False, refresh: bool = False) -> None:
            self.text = text
            self.error = error
            self.refresh = refresh
            super().__init__()

    class Extras(Message):
        """Slow, lineage-wide facts computed after the first screen: best node, signals."""

        def __init__(self, lineage: str, best: NodeRow | None, signals: bool) -> None:
            self.lineage = lineage
            self.best = best
            self.signals = signals
            super().__init__()

    def __init__(self) -> None:
        super().__init__()
        self.lineages: list[LineageInfo] = []
        self.lineage: str | None = None
        self.branch: str | None = None
        self.metric: Metric | None = None
        self.flt = Filter()
        self._detail_timer: Timer | None = None

    @property
    def service(self):
        return self.app.service

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="body"):
            yield GenealogyTree(self.app.service, id="tree")
            yield NodeDetailPane(self.app.service, id="detail")
        yield Footer()

    @property
    def genealogy(self) -> GenealogyTree:
        return self.query_one(GenealogyTree)

    @property
    def detail(self) -> NodeDetailPane:
        return self.query_one(NodeDetailPane)

    def on_mount(self) -> None:
        self.genealogy.focus()
        self.draw_status()

    # -- the lineage shown -------------------------------------------------------------------

    def set_lineages(self, lineages: list[LineageInfo], prefer: str | None = None, *,
                     opening: Opening | None = None) -> None:
        """Know these lineages; open one if none is open yet (``opening``: the first
        screen, already read, whose lineage is then the one opened)."""
        self.lineages = lineages
        names = [li.name for li in lineages]
        if self.lineage in names:
            return
        if opening is not None and opening.lineage in names:
            self.open_lineage(opening.lineage, opening=opening)
        elif (name := first_lineage(lineages, prefer)) is not None:
            self.open_lineage(name)
        else:
            self.genealogy.show(View())
            self.draw_status()

    def open_lineage(self, name: str, branch: str | None = None, *, opening: Opening | None = None) -> None:
        info = next((li for li in self.lineages if li.name == name), None)
        self.lineage = name
        self.branch = branch
        self.metric = info.metric if info else None
        self.app.metric = self.metric
        self.flt = Filter()
        self.genealogy.best_node = None
        self.detail.best_node = None
        if opening is not None and opening.roots is not None and opening.roots.rows:
            self.detail.prime(opening.roots.rows[0], opening.detail, opening.events)
        self.genealogy.show(View(name, branch, self.flt), opening=opening)
        self.draw_status()
        # after the first screen is up: these read the whole lineage
        self.extras_pending = True  # lets tests (and anyone) know the lineage-wide facts are coming
        self.set_timer(EXTRAS_DELAY, lambda: self._load_extras(name, self.branch, self.metric, refresh=False))

    @work(thread=True, group="extras", exclusive=True, exit_on_error=False)
    def _load_extras(self, lineage: str, branch: str | None, metric: Metric | None, refresh: bool) -> None:
        try:
            if lineage != self.lineage:
                return
            best = self.service.best_node(lineage, branch, metric=metric)
            self.post_message(self.Extras(lineage, best, False))
            if self.service.is_large(lineage) and not self.service.signals_known(lineage):
                return  # the tree's signal marks would cost seconds and gigabytes: not without being asked
            self.service.signal_map(lineage, refresh=refresh)
            self.post_message(self.Extras(lineage, best, True))
        finally:
            self.extras_pending = False

    @on(Extras)
    def _extras(self, message: Extras) -> None:
        if message.lineage != self.lineage:
            return
        best = message.best.node if message.best else None
        self.genealogy.best_node = best
        self.detail.best_node = best
        if message.signals:
            # the tree's rows were read before the signals were known: read them again
            self._refresh_rows()
        else:
            self.genealogy.relabel_all()
        self.detail._draw_header()
        self.draw_status()

    @work(thread=True, group="rows", exclusive=True, exit_on_error=False)
    def _refresh_rows(self) -> None:
        lineage = self.lineage
        ids = list(self.genealogy.shown_rows())
        rows = self.service.nodes(lineage, ids, metric=self.metric) if lineage and ids else []
        self.app.call_from_thread(self._apply_rows, lineage, rows)

    def _apply_rows(self, lineage: str | None, rows: list[NodeRow]) -> None:
        if lineage != self.lineage:
            return
        self.genealogy.update_rows(rows)
        current = self.genealogy.current_row()
        if current is not None:
            self.detail.show_row(current)

    def draw_status(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" lineage ", "bold reverse")
        t.append(f" {self.lineage or '(none)'}", "bold")
        t.append("  branch ", "dim")
        t.append(self.branch or "all")
        if self.metric is not None:
            t.append("  metric ", "dim")
            t.append(f"{self.metric.name}@{self.metric.split} {'↑' if self.metric.higher_is_better else '↓'}", "cyan")
        info = next((li for li in self.lineages if li.name == self.lineage), None)
        if info is not None:
            t.append(f"  {info.nodes:,} nodes", "dim")
        if self.genealogy.best_node:
            t.append("  ★ ", "yellow")
            t.append(self.genealogy.best_node)
        if not self.flt.empty:
            t.append("  filter ", "bold black on yellow")
            t.append(" " + _describe(self.flt), "yellow")
        app = self.app
        t.append(f"  seq {app.seen_seq:,}", "dim")
        if app.live:
            t.append("  ● live", "green")
        if app.index_note:
            t.append(f"  {app.index_note}", "yellow")
        self.query_one("#status", Static).update(t)

    # -- cursor and detail ----------------------------------------------------------------------

    @on(GenealogyTree.RowFocused)
    def _focused(self, message: GenealogyTree.RowFocused) -> None:
        self.detail.show_row(message.row)
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY, self.detail.load)

    @on(GenealogyTree.Revealed)
    def _revealed(self, message: GenealogyTree.Revealed) -> None:
        if not message.found:
            self.notify(f"{message.node} is not shown here (another branch view?)", severity="warning")

    # -- live -------------------------------------------------------------------------------------

    def apply_changes(self, changes: Changes) -> None:
        self.genealogy.apply_changes(changes.new_nodes, changes.touched)
        current = self.genealogy.current_row()
        changed = {r.node for r in changes.new_nodes + changes.touched}
        if current is not None and current.node in changed:
            fresh = next(r for r in changes.new_nodes + changes.touched if r.node == current.node)
            self.detail.show_row(fresh)
            self.detail.refresh_node()
        if self.lineage:
            self._load_extras(self.lineage, self.branch, self.metric, refresh=True)
        self.draw_status()

    # -- navigation actions ----------------------------------------------------------------------

    def action_compute(self) -> None:
        self.detail.compute_whole_lineage()

    def action_tab(self, tab: str) -> None:
        self.detail.show_tab(tab)

    def action_next_tab(self) -> None:
        i = TABS.index(self.detail.active_tab)
        self.detail.show_tab(TABS[(i + 1) % len(TABS)])

    def action_prev_tab(self) -> None:
        i = TABS.index(self.detail.active_tab)
        self.detail.show_tab(TABS[(i - 1) % len(TABS)])

    def action_find(self) -> None:
        if self.lineage is None:
            return

        def done(flt: Filter | None) -> None:
            if flt is None:
                return
            self.flt = flt
            self.genealogy.show(View(self.lineage, self.branch, flt))
            self.draw_status()

        self.app.push_screen(FilterDialog(self.flt, self.metric.name if self.metric else None), done)

    def action_clear_filter(self) -> None:
        if not self.flt.empty:
            current = self.genealogy.current_row()
            self.flt = Filter()
            self.genealogy.show(View(self.lineage, self.branch, self.flt))
            if current is not None:
                self.genealogy.reveal(current.node)
            self.draw_status()

    def action_goto(self) -> None:
        if self.lineage is None:
            return

        def done(values: dict | None) -> None:
            if values and values.get("node"):
                self._resolve(values["node"])

        self.app.push_screen(InputDialog("Go to node", [("node", "node id or label (or a prefix of one)", "")],
                                         ok="Go"), done)

    @work(thread=True, group="resolve", exclusive=True, exit_on_error=False)
    def _resolve(self, text: str) -> None:
        row = self.service.resolve(self.lineage, text)
        if row is None:
            self.post_message(self.ActionDone(f"no node matches {text!r} in {self.lineage}", error=True))
        else:
            self.app.call_from_thread(self.genealogy.reveal, row.node)

    def action_best(self) -> None:
        if self.genealogy.best_node:
            self.genealogy.reveal(self.genealogy.best_node)
        else:
            self.notify("no scores yet: no best node")

    def action_root(self) -> None:
        if self.genealogy.root.children:
            self.genealogy.move_cursor(self.genealogy.root.children[0])
            self.genealogy.scroll_home(animate=False)

    def action_other_parent(self) -> None:
        row = self.genealogy.current_row()
        if row is None or not row.other_parents:
            self.notify("this node has a single parent")
            return
        parents = list(row.other_parents)
        self.genealogy.reveal(parents[0])

    def action_pick_lineage(self) -> None:
        if not self.lineages:
            return
        choices = [(li.name, f"{li.name}  ({li.nodes:,} nodes, {len(li.branches)} branches)") for li in self.lineages]

        def done(name: str | None) -> None:
            if name:
                self.open_lineage(name)

        self.app.push_screen(ChoiceDialog("Lineage", choices, current=self.lineage), done)

    def action_pick_branch(self) -> None:
        if self.lineage is None:
            return
        info = next((li for li in self.lineages if li.name == self.lineage), None)
        branches = list(info.branches) if info else []
        choices = [("*", "all branches")] + [(b, b) for b in branches]

        def done(choice: str | None) -> None:
            if choice is None:
                return
            self.branch = None if choice == "*" else choice
            self.flt = Filter()
            self.genealogy.show(View(self.lineage, self.branch, self.flt))
            self._load_extras(self.lineage, self.branch, self.metric, refresh=False)
            self.draw_status()

        self.app.push_screen(ChoiceDialog("Show branch", choices, current=self.branch or "*"), done)

    def action_next_metric(self) -> None:
        if self.lineage is None:
            return
        self._cycle_metric(self.lineage, self.metric)

    @work(thread=True, group="metric", exclusive=True, exit_on_error=False)
    def _cycle_metric(self, lineage: str, current: Metric | None) -> None:
        metrics = self.service.metrics(lineage)
        if not metrics:
            return
        i = metrics.index(current) if current in metrics else -1
        self.app.call_from_thread(self._set_metric, metrics[(i + 1) % len(metrics)])

    def _set_metric(self, metric: Metric) -> None:
        self.metric = metric
        self.app.metric = metric
        self.genealogy.show(View(self.lineage, self.branch, self.flt), keep_state=True)
        self._load_extras(self.lineage, self.branch, metric, refresh=False)
        self.draw_status()

    def action_generations(self) -> None:
        if self.lineage:
            self.app.push_screen(GenerationsScreen(self.lineage, self.branch, self.metric))

    # -- actions on the store -----------------------------------------------------------------------

    def _selected(self) -> NodeRow | None:
        row = self.genealogy.current_row()
        if row is None:
            self.notify("select a node first", severity="warning")
        return row

    def action_replay(self) -> None:
        row = self._selected()
        if row is not None:
            self._plan(row.lineage, row.node)

    @work(thread=True, group="plan", exclusive=True, exit_on_error=False)
    def _plan(self, lineage: str, node: str) -> None:
        try:
            self.post_message(self.Planned(actions.plan_replay(self.service, lineage, node), None))
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.post_message(self.Planned(None, str(exc)))

    @on(Planned)
    def _planned(self, message: Planned) -> None:
        if message.error:
            self.app.show_error("Cannot replay this node", message.error)
            return
        plan = message.plan
        if not plan.runs:
            self.app.show_error("Nothing to replay", f"{plan.node.node} has no recorded run commands.")
            return
        body = Text()
        body.append(f"{plan.node.node}", "bold")
        body.append(f" ({plan.node.lineage} · {plan.node.branch}) will be rebuilt from its diffs in a fresh "
                    "sandbox directory, and these recorded commands run there:\n\n")
        for line in plan.describe():
            body.append(f"  {line}\n", "cyan")
        body.append(f"\nThe scores they report are compared with the recorded ones and the outcome is recorded "
                    f"as a replay event. Timeout {DEFAULT_TIMEOUT:.0f}s per command.")

        def done(ok: bool) -> None:
            if ok:
                self.app.push_screen(ReplayScreen(plan))
            else:
                self.notify("replay cancelled: nothing ran")

        self.app.push_screen(ConfirmDialog("Replay: run these commands?", body, ok="Run",
                                           warning="The commands run as you: the sandbox is a fresh directory with "
                                                   "a scrubbed environment, not a security boundary."), done)

    def action_checkout(self) -> None:
        row = self._selected()
        if row is None:
            return

        def done(values: dict | None) -> None:
            if values and values.get("dest"):
                self._checkout(row.lineage, row.node, values["dest"])

        self.app.push_screen(InputDialog(f"Checkout {row.node}", [("dest", "write its code tree to the directory",
                                                                   f"./checkout-{row.node}")], ok="Checkout",
                                         note="The tree is rebuilt from the diff chain and checked against the "
                                              "recorded tree hashes; the directory must be new or empty."), done)

    @work(thread=True, group="checkout", exclusive=True, exit_on_error=False)
    def _checkout(self, lineage: str, node: str, dest: str) -> None:
        try:
            co = actions.checkout(self.service, lineage, node, dest)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.post_message(self.ActionDone(f"checkout failed: {exc}", error=True))
            return
        note = "" if co.artifacts_ok else " (some datasets or checkpoints are missing or changed)"
        self.post_message(self.ActionDone(f"checked out {node}: {co.files} files in {co.dest} "
                                          f"(tree {co.tree_hash[:12]}){note}"))

    def action_branch(self) -> None:
        row = self._selected()
        if row is None:
            return

        def done(values: dict | None) -> None:
            if values and values.get("name"):
                self._branch(row.lineage, row.node, values["name"], values.get("actor") or _default_actor())

        self.app.push_screen(InputDialog(f"Branch from {row.node}", [
            ("name", "new branch name", ""),
            ("actor", "recorded as (human:<name>, ai:<model>, system:<tool>)", _default_actor()),
        ], ok="Create branch", note="Records a branch_created event; later events recorded on the branch extend it."),
            done)

    @work(thread=True, group="branch", exclusive=True, exit_on_error=False)
    def _branch(self, lineage: str, node: str, name: str, actor: str) -> None:
        try:
            ack = actions.create_branch(self.service, lineage, node, name, actor)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.post_message(self.ActionDone(f"branch not created: {exc}", error=True))
            return
        self.post_message(self.ActionDone(f"branch {name!r} created at {node} (seq {ack.seq})", refresh=True))

    def action_compare(self) -> None:
        if self.lineage is None:
            return
        info = next((li for li in self.lineages if li.name == self.lineage), None)
        branches = list(info.branches) if info else []
        if len(branches) < 2:
            self.notify("this lineage has a single branch; b creates one at the selected node")
            return
        default_b = self.branch if self.branch and self.branch != branches[0] else branches[1]

        def done(values: dict | None) -> None:
            if values and values.get("a") and values.get("b"):
                self.app.push_screen(CompareScreen(self.lineage, values["a"], values["b"]))

        self.app.push_screen(InputDialog("Compare branches", [("a", "branch", branches[0]),
                                                              ("b", "with branch", default_b)], ok="Compare",
                                         note="branches: " + ", ".join(branches)), done)

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        if message.error:
            self.app.show_error("Action failed", message.text)
        else:
            self.notify(message.text, timeout=6)
        if message.refresh:
            self.app.refresh_now()


def _describe(flt: Filter) -> str:
    parts = []
    if flt.text:
        parts.append(f"“{flt.text}”")
    if flt.actor:
        parts.append(f"actor {flt.actor}")
    if flt.level is not None:
        parts.append(f"L{flt.level}")
    if flt.signal:
        parts.append(flt.signal)
    if flt.min_score is not None:
        parts.append(f"score ≥ {flt.min_score:g}")
    return ", ".join(parts) + " (esc clears)"


def _default_actor() -> str:
    try:
        return f"human:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name on this system
        return "human:me"
