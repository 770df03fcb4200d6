"""Snapshots of the main screens at 120x40 on the small store (fixed times and content).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest
from test_tui_fixtures import settle
from textual.widgets import Input

from tui.app import create_app

SIZE = (120, 40)

pytest_plugins = ["test_tui_fixtures"]


async def _settle(pilot) -> None:
    app = pilot.app
    await settle(pilot, rounds=8)
    for field in app.screen.query(Input):
        field.cursor_blink = False


def _steps(*keys: str):
    async def run(pilot) -> None:
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)

    return run


@pytest.fixture
def app(small_store):
    return create_app(small_store.root, lineage="evo", poll_interval=None)


def test_main_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps())


def test_main_screen_best_node_diff(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("asterisk", "2"))


def test_main_screen_signals_of_a_contaminated_node(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("o", "n", "2", "enter", "6"))


def test_main_screen_involvement(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("o", "n", "1", "enter", "5"))


def test_generations_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("g"))


def test_sql_console_with_results(snap_compare, app):
    query = "SELECT node, generation, autonomy_level, human_share FROM involvement ORDER BY node"

    async def run(pilot) -> None:
        await _settle(pilot)
        await pilot.press("s")
        await _settle(pilot)
        pilot.app.screen.query_one("#sql-input", Input).value = query
        await pilot.press("enter")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run)


def test_find_dialog(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("slash"))


def test_help_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=_steps("question_mark"))
