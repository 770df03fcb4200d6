"""Re-executing a node (progress, then the reproducibility report) and comparing branches."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Label, LoadingIndicator, Log, Static

from tui import actions
from tui.format import ACTOR_STYLE, OUTCOME_STYLE, pct
from tui.workers import ReportsWorkerErrors

DEFAULT_TIMEOUT = 600.0


class ReplayScreen(ReportsWorkerErrors, ModalScreen[None]):
    """Runs a consented replay plan and shows what it reproduced."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    class Progress(Message):
        def __init__(self, line: str) -> None:
            self.line = line
            super().__init__()

    class Done(Message):
        def __init__(self, report, error: str | None) -> None:
            self.report = report
            self.error = error
            super().__init__()

    def __init__(self, plan, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.plan = plan
        self.timeout = timeout
        self.running = True

    def compose(self) -> ComposeResult:
        node = self.plan.node
        with Vertical(classes="dialog wide replay"):
            yield Label(f"Replay {node.node}  ({node.lineage} · {node.branch})", classes="dialog-title")
            yield LoadingIndicator(id="replay-spinner")
            yield Log(id="replay-log", auto_scroll=True)
            with VerticalScroll(id="replay-report-scroll"):
                yield Static(id="replay-report")
            yield Static(Text("running… (esc closes this window when it is done)", style="dim"), id="replay-hint")

    def on_mount(self) -> None:
        self._run()

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _run(self) -> None:
        try:
            report = actions.run_replay(self.app.service, self.plan, timeout=self.timeout,
                                        on_progress=lambda line: self.post_message(self.Progress(line)))
            self.post_message(self.Done(report, None))
        except Exception as exc:  # noqa: BLE001 - shown in the window, never raised into the UI
            self.post_message(self.Done(None, f"{type(exc).__name__}: {exc}"))

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        self.query_one("#replay-log", Log).write_line(message.line)

    @on(Done)
    def _done(self, message: Done) -> None:
        self.running = False
        self.query_one("#replay-spinner").display = False
        hint = self.query_one("#replay-hint", Static)
        if message.error:
            self.query_one("#replay-report", Static).update(Text(message.error, style="bold red"))
            hint.update(Text("replay failed before it could report; esc to close", style="dim"))
            return
        self.query_one("#replay-report", Static).update(report_view(message.report))
        hint.update(Text("recorded as a replay event · esc to close", style="dim"))
        self.app.refresh_now()

    def action_close(self) -> None:
        if self.running:
            self.notify("the replay is still running; it will be recorded when it ends")
        self.dismiss(None)


def report_view(report) -> Group:
    head = Text()
    head.append(report.outcome.upper(), OUTCOME_STYLE.get(report.outcome, "bold"))
    head.append(f"  {report.node} in {report.duration_s:.1f}s")
    if report.reason:
        head.append(f"\n{report.reason}", "yellow")
    metrics = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("metric", "split", "recorded", "reproduced", "delta", "tolerance", "status"):
        metrics.add_column(col, justify="right" if col in ("recorded", "reproduced", "delta", "tolerance") else "left")
    for m in report.metrics:
        metrics.add_row(m.metric, m.split, f"{m.recorded:.6g}",
                        "–" if m.reproduced is None else f"{m.reproduced:.6g}",
                        "–" if m.delta is None else f"{m.delta:+.3g}", f"{m.tolerance:g}",
                        Text(m.status, style=OUTCOME_STYLE.get(m.status, "red" if m.status == "missing" else "")))
    runs = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("run (seq)", "status", "exit", "seconds", "as recorded"):
        runs.add_column(col)
    for r in report.runs:
        runs.add_row(str(r.seq), r.status, "–" if r.exit_code is None else str(r.exit_code), f"{r.duration_s:.2f}",
                     Text("yes" if r.reproduces_status else "no", style="green" if r.reproduces_status else "red"))
    parts = [head, Text(""), metrics, Text(""), runs]
    if report.recorded is not None:
        parts.append(Text(f"\nrecorded as seq {report.recorded.seq}", style="dim"))
    return Group(*parts)


class CompareScreen(ReportsWorkerErrors, Screen):
    """Two branches side by side, each with what happened on it since they parted."""

    BINDINGS = [Binding("escape,q", "close", "Back")]

    class Loaded(Message):
        def __init__(self, comparison, error: str | None) -> None:
            self.comparison = comparison
            self.error = error
            super().__init__()

    def __init__(self, lineage: str, a: str, b: str) -> None:
        super().__init__()
        self.lineage, self.a, self.b = lineage, a, b

    def compose(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield Label(Text.assemble(("Compare branches  ", "bold"), (f"{self.a}", "cyan"), ("  vs  ", "dim"),
                                      (f"{self.b}", "cyan"), (f"  in {self.lineage}", "dim")))
            with Horizontal(id="compare-sides"):
                with VerticalScroll():
                    yield Static(Text("loading…", style="dim"), id="side-a")
                with VerticalScroll():
                    yield Static(Text("loading…", style="dim"), id="side-b")
        yield Footer()

    def on_mount(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _fetch(self) -> None:
        try:
            self.post_message(self.Loaded(actions.compare(self.app.service, self.lineage, self.a, self.b), None))
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(self.Loaded(None, str(exc)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.error:
            self.query_one("#side-a", Static).update(Text(message.error, style="bold red"))
            self.query_one("#side-b", Static).update("")
            return
        c = message.comparison
        self.query_one("#side-a", Static).update(side_view(c.a, c.common))
        self.query_one("#side-b", Static).update(side_view(c.b, c.common))

    def action_close(self) -> None:
        self.app.pop_screen()


def side_view(side, common: str | None) -> Group:
    head = Text()
    head.append(side.branch, "bold cyan")
    if side.fork is not None:
        head.append(f"\nforked from {side.fork.from_branch or '?'} at {side.fork.from_node or '?'} (seq {side.fork.seq})",
                    "dim")
    elif common == side.branch:
        head.append(f"\nthe shared branch: events after the fork (seq > {side.after_seq})", "dim")
    head.append(f"\n{len(side.nodes)} nodes · {len(side.events)} events")
    best = Table(box=None, pad_edge=False, header_style="bold", title="best scores", title_justify="left")
    for col in ("metric", "split", "value", "node"):
        best.add_column(col)
    for b in side.best:
        best.add_row(b.metric, b.split, f"{b.value:.6g}", b.node or "")
    inv = side.involvement
    shares = Table(box=None, pad_edge=False, header_style="bold", title="involvement", title_justify="left")
    shares.add_column("share of")
    for kind in ("human", "ai", "system"):
        shares.add_column(kind, justify="right", style=ACTOR_STYLE[kind])
    for name, counter in (("events", inv.events), ("diff lines", inv.diff_lines), ("decisions", inv.decisions)):
        s = inv.shares(counter)
        shares.add_row(name, *(pct(s.get(k)) + "%" if s else "–" for k in ("human", "ai", "system")))
    levels = Text("levels: " + ", ".join(f"L{k}×{v}" if k is not None else f"L?×{v}"
                                         for k, v in sorted(inv.levels.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
    sig = Text("signals: " + (", ".join(f"{k} ({len(v)})" for k, v in side.signals.items()) or "none"),
               style="yellow" if side.signals else "green")
    replays = Text("replays: " + (", ".join(f"{k} {v}" for k, v in side.replays.items()) or "none"), style="dim")
    return Group(head, Text(""), best, Text(""), shares, levels, Text(""), sig, replays)
