"""The SQL console: read-only queries over the store, results in a table, with a history.

The same door as ``lineage sql``: statements that could change anything are refused with
the reason, and any error is shown under the query; the console never crashes on one.
Up and down in the query line walk the history (kept in a file when the app is given one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from lineage.errors import LineageError
from tui.workers import ReportsWorkerErrors

ROW_LIMIT = 10_000
EXAMPLES = [
    "SELECT kind, count(*) AS events FROM events GROUP BY kind ORDER BY events DESC",
    "SELECT node, label, generation, status, is_best FROM nodes ORDER BY created_seq",
    "SELECT node, autonomy_level, human_share, self_built, recursion_depth FROM involvement",
    "SELECT node, signal, severity, detail FROM signals",
    "SELECT generation, nodes, human_share, mean_autonomy FROM involvement_by_generation",
]


class SqlHistory:
    """Queries run, newest last; persisted one JSON string per line when given a file."""

    def __init__(self, path: Path | None = None, limit: int = 500) -> None:
        self.path = path
        self.limit = limit
        self.items: list[str] = []
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, str):
                    self.items.append(item)
        self.items = self.items[-limit:]

    def add(self, query: str) -> None:
        if self.items and self.items[-1] == query:
            return
        self.items.append(query)
        self.items = self.items[-self.limit:]
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(query) + "\n")
            except OSError:
                pass  # history is a convenience; a read-only home must not break the console


class SqlScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("ctrl+h", "toggle_history", "History"),
        Binding("up", "history_prev", "Previous query", show=False),
        Binding("down", "history_next", "Next query", show=False),
        Binding("f6", "focus_results", "Results", show=False),
    ]

    class Finished(Message):
        def __init__(self, query: str, table: pa.Table | None, error: str | None) -> None:
            self.query = query
            self.table = table
            self.error = error
            super().__init__()

    def __init__(self, history: SqlHistory) -> None:
        super().__init__()
        self.history = history
        self._pos: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="sql"):
            yield Label(Text.assemble(("SQL console", "bold"), ("  read-only · enter runs · ↑↓ history · "
                                                                  "tables: events, nodes, edges, scores, artifacts, "
                                                                  "involvement, signals", "dim")))
            yield Input(placeholder=EXAMPLES[0], id="sql-input")
            yield Static("", id="sql-status")
            yield OptionList(id="sql-history", classes="hidden")
            yield DataTable(id="sql-results", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sql-input", Input).focus()
        self._status(Text("type a query and press enter (examples: ↑ with an empty history)", style="dim"))

    def _status(self, text: Text) -> None:
        self.query_one("#sql-status", Static).update(text)

    @on(Input.Submitted, "#sql-input")
    def _run(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            return
        self.history.add(query)
        self._pos = None
        self._status(Text("running…", style="dim"))
        self._execute(query)

    @work(thread=True, exclusive=True, group="sql", exit_on_error=False)
    def _execute(self, query: str) -> None:
        try:
            table = self.app.service.sql(query, limit=ROW_LIMIT + 1)
            self.post_message(self.Finished(query, table, None))
        except LineageError as exc:
            self.post_message(self.Finished(query, None, str(exc)))
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised into the UI
            self.post_message(self.Finished(query, None, f"{type(exc).__name__}: {exc}"))

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        results = self.query_one("#sql-results", DataTable)
        if message.error is not None:
            self._status(Text(f"error: {message.error}", style="bold red"))
            return
        table = message.table
        results.clear(columns=True)
        if table is None or table.num_columns == 0:
            self._status(Text("ok: no result set", style="green"))
            return
        more = table.num_rows > ROW_LIMIT
        if more:
            table = table.slice(0, ROW_LIMIT)
        results.add_columns(*table.column_names)
        for row in table.to_pylist():
            results.add_row(*(_cell(v) for v in row.values()))
        note = f"{table.num_rows:,} row" + ("" if table.num_rows == 1 else "s")
        if more:
            note += f" (first {ROW_LIMIT:,} shown; add LIMIT or aggregate)"
        self._status(Text(note, style="green"))

    # -- history --------------------------------------------------------------------------------

    def _items(self) -> list[str]:
        return self.history.items or EXAMPLES

    def action_history_prev(self) -> None:
        items = self._items()
        self._pos = len(items) - 1 if self._pos is None else max(0, self._pos - 1)
        self._set_input(items[self._pos])

    def action_history_next(self) -> None:
        items = self._items()
        if self._pos is None:
            return
        self._pos += 1
        if self._pos >= len(items):
            self._pos = None
            self._set_input("")
        else:
            self._set_input(items[self._pos])

    def _set_input(self, text: str) -> None:
        field = self.query_one("#sql-input", Input)
        field.value = text
        field.cursor_position = len(text)
        field.focus()

    def action_toggle_history(self) -> None:
        options = self.query_one("#sql-history", OptionList)
        if options.has_class("hidden"):
            options.clear_options()
            options.add_options([Option(q, id=str(i)) for i, q in enumerate(self._items())])
            options.remove_class("hidden")
            options.focus()
        else:
            options.add_class("hidden")
            self.query_one("#sql-input", Input).focus()

    @on(OptionList.OptionSelected, "#sql-history")
    def _history_picked(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#sql-history", OptionList).add_class("hidden")
        self._set_input(self._items()[int(event.option.id)])

    def action_clear(self) -> None:
        self._set_input("")
        self.query_one("#sql-results", DataTable).clear(columns=True)
        self._status(Text(""))

    def action_focus_results(self) -> None:
        self.query_one("#sql-results", DataTable).focus()

    def action_close(self) -> None:
        self.app.pop_screen()


def _cell(value) -> str | Text:
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"
