"""The real program in a real terminal: `lineage tui` under tmux, read back from the screen.

What a person sees is asserted from ``tmux capture-pane``: the lineage opens, keys move
around, the SQL console answers, a loop's new node shows up live, and q quits.
Skipped where tmux is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lineage.tracker import Tracker

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

pytest_plugins = ["test_tui_fixtures"]


class Terminal:
    def __init__(self, command: str, *, width: int = 120, height: int = 40, env: dict | None = None) -> None:
        self.name = f"lineage-test-{uuid.uuid4().hex[:8]}"
        full_env = {**os.environ, **(env or {})}
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), command],
                       check=True, env=full_env)

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True)
        return out.stdout

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear on screen within {timeout}s; screen was:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminal(small_store, tmp_path):
    lineage_cmd = Path(sys.executable).parent / "lineage"
    command = (f"{lineage_cmd} tui --store {small_store.root} --lineage evo --poll 0.5; "
               f"echo EXITED $?; sleep 30")
    term = Terminal(command, env={"XDG_STATE_HOME": str(tmp_path / "state")})
    yield term
    term.close()


def test_a_person_browses_queries_sees_a_live_node_and_quits(terminal, small_store):
    terminal.wait_for("metric acc@public")
    screen = terminal.wait_for("★ n5")  # the best node, found just after the first screen
    assert "lineage  evo" in screen
    terminal.wait_for("root g0 0.5 H")  # the tree, with the first root open
    terminal.wait_for("generation 0 · branch main")  # the root's detail
    assert "? Help" in screen and "r Replay" in screen  # the footer names the keys

    terminal.send("*")
    screen = terminal.wait_for("★ best")
    assert "n5  crossover of n3 and n4" in screen

    terminal.send("2")
    terminal.wait_for("no code diff recorded for this node")  # n5 is a crossover: no diff of its own
    terminal.send("o")
    terminal.wait_for("Go to node")
    terminal.type("n2")
    terminal.send("Enter")
    screen = terminal.wait_for("+def test_sorted():")
    assert "diff --git a/test_solver.py" in screen

    terminal.send("g")
    terminal.wait_for("Generations  evo · all branches")
    screen = terminal.wait_for("best node")
    assert "█" in screen and "human share" in screen
    terminal.send("Escape")
    terminal.wait_for("metric acc@public")

    terminal.send("s")
    terminal.wait_for("SQL console")
    terminal.type("SELECT count(*) AS nodes FROM nodes WHERE lineage = 'evo'")
    terminal.send("Enter")
    screen = terminal.wait_for("1 row")
    assert any(line.split() == ["8"] for line in screen.splitlines()), screen
    terminal.send("Escape")
    terminal.wait_for("metric acc@public")

    with Tracker(small_store, lineage="evo", actor="ai:coder") as t:
        t.record("node_created", {"parents": ["n5"], "label": "made while you watched"}, node="n8")
    terminal.wait_for("n8 g5", timeout=4.0)

    terminal.send("q")
    terminal.wait_for("EXITED 0")
