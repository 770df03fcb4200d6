"""The terminal UI driven like a person would: keys and clicks through Textual's pilot."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from test_tui_fixtures import settle
from textual.widgets import DataTable, Input, Static

from lineage.store import Store
from lineage.tracker import Tracker
from tui.app import create_app
from tui.screens.dialogs import ConfirmDialog, ErrorDialog, FilterDialog, HelpScreen, InputDialog
from tui.screens.generations import GenerationsScreen
from tui.screens.replay import CompareScreen, ReplayScreen
from tui.screens.sql import SqlScreen

SIZE = (120, 40)
pytestmark = pytest.mark.anyio

pytest_plugins = ["test_tui_fixtures"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def text_of(widget) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console

    content = widget.content
    if isinstance(content, str):
        return content
    if hasattr(content, "plain"):
        return content.plain
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(content)
    return console.export_text()


def tree_lines(app) -> list[str]:
    """The tree's lines as drawn (labels are drawn when rendered), without the expand icon."""
    from rich.style import Style

    tree = app.main.genealogy
    lines = []
    for i in range(tree.last_line + 1):
        node = tree.get_node_at_line(i)
        text = tree.render_label(node, Style(), Style()).plain
        lines.append(text.lstrip("▶▼ ").lstrip())
    return lines


def current(app) -> str | None:
    row = app.main.genealogy.current_row()
    return row.node if row else None


def table_cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.fixture
def app(small_store):
    return create_app(small_store.root, lineage="evo", poll_interval=None)


