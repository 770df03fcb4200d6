"""Small modal dialogs: ask for text, pick from a list, confirm, show an error, filter, help."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from lineage.service import SIGNALS, Filter


class InputDialog(ModalScreen[dict | None]):
    """Ask for one or more values; dismisses with ``{name: value}`` or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]], *, ok: str = "OK", note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields  # (name, label, initial value)
        self.ok = ok
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            for name, label, value in self.fields:
                yield Label(label, classes="field-label")
                yield Input(value=value, id=f"field-{name}")
            if self.note:
                yield Static(Text(self.note, style="dim"), classes="dialog-note")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        first = self.query(Input).first()
        first.focus()

    def _values(self) -> dict:
        return {name: self.query_one(f"#field-{name}", Input).value.strip() for name, _, _ in self.fields}

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        idx = inputs.index(event.input)
        if idx < len(inputs) - 1:
            inputs[idx + 1].focus()
        else:
            self.dismiss(self._values())

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(self._values())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceDialog(ModalScreen[str | None]):
    """Pick one item from a list; dismisses with its id or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], *, current: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices  # (id, text)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*(Option(text, id=cid) for cid, text in self.choices), id="choices")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [cid for cid, _ in self.choices]
        if self.current in ids:
            options.highlighted = ids.index(self.current)
        options.focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """Show what will happen and ask for consent. Nothing runs unless the user says yes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "confirm", "Yes")]

    def __init__(self, title: str, body: Text | str, *, ok: str = "Run", warning: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.ok = ok
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body)
            if self.warning:
                yield Static(Text(self.warning, style="yellow"), classes="dialog-note")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.ok} (y)", variant="warning", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#ok")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class ErrorDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide error"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self.message))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", variant="error", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


_LEVELS = [("any level", "any"), ("L0 human-built", "0"), ("L1 AI assistant", "1"), ("L2 AI researcher", "2"),
           ("L3 AI → AI", "3")]


class FilterDialog(ModalScreen[Filter | None]):
    """Search and filter the genealogy: id or label, actor, autonomy level, signal, score."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: Filter, metric_name: str | None) -> None:
        super().__init__()
        self.current = current
        self.metric_name = metric_name

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical(classes="dialog"):
            yield Label("Find nodes", classes="dialog-title")
            yield Label("id or label contains", classes="field-label")
            yield Input(value=c.text, placeholder="e.g. jitter", id="f-text")
            yield Label("actor (human, ai, system, or e.g. ai:gpt-5)", classes="field-label")
            yield Input(value=c.actor, placeholder="any actor", id="f-actor")
            yield Label("autonomy level", classes="field-label")
            yield Select(_LEVELS, value="any" if c.level is None else str(c.level), allow_blank=False, id="f-level")
            yield Label("signal", classes="field-label")
            yield Select([("any or none", "")] + [(s, s) for s in SIGNALS], value=c.signal or "", allow_blank=False,
                         id="f-signal")
            metric = self.metric_name or "score"
            yield Label(f"best {metric} at least (at most, for a lower-is-better metric)", classes="field-label")
            yield Input(value="" if c.min_score is None else str(c.min_score), placeholder="no threshold",
                        id="f-score")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Filter", variant="primary", id="ok")
                yield Button("Clear", id="clear")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-text", Input).focus()

    def _filter(self) -> Filter | None:
        score_text = self.query_one("#f-score", Input).value.strip()
        try:
            score = float(score_text) if score_text else None
        except ValueError:
            self.notify(f"{score_text!r} is not a number", severity="error")
            return None
        level = self.query_one("#f-level", Select).value
        return Filter(
            text=self.query_one("#f-text", Input).value.strip(),
            actor=self.query_one("#f-actor", Input).value.strip(),
            level=None if level in ("any", Select.BLANK) else int(level),
            signal=self.query_one("#f-signal", Select).value or "",
            min_score=score,
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        flt = self._filter()
        if flt is not None:
            self.dismiss(flt)

    @on(Button.Pressed, "#clear")
    def _clear(self) -> None:
        self.dismiss(Filter())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


LEGEND = [
    ("g12", "generation: depth from a root"),
    ("0.9916", "best value of the lineage's metric (m cycles the metric)"),
    ("H20 A70 S10", "share of the node's events by humans, AI, systems"),
    ("L0..L3", "autonomy: L0 human-built, L1 AI assistant, L2 AI researcher, L3 AI → AI"),
    ("★", "the best node of the lineage"),
    ("⑂2", "has further parents (merge or crossover): p jumps to them"),
    ("↪ node", "a child through a further parent: select it to jump to the node"),
    ("↓", "its only child follows on the next line (a run of only children is shown flat)"),
    ("⚠3", "oversight signals (red: critical); see the Signals tab"),
    ("✗parent", "a parent that is not in the lineage (pruned or never recorded)"),
]


class HelpScreen(ModalScreen[None]):
    """Every key, from the bindings themselves, and what the tree's marks mean."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, bindings: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.bindings = bindings  # (where, keys, description)

    def compose(self) -> ComposeResult:
        keys = Table(box=None, pad_edge=False, header_style="bold", expand=True)
        keys.add_column("key", style="bold cyan", no_wrap=True)
        keys.add_column("does")
        keys.add_column("where", style="dim")
        for where, key, description in self.bindings:
            keys.add_row(key, description, where)
        legend = Table(box=None, pad_edge=False, header_style="bold", expand=True)
        legend.add_column("mark", style="bold", no_wrap=True)
        legend.add_column("means")
        for mark, means in LEGEND:
            legend.add_row(mark, means)
        with Vertical(classes="dialog help"):
            yield Label("lineage — keys and marks", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(keys)
                yield Static(Text("\nIn the tree", style="bold"))
                yield Static(legend)
                yield Static(Text("\nThe mouse works too: click to select, click ▶ to expand, click tabs, scroll.",
                                  style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
