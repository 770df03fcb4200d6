"""The terminal UI: one factory, ``create_app``, used by ``lineage tui`` and by the tests.

The app reads the store only through ``lineage.service.LineageService``, always from
thread workers that end by posting a message; one handler turns any worker failure into
an error dialog, so a bad query or a locked store never takes the UI down.

Live: every ``poll_interval`` seconds a worker asks for the store's newest seq; when it
moved, the node index catches up and the screen applies what changed (new nodes appear,
changed ones are relabelled) without losing the cursor or what is expanded.
"""

from __future__ import annotations

import gc
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState

from lineage.errors import LineageError, StoreLocked
from lineage.service import Changes, LineageInfo, LineageService, Metric, Opening
from tui.launch import FirstScreen, create_app
from tui.screens.dialogs import ErrorDialog, HelpScreen
from tui.screens.main import MainScreen
from tui.screens.sql import SqlHistory, SqlScreen

# Workers whose failure is only worth a passing note (the next poll tries again).
QUIET_GROUPS = {"poll", "extras", "rows"}


class LineageApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "lineage"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("s", "sql", "SQL", show=False),
    ]

    class Ready(Message):
        def __init__(self, opening: Opening, seq: int) -> None:
            self.opening = opening
            self.seq = seq
            super().__init__()

    class StoreChanged(Message):
        def __init__(self, changes: Changes | None, lineages: list[LineageInfo] | None) -> None:
            self.changes = changes
            self.lineages = lineages
            super().__init__()

    class IndexProgress(Message):
        def __init__(self, note: str) -> None:
            self.note = note
            super().__init__()

    def __init__(
        self,
        service: LineageService,
        *,
        lineage: str | None = None,
        poll_interval: float | None = 1.0,
        sql_history: Path | None = None,
        banner: str | None = None,
        first_screen: FirstScreen | None = None,
    ) -> None:
        super().__init__()
        self.first_screen = first_screen  # being read since the app was created
        self.service = service
        self.prefer_lineage = lineage
        self.poll_interval = poll_interval
        self.sql_history = SqlHistory(sql_history)
        self.banner = banner
        self.metric: Metric | None = None
        self.seen_seq = 0
        self.index_seq = 0
        self.index_note = ""
        self.ready = False

    @property
    def live(self) -> bool:
        return self.poll_interval is not None

    @property
    def main(self) -> MainScreen:
        return self._main

    def on_mount(self) -> None:
        self.sub_title = str(self.service.path)
        self._main = MainScreen()
        self.push_screen(self._main)
        self._startup()
        if self.poll_interval:
            self.set_interval(self.poll_interval, self._poll)
        if self.banner:
            self.notify(self.banner, timeout=8)

    # -- startup and live refresh -----------------------------------------------------------------

    @work(thread=True, group="startup", exclusive=True, exit_on_error=False)
    def _startup(self) -> None:
        svc = self.service
        first, self.first_screen = self.first_screen, None
        opening, seq, indexed = (first or FirstScreen(svc, self.prefer_lineage)).result()
        if opening is None:
            def progress(done: int, head: int) -> None:
                self.post_message(self.IndexProgress(f"indexing {done:,}/{head:,} events…"))
            self.post_message(self.IndexProgress(f"indexing {seq - indexed:,} events…"))
            try:
                svc.refresh_index(progress=progress)
            except StoreLocked as exc:
                self.post_message(self.IndexProgress(f"index behind: {exc}"))
            indexed = svc.index_seq()
            opening = svc.opening(self.prefer_lineage)
        self.index_seq = indexed
        self.post_message(self.Ready(opening, seq))

    @on(Ready)
    def _on_ready_message(self, message: Ready) -> None:
        self.seen_seq = message.seq
        self.index_note = "" if self.index_seq >= message.seq else self.index_note
        self.ready = True
        self.main.set_lineages(message.opening.lineages, self.prefer_lineage, opening=message.opening)
        self.main.draw_status()
        # Everything made so far (modules, widgets, the first screen) lives as long as the
        # app: leave it out of garbage collection, whose full passes over it paused the UI
        # for up to 90 ms in the middle of an expand.
        self.call_after_refresh(gc.freeze)

    @on(IndexProgress)
    def _index_progress(self, message: IndexProgress) -> None:
        self.index_note = message.note
        if hasattr(self, "_main") and self._main.is_mounted:
            self._main.draw_status()

    def _poll(self) -> None:
        if self.ready:
            self._check_store()

    def refresh_now(self) -> None:
        """Look for new events now instead of at the next poll."""
        if self.ready:
            self._check_store()

    def action_refresh_store(self) -> None:
        self.refresh_now()

    @work(thread=True, group="poll", exclusive=True, exit_on_error=False)
    def _check_store(self) -> None:
        svc = self.service
        seq = svc.latest_seq()
        if seq <= self.seen_seq:
            return
        before = self.index_seq
        try:
            self.index_seq = svc.refresh_index()
        except StoreLocked:
            return  # a writer is busy; the next poll tries again
        self.seen_seq = seq
        lineage = self.main.lineage
        changes = svc.changes_since(lineage, before) if lineage else None
        lineages = svc.lineages() if changes is None or changes.lineages_changed or changes.new_nodes else None
        self.post_message(self.StoreChanged(changes, lineages))

    @on(StoreChanged)
    def _store_changed(self, message: StoreChanged) -> None:
        main = self.main
        if message.lineages is not None:
            main.lineages = message.lineages
            if main.lineage is None:
                main.set_lineages(message.lineages, self.prefer_lineage)
        if message.changes is not None:
            main.apply_changes(message.changes)
        main.draw_status()
        for screen in self.screen_stack:
            reload = getattr(screen, "load", None)
            if screen is not main and callable(reload) and screen.__class__.__name__ == "GenerationsScreen":
                reload()

    # -- screens ---------------------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for where, bindings in (("main", MainScreen.BINDINGS), ("app", self.BINDINGS),
                                ("tree", _tree_bindings()), ("SQL", SqlScreen.BINDINGS)):
            for b in bindings:
                key = _key_text(b.key)
                if key in seen or not b.description:
                    continue
                seen.add(key)
                rows.append((where, key, b.tooltip or b.description))
        self.push_screen(HelpScreen(rows))

    def action_sql(self) -> None:
        if not isinstance(self.screen, SqlScreen):
            self.push_screen(SqlScreen(self.sql_history))

    def show_error(self, title: str, message: str) -> None:
        self.push_screen(ErrorDialog(title, message))

    # -- one place for worker failures ----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_worker_error(event.worker)

    def report_worker_error(self, worker: Worker) -> None:
        error = worker.error
        text = str(error) if isinstance(error, LineageError) else f"{type(error).__name__}: {error}"
        if worker.group in QUIET_GROUPS:
            self.notify(text, severity="warning", timeout=4)
        else:
            self.show_error("Something went wrong", text)


def _tree_bindings():
    from textual.widgets import Tree

    from tui.widgets.genealogy import GenealogyTree

    return [*GenealogyTree.BINDINGS, *Tree.BINDINGS]


def _key_text(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "asterisk": "*", "left_square_bracket": "[",
             "right_square_bracket": "]", "escape": "esc"}
    return ",".join(names.get(k, k) for k in key.split(","))


__all__ = ["LineageApp", "create_app"]
