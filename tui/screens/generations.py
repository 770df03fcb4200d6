"""The whole lineage over its generations: best score and human share, as charts."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, Sparkline, Static

from lineage.service import GenerationStat, Metric
from tui.format import ACTOR_STYLE, bar, number, pct
from tui.workers import ReportsWorkerErrors


class GenerationsScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("escape,g,q", "close", "Back"),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, stats: list[GenerationStat]) -> None:
            self.stats = stats
            super().__init__()

    def __init__(self, lineage: str, branch: str | None, metric: Metric | None) -> None:
        super().__init__()
        self.lineage = lineage
        self.branch = branch
        self.metric = metric
        self.stats: list[GenerationStat] = []

    def compose(self) -> ComposeResult:
        scope = f"{self.lineage}" + (f" · branch {self.branch}" if self.branch else " · all branches")
        metric = f"{self.metric.name}@{self.metric.split} ({'higher' if self.metric.higher_is_better else 'lower'} is better)" \
            if self.metric else "no scores recorded"
        with Vertical(id="generations"):
            yield Label(Text.assemble(("Generations  ", "bold"), (scope, ""), ("  ·  ", "dim"), (metric, "cyan")),
                        id="gen-title")
            with Horizontal(classes="spark-row"):
                yield Label("best score  ", classes="spark-label")
                yield Sparkline([], id="spark-best")
                yield Label("", id="spark-best-range", classes="spark-range")
            with Horizontal(classes="spark-row"):
                yield Label("human share ", classes="spark-label")
                yield Sparkline([], id="spark-human")
                yield Label("", id="spark-human-range", classes="spark-range")
            with VerticalScroll(id="gen-table-scroll"):
                yield Static(Text("loading…", style="dim"), id="gen-table")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="generations", exit_on_error=False)
    def _fetch(self) -> None:
        stats = self.app.service.generation_stats(self.lineage, self.branch, metric=self.metric)
        self.post_message(self.Loaded(stats))

    @on(Loaded)
    def _on_loaded(self, message: Loaded) -> None:
        self.stats = message.stats
        self.draw()

    def draw(self) -> None:
        stats = self.stats
        if not stats:
            self.query_one("#gen-table", Static).update(Text("no nodes", style="dim"))
            return
        best = [s.best for s in stats if s.best is not None]
        human = [float(s.human_share or 0) for s in stats]
        self.query_one("#spark-best", Sparkline).data = [s.best if s.best is not None else (min(best) if best else 0)
                                                         for s in stats]
        self.query_one("#spark-human", Sparkline).data = human
        if best:
            self.query_one("#spark-best-range", Label).update(f" {number(min(best))} … {number(max(best))}")
        self.query_one("#spark-human-range", Label).update(f" {pct(min(human))}% … {pct(max(human))}%")
        lo = min(best) if best else 0.0
        hi = max(best) if best else 1.0
        if hi == lo:
            lo = hi - (abs(hi) or 1.0)
        table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
        table.add_column("gen", justify="right", style="cyan")
        table.add_column("nodes", justify="right")
        table.add_column("best", justify="right", style="green")
        table.add_column("", width=28, no_wrap=True)
        table.add_column("human", justify="right", style=ACTOR_STYLE["human"])
        table.add_column("", width=20, no_wrap=True)
        table.add_column("AI", justify="right", style=ACTOR_STYLE["ai"])
        table.add_column("L3", justify="right", style="magenta")
        table.add_column("best node", style="dim")
        # Lower-is-better metrics: a longer bar is still a better score.
        hib = self.metric.higher_is_better if self.metric else True
        for s in stats:
            value_bar = ""
            if s.best is not None:
                value_bar = bar(s.best, lo, hi, 28) if hib else bar(hi + lo - s.best, lo, hi, 28)
            table.add_row(
                str(s.generation), f"{s.nodes:,}", number(s.best), Text(value_bar, style="green"),
                f"{pct(s.human_share)}%", Text(bar(float(s.human_share or 0), 0, 1, 20), style="green"),
                f"{pct(s.ai_share)}%", str(s.level3) if s.level3 else "·", s.best_node or "",
            )
        self.query_one("#gen-table", Static).update(table)

    def action_close(self) -> None:
        self.app.pop_screen()