async def test_without_a_choice_it_opens_the_most_recently_active_lineage(small_store):
    app = create_app(small_store.root, poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.main.lineage == "tiny"


async def test_the_first_screen_comes_up_in_one_step_without_a_query_per_widget(app):
    """The tree, the first root's children and the root's events arrive together (read
    while Textual starts), not one query after another once the screen is up."""
    async with app.run_test(size=SIZE) as pilot:
        while not app.ready:
            await pilot.pause(0.01)
        await pilot.pause(0)
        assert current(app) == "root"
        assert any(line.startswith("n1 ") for line in tree_lines(app))
        assert "events" in app.main.detail._loaded  # before the cursor's rest delay has passed


async def test_first_screen_shows_the_lineage_tree_and_the_root_in_detail(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = text_of(app.main.query_one("#status", Static))
        assert "evo" in status and "acc@public" in status and "★ n5" in status
        lines = tree_lines(app)
        assert lines[0].startswith("root g0 0.5 H")  # the first root opens by itself
        assert any(line.startswith("n1 ") for line in lines)
        assert current(app) == "root"
        header = text_of(app.main.query_one("#node-header", Static))
        assert "root" in header and "generation 0" in header and "human:ada" in header
        events = table_cells(app.main.query_one("#events-table", DataTable))
        assert [r[2] for r in events][:3] == ["node_created", "proposal", "code_diff"]


async def test_expanding_a_node_loads_its_children_and_keys_move_the_cursor(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down")  # n1
        assert current(app) == "n1"
        await pilot.press("l")  # expand n1
        await settle(pilot)
        lines = tree_lines(app)
        assert [ln.split()[0] for ln in lines][:5] == ["root", "n1", "n2", "n4", "x1"]
        await pilot.press("l")  # down to n2, the first child
        assert current(app) == "n2"
        await pilot.press("l")  # expand n2: its run of only children is shown flat
        await settle(pilot)
        names = [ln.split()[0] for ln in tree_lines(app)]
        assert names[names.index("n2") + 1: names.index("n2") + 3] == ["n3", "n5"]
        await pilot.press("h")  # collapse
        await settle(pilot)
        assert "n3" not in [ln.split()[0] for ln in tree_lines(app)]


async def test_every_tab_shows_the_selected_node(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await pilot.press(*"n2", "enter")
        await settle(pilot)
        assert current(app) == "n2"
        detail = app.main.detail
        await pilot.press("2")
        await settle(pilot)
        assert "+def test_sorted():" in text_of(detail.query_one("#diff-body", Static))
        await pilot.press("3")
        await settle(pilot)
        scores = table_cells(detail.query_one("#scores-table", DataTable))
        assert ["acc", "public", "0.64", "+0.03"] in [r[:4] for r in scores]
        await pilot.press("4")
        await settle(pilot)
        artifacts = table_cells(detail.query_one("#artifacts-table", DataTable))
        assert {r[0] for r in artifacts} == {"diff", "dataset"} and all(r[5] == "ok" for r in artifacts)
        await pilot.press("5")
        await settle(pilot)
        inv = str(detail._loaded["involvement"]["autonomy_level"])
        assert inv == "3"
        await pilot.press("6")
        await settle(pilot)
        signals = [s.signal for s in detail._loaded["signals"]]
        assert "contamination" in signals and "evaluator_touched" in signals


async def test_tabs_switch_by_mouse_too(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.click("#tabs Tab#--content-tab-scores")
        await settle(pilot)
        assert app.main.detail.active_tab == "scores"
        assert table_cells(app.main.query_one("#scores-table", DataTable))


async def test_jump_to_best_root_other_parent_and_through_a_merge_link(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("asterisk")
        await settle(pilot)
        assert current(app) == "n5"
        await pilot.press("p")  # n5's other parent
        await settle(pilot)
        assert current(app) == "n4"
        await pilot.press("l")  # n4 has no child of its own, but n5 through a merge
        await settle(pilot)
        await pilot.press("down")
        row = app.main.genealogy.cursor_node
        assert row.data.kind == "link" and row.data.row.node == "n5"
        await pilot.press("enter")
        await settle(pilot)
        assert current(app) == "n5" and app.main.genealogy.cursor_node.data.kind == "node"
        await pilot.press("0")
        assert current(app) == "root"


async def test_find_filters_and_escape_returns_to_the_tree(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        assert isinstance(app.screen, FilterDialog)
        await pilot.press(*"sort", "enter")
        await settle(pilot)
        assert [ln.split()[0] for ln in tree_lines(app)] == ["n1", "n4", "x1"]
        assert "filter" in text_of(app.main.query_one("#status", Static))
        await pilot.press("down", "escape")
        await settle(pilot)
        assert current(app) == "n4"  # the cursor stays on the node it was on
        assert "filter" not in text_of(app.main.query_one("#status", Static))


async def test_find_by_signal_and_score(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        dialog = app.screen
        dialog.query_one("#f-signal").value = "unreviewed_promotion"
        dialog.query_one("#f-score", Input).value = "0.7"
        await pilot.click("#ok")
        await settle(pilot)
        assert [ln.split()[0] for ln in tree_lines(app)] == ["n5"]


async def test_switching_lineage_and_branch(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("L")
        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.main.lineage == "tiny"
        assert tree_lines(app)[0].startswith("solo g0 1.25")
        assert "loss@public ↓" in text_of(app.main.query_one("#status", Static))
        await pilot.press("L", "up", "enter")  # back to evo
        await settle(pilot)
        await pilot.press("B", "down", "down", "enter")  # all, main, explore
        await settle(pilot)
        assert app.main.branch == "explore"
        assert [ln.split()[0] for ln in tree_lines(app)] == ["n1", "x1"]


async def test_generations_screen_charts_best_score_and_human_share(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, GenerationsScreen)
        assert [s.generation for s in screen.stats] == [0, 1, 2, 3, 4]
        table = text_of(screen.query_one("#gen-table", Static))
        assert "█" in table
        await pilot.press("escape")
        assert app.screen is app.main


async def test_sql_console_runs_queries_shows_errors_and_keeps_history(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        assert isinstance(app.screen, SqlScreen)
        await pilot.press(*"SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC, kind", "enter")
        await settle(pilot)
        results = app.screen.query_one("#sql-results", DataTable)
        assert table_cells(results)[0] == ["score", "13"]
        app.screen.query_one("#sql-input", Input).value = "DELETE FROM event_log"
        await pilot.press("enter")
        await settle(pilot)
        assert "read-only" in text_of(app.screen.query_one("#sql-status", Static))
        app.screen.query_one("#sql-input", Input).value = "SELECT nope FROM nowhere"
        await pilot.press("enter")
        await settle(pilot)
        assert "error" in text_of(app.screen.query_one("#sql-status", Static))
        app.screen.query_one("#sql-input", Input).value = ""
        await pilot.press("up", "up")
        assert app.screen.query_one("#sql-input", Input).value == "DELETE FROM event_log"
        await pilot.press("escape")
        assert app.screen is app.main


async def test_help_lists_every_key_with_its_description(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {k: d for _, k, d in app.screen.bindings}
        for key, words in (("r", "Re-run"), ("c", "code tree"), ("b", "branch"), ("C", "Compare"),
                           ("/", "filter"), ("g", "generation"), ("s", "SQL"), ("q", "Quit"), ("j", "Down")):
            assert words in keys[key], (key, keys.get(key))
        await pilot.press("escape")
        assert app.screen is app.main


async def test_checkout_writes_the_node_tree_to_a_directory(app, tmp_path):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o", *"n2", "enter")
        await settle(pilot)
        await pilot.press("c")
        assert isinstance(app.screen, InputDialog)
        dest = tmp_path / "co"
        app.screen.query_one("#field-dest", Input).value = str(dest)
        await pilot.press("enter")
        await settle(pilot)
        assert (dest / "test_solver.py").read_text().startswith("from solver import solve")
        assert "key=abs" in (dest / "solver.py").read_text()


async def test_checkout_into_a_used_directory_shows_an_error_not_a_crash(app, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "precious.txt").write_text("keep me")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")
        app.screen.query_one("#field-dest", Input).value = str(used)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorDialog)
        await pilot.press("escape")
        assert app.screen is app.main
    assert (used / "precious.txt").read_text() == "keep me"


async def test_branch_from_the_selected_node_records_it_and_shows_it(app, small_store):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o", *"n3", "enter")
        await settle(pilot)
        await pilot.press("b")
        app.screen.query_one("#field-name", Input).value = "try-heap"
        app.screen.query_one("#field-actor", Input).value = "human:tester"
        await pilot.click("#ok")
        await settle(pilot)
        await settle(pilot)
        assert "try-heap" in app.main.lineages[0].branches or \
            "try-heap" in app.service.branches("evo")
    rows = Store(small_store.root).query_arrow(
        "SELECT node, actor FROM events WHERE kind = 'branch_created' AND branch = 'try-heap'").to_pylist()
    assert rows == [{"node": "n3", "actor": "human:tester"}]


async def test_compare_two_branches(app):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("C")
        assert isinstance(app.screen, InputDialog)
        await pilot.click("#ok")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        a = text_of(app.screen.query_one("#side-a", Static))
        b = text_of(app.screen.query_one("#side-b", Static))
        assert "main" in a and "explore" in b and "forked from main at n1" in b


async def test_replay_asks_consent_then_reports_and_records(demo_copy):
    app = create_app(demo_copy.root, poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o", *"g01-first-fit", "enter")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        body = str(app.screen.body)
        assert "python evaluate.py --split public --seed 0" in body
        await pilot.press("escape")  # no consent: nothing runs
        assert app.screen is app.main
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        assert isinstance(app.screen, ReplayScreen)
        for _ in range(200):
            await settle(pilot)
            if not app.screen.running:
                break
            await asyncio.sleep(0.1)
        report = text_of(app.screen.query_one("#replay-report", Static))
        assert "REPRODUCED" in report and "efficiency" in report
    outcomes = Store(demo_copy.root).query_arrow(
        "SELECT node, payload->>'outcome' AS outcome FROM events WHERE kind = 'replay'").to_pylist()
    assert outcomes == [{"node": "g01-first-fit", "outcome": "reproduced"}]


async def test_new_events_appear_live_without_losing_cursor_or_expansion(small_store):
    app = create_app(small_store.root, lineage="evo", poll_interval=0.25)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "l")  # expand n1
        await settle(pilot)
        await pilot.press("down")  # cursor on n2
        assert current(app) == "n2"
        expanded_before = app.main.genealogy.expanded_ids()

        def loop_writes() -> None:
            with Tracker(small_store, lineage="evo", actor="ai:coder") as t:
                t.record("node_created", {"parents": ["n1"], "label": "arrived live"}, node="n7")
                t.record("score", {"metric": "acc", "value": 0.9, "split": "public"}, node="n7",
                         actor="system:grader")

        writer = threading.Thread(target=loop_writes)
        start = time.monotonic()
        writer.start()
        writer.join()
        seen = False
        while time.monotonic() - start < 2.0:
            await pilot.pause(0.1)
            if any(ln.startswith("n7 ") for ln in tree_lines(app)):
                seen = True
                break
        assert seen, "the new node did not appear within 2 s"
        await settle(pilot)
        assert current(app) == "n2"
        assert app.main.genealogy.expanded_ids() >= expanded_before
        assert "n7 g2 0.9" in "\n".join(tree_lines(app))


async def test_a_failing_store_read_shows_an_error_dialog(app, monkeypatch):
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)

        def broken(*_a, **_k):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(app.service, "node_scores", broken)
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, ErrorDialog)
        assert "disk on fire" in app.screen.message


# -- children read ahead while the cursor rests ---------------------------------------------------

@pytest.fixture
def wide_store(tmp_path) -> Store:
    """A root with two children, one of which (hub) has 150 children of its own."""
    store = Store.init(tmp_path / "wide")
    with Tracker(store, lineage="wide", actor="ai:coder") as t, t.batch():
        t.record("node_created", {"parents": []}, node="root")
        t.record("node_created", {"parents": ["root"]}, node="hub")
        t.record("node_created", {"parents": ["root"]}, node="leaf")
        for i in range(150):
            t.record("node_created", {"parents": ["hub"]}, node=f"c{i:03d}")
    return store


def count_children_reads(app, monkeypatch, *, delay: float = 0.0, fail_first: bool = False) -> list[str]:
    """Record each read of a node's children by the app (optionally slow, or failing once)."""
    calls: list[str] = []
    real = app.service.children

    def children(lineage, node, **kw):
        calls.append(node)
        time.sleep(delay)
        if fail_first and calls.count(node) == 1:
            raise RuntimeError("disk hiccup")
        return real(lineage, node, **kw)

    monkeypatch.setattr(app.service, "children", children)
    return calls


async def put_cursor_on(app, pilot, node: str) -> None:
    tree = app.main.genealogy
    tree.move_cursor(tree._shown[node][0])
    await pilot.pause(0)


async def test_a_node_with_many_children_has_them_read_while_the_cursor_rests(wide_store, monkeypatch):
    app = create_app(wide_store.root, lineage="wide", poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        calls = count_children_reads(app, monkeypatch)
        await put_cursor_on(app, pilot, "leaf")  # no children: nothing to read
        await pilot.pause(0.2)
        await put_cursor_on(app, pilot, "hub")
        await pilot.pause(0.2)
        await settle(pilot)
        assert calls == ["hub"]
        await pilot.press("l")
        await pilot.pause(0)  # shown in the frame after the key: no query in between
        assert any(ln.startswith("c149 ") for ln in tree_lines(app))
        await settle(pilot)
        assert calls == ["hub"]


async def test_an_expand_during_the_read_ahead_waits_for_it_instead_of_reading_again(wide_store, monkeypatch):
    app = create_app(wide_store.root, lineage="wide", poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        calls = count_children_reads(app, monkeypatch, delay=0.4)
        await put_cursor_on(app, pilot, "hub")
        await pilot.pause(0.15)  # read ahead under way
        await pilot.press("l")
        await settle(pilot)
        assert calls == ["hub"]
        assert sum(ln.startswith("c") for ln in tree_lines(app)) == 150


async def test_a_failed_read_ahead_is_read_again_by_the_expand_that_waited_for_it(wide_store, monkeypatch):
    app = create_app(wide_store.root, lineage="wide", poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        calls = count_children_reads(app, monkeypatch, delay=0.3, fail_first=True)
        await put_cursor_on(app, pilot, "hub")
        await pilot.pause(0.15)
        await pilot.press("l")
        await settle(pilot)
        assert calls == ["hub", "hub"]
        assert sum(ln.startswith("c") for ln in tree_lines(app)) == 150
        assert not isinstance(app.screen, ErrorDialog)


async def test_children_read_ahead_are_read_again_once_the_loop_adds_one(wide_store, monkeypatch):
    app = create_app(wide_store.root, lineage="wide", poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await put_cursor_on(app, pilot, "hub")
        await pilot.pause(0.2)
        await settle(pilot)
        with Tracker(wide_store, lineage="wide", actor="ai:coder") as t:
            t.record("node_created", {"parents": ["hub"]}, node="c150")
        deadline = time.monotonic() + 2  # (well within PREFETCH_FRESH: the page is not just old)
        while app.main.genealogy._ahead is not None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.press("l")
        await settle(pilot)
        assert any(ln.startswith("c150 ") for ln in tree_lines(app))
