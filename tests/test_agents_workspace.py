"""An agent's workspace (skills, memory, instructions) becomes a lineage, one node per burst.

The watcher runs for real (watchfiles, real file writes, a real store) in a thread; the
tests wait for the nodes it reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from lineage.agents.correction import EFFECTIVE_ACTORS_SQL, attribute_node, effective_actors
from lineage.agents.workspace import (
    WorkspaceWatcher,
    import_workspace,
    list_snapshots,
    load_snapshot,
    snapshot_time,
)
from lineage.cli import cli
from lineage.errors import LineageError
from lineage.query import run_query
from lineage.store import Store
from lineage.verify import verify

QUIET = 0.3


def events(store: Store, where: str = "TRUE") -> list[dict]:
    rows = store.query_arrow(f"SELECT seq, event_id, node, kind, actor, payload::VARCHAR AS payload FROM events "
                             f"WHERE {where} ORDER BY seq").to_pylist()
    for r in rows:
        r["payload"] = orjson.loads(r["payload"])
    return rows


def seed_workspace(root: Path) -> None:
    (root / "skills" / "search").mkdir(parents=True)
    (root / "AGENTS.md").write_text("# Instructions\nBe careful.\n")
    (root / "MEMORY.md").write_text("- the user likes tables\n")
    (root / "skills" / "search" / "SKILL.md").write_text("# Search\nUse ripgrep.\n")


class Running:
    """A watcher in a background thread, and a way to wait for the nodes it records."""

    def __init__(self, store: Store, root: Path, **kw):
        self.nodes: list[tuple[str, dict]] = []
        self._cond = threading.Condition()
        self.watcher = WorkspaceWatcher(store, root, quiet=kw.pop("quiet", QUIET), on_node=self._on_node, **kw)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop, self.ready), daemon=True)

    def _on_node(self, node: str, payload: dict) -> None:
        with self._cond:
            self.nodes.append((node, payload))
            self._cond.notify_all()

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.ready.wait(10), "watcher did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.nodes) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} nodes, got {[n for n, _ in self.nodes]}")
                self._cond.wait(left)
            return list(self.nodes)

    def settle(self) -> None:
        """Long enough for any burst in flight to be recorded."""
        time.sleep(QUIET * 4 + 0.3)


def test_a_burst_of_many_changes_is_one_node_by_the_agent(tmp_path):
    ws = tmp_path / "hermes"
    ws.mkdir()
    seed_workspace(ws)
    store = Store.init(tmp_path / "store")
    # a wider quiet period here: a slow machine must not split the burst
    with Running(store, ws, actor="ai:hermes", quiet=0.6) as run:
        baseline = run.wait_for(1)[0]
        assert baseline[0] == "hermes-0"
        assert baseline[1]["attribution"]["rule"] == "baseline"
        # the agent rewrites itself: 40 new skills, its memory, its instructions, in one burst
        for i in range(40):
            d = ws / "skills" / f"skill{i:02d}"
            d.mkdir()
            (d / "SKILL.md").write_text(f"# Skill {i}\nStep one.\nStep two.\n")
            time.sleep(0.002)
        with open(ws / "MEMORY.md", "a") as f:
            f.write("- skills 0-39 learned\n")
        (ws / "AGENTS.md").write_text("# Instructions\nBe bold.\n")
        nodes = run.wait_for(2)
        run.settle()
        assert len(run.nodes) == 2, [n for n, _ in run.nodes]
    node, payload = nodes[1]
    assert node == "hermes-1" and payload["parents"] == ["hermes-0"]
    assert len(payload["files"]) == 42
    assert {f["change"] for f in payload["files"]} == {"added", "modified"}

    rows = events(store, f"node = '{node}'")
    assert [(e["kind"], e["actor"]) for e in rows] == [("node_created", "ai:hermes"), ("code_diff", "ai:hermes")]
    diff = rows[1]["payload"]
    assert diff["attribution"]["rule"] == "watch-workspace"
    memory = next(f for f in diff["files"] if f["path"] == "MEMORY.md")
    assert (memory["lines_added"], memory["lines_removed"]) == (1, 0)
    text = store.objects.get_text(diff["diff_object"])
    assert "+- skills 0-39 learned" in text and "-Be careful." in text and "+Be bold." in text
    # the snapshot rebuilds the workspace exactly as it was after the burst
    assert load_snapshot(store, diff["snapshot_object"]) == {
        p.relative_to(ws).as_posix(): p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    assert verify(store).ok


def test_a_file_deleted_and_recreated(tmp_path):
    ws = tmp_path / "agent"
    ws.mkdir()
    seed_workspace(ws)
    store = Store.init(tmp_path / "store")
    memory = ws / "MEMORY.md"
    with Running(store, ws, actor="ai:openclaw") as run:
        run.wait_for(1)
        # in two bursts: a deletion node, then a creation node
        memory.unlink()
        deleted = run.wait_for(2)[-1]
        memory.write_text("- fresh memory\n")
        created = run.wait_for(3)[-1]
        # in one burst, recreated with the same content: no change, no node
        memory.unlink()
        memory.write_text("- fresh memory\n")
        run.settle()
        assert len(run.nodes) == 3
        # in one burst, recreated with other content: one node, an edit
        memory.unlink()
        memory.write_text("- fresh memory\n- and more\n")
        edited = run.wait_for(4)[-1]
    assert deleted[1]["files"] == [{"path": "MEMORY.md", "change": "deleted", "lines_added": 0, "lines_removed": 1}]
    assert created[1]["files"] == [{"path": "MEMORY.md", "change": "added", "lines_added": 1, "lines_removed": 0}]
    assert edited[1]["files"] == [{"path": "MEMORY.md", "change": "modified", "lines_added": 1, "lines_removed": 0}]
    assert [p["parents"] for _, p in run.nodes] == [[], ["agent-0"], ["agent-1"], ["agent-2"]]
    assert deleted[1]["label"] == "delete MEMORY.md"


def test_only_included_files_count_and_editor_droppings_never(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    seed_workspace(ws)
    (ws / "notes.txt").write_text("scratch\n")
    store = Store.init(tmp_path / "store")
    with Running(store, ws, actor="ai:hermes", include=["skills/*/SKILL.md", "MEMORY.md", "AGENTS.md"]) as run:
        baseline = run.wait_for(1)[0]
        assert sorted(f["path"] for f in baseline[1]["files"]) == ["AGENTS.md", "MEMORY.md", "skills/search/SKILL.md"]
        (ws / "notes.txt").write_text("more scratch\n")
        (ws / ".MEMORY.md.swp").write_bytes(b"\x00swap")
        (ws / ".git").mkdir()
        (ws / ".git" / "HEAD").write_text("ref: x\n")
        run.settle()
        assert len(run.nodes) == 1
        (ws / "skills" / "search" / "SKILL.md").write_text("# Search\nUse ripgrep, then read.\n")
        node = run.wait_for(2)[-1]
    assert [f["path"] for f in node[1]["files"]] == ["skills/search/SKILL.md"]


def test_watching_again_resumes_and_records_unwatched_changes_as_unknown(tmp_path):
    ws = tmp_path / "hermes"
    ws.mkdir()
    seed_workspace(ws)
    store = Store.init(tmp_path / "store")
    with Running(store, ws, actor="ai:hermes") as run:
        run.wait_for(1)
        (ws / "MEMORY.md").write_text("- learned A\n")
        run.wait_for(2)
    # changed while nobody watched
    (ws / "MEMORY.md").write_text("- learned A\n- learned B\n")
    with Running(store, ws, actor="ai:hermes") as run:
        unwatched = run.wait_for(1)[0]
        (ws / "AGENTS.md").write_text("# Instructions\n")
        watched = run.wait_for(2)[-1]
    assert unwatched[0] == "hermes-2" and unwatched[1]["parents"] == ["hermes-1"]
    assert unwatched[1]["attribution"]["actor"] == "system:lineage"
    assert unwatched[1]["attribution"]["rule"] == "unwatched"
    assert watched[0] == "hermes-3" and watched[1]["attribution"]["actor"] == "ai:hermes"
    # with nothing changed, a restart records nothing
    with Running(store, ws, actor="ai:hermes") as run:
        run.settle()
        assert run.nodes == []


def test_a_person_corrects_the_attribution_of_a_node(tmp_path):
    ws = tmp_path / "hermes"
    ws.mkdir()
    seed_workspace(ws)
    store = Store.init(tmp_path / "store")
    with Running(store, ws, actor="ai:hermes") as run:
        run.wait_for(1)
        (ws / "AGENTS.md").write_text("# Instructions\nNever delete user files.\n")
        node = run.wait_for(2)[-1][0]
    before = events(store)
    res = CliRunner().invoke(cli, ["attribute", node, "human:alice", "--by", "human:alice",
                                   "--reason", "I edited AGENTS.md myself", "--store", str(store.root)])
    assert res.exit_code == 0, res.output
    after = events(store)
    assert after[:len(before)] == before  # nothing edited
    note = after[-1]
    assert (note["kind"], note["actor"], note["node"]) == ("annotation", "human:alice", node)
    assert note["payload"]["topic"] == "attribution" and note["payload"]["attribute_to"] == "human:alice"
    eff = [e for e in effective_actors(store) if e["node"] == node and e["kind"] != "annotation"]
    assert [(e["kind"], e["recorded_actor"], e["actor"]) for e in eff] == [
        ("node_created", "ai:hermes", "human:alice"), ("code_diff", "ai:hermes", "human:alice")]
    # a retracted correction no longer counts
    with store.writer() as w:
        from schemas import Draft, prepare

        w.append(prepare(Draft(lineage="hermes", kind="retraction", actor="human:alice", node=node,
                               payload={"event_id": note["event_id"], "reason": "it was the agent after all"})))
    actors = run_query(store, f"SELECT DISTINCT actor FROM ({EFFECTIVE_ACTORS_SQL}) WHERE node = ? AND kind IN ('node_created', 'code_diff')",
                       [node]).column("actor").to_pylist()
    assert actors == ["ai:hermes"]
    with pytest.raises(LineageError, match="not found"):
        attribute_node(store, "nope", "human:alice")


def test_involvement_reflects_a_correction(tmp_path):
    ws = tmp_path / "hermes"
    ws.mkdir()
    seed_workspace(ws)
    store = Store.init(tmp_path / "store")
    watcher = WorkspaceWatcher(store, ws, actor="ai:hermes")
    watcher.start()
    (ws / "MEMORY.md").write_text("- x\n")
    node = watcher.flush()
    watcher.close()
    attribute_node(store, node, "human:alice", by="human:alice")
    row = run_query(store, "SELECT human_events, ai_events FROM involvement WHERE node = ?", [node]).to_pylist()
    assert row == [{"human_events": 2, "ai_events": 0}]


def test_import_a_folder_of_dated_snapshots(tmp_path):
    snaps = tmp_path / "skills-history"
    for name, memory in (("2025-01-10", "- c\n"), ("2025-01-02", "- a\n"), ("2025-01-03T09-30", "- a\n- b\n"),
                         ("2025-01-04", "- a\n- b\n")):
        (snaps / name).mkdir(parents=True)
        (snaps / name / "MEMORY.md").write_text(memory)
        (snaps / name / "AGENTS.md").write_text("# rules\n")
    assert [p.name for p, _, _ in list_snapshots(snaps)] == ["2025-01-02", "2025-01-03T09-30", "2025-01-04", "2025-01-10"]
    assert snapshot_time("snap_20250103-1412").isoformat() == "2025-01-03T14:12:00+00:00"
    store = Store.init(tmp_path / "store")
    with pytest.raises(LineageError, match="--actor"):
        import_workspace(store, snaps)
    summary = import_workspace(store, snaps, actor="ai:hermes")
    assert summary["nodes"] == 3  # 2025-01-04 is the same as the day before: no node
    nodes = events(store, "kind = 'node_created'")
    assert [(e["node"], e["actor"], e["payload"]["parents"]) for e in nodes] == [
        ("2025-01-02", "system:lineage", []),
        ("2025-01-03T09-30", "ai:hermes", ["2025-01-02"]),
        ("2025-01-10", "ai:hermes", ["2025-01-03T09-30"]),
    ]
    diffs = events(store, "kind = 'code_diff'")
    assert diffs[2]["payload"]["files"] == [{"path": "MEMORY.md", "change": "modified", "lines_added": 1, "lines_removed": 2}]
    occurred = store.query_arrow("SELECT occurred_at FROM events WHERE node = '2025-01-03T09-30' LIMIT 1").column(0)[0].as_py()
    assert occurred.isoformat() == "2025-01-03T09:30:00+00:00"
    assert import_workspace(store, snaps, actor="ai:hermes")["events_added"] == 0


def test_import_a_workspace_that_is_a_git_repository(tmp_path):
    ws = tmp_path / "claw"
    ws.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "OpenClaw", "GIT_AUTHOR_EMAIL": "claw@localhost",
           "GIT_COMMITTER_NAME": "OpenClaw", "GIT_COMMITTER_EMAIL": "claw@localhost"}

    def git(*args, env=env):
        subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main")
    seed_workspace(ws)
    git("add", ".")
    git("commit", "-q", "-m", "skills v1")
    (ws / "MEMORY.md").write_text("- learned\n")
    git("commit", "-q", "-am", "remember")
    (ws / "AGENTS.md").write_text("# Instructions by Alice\n")
    git("commit", "-q", "-am", "fix the rules", env={**env, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.com"})
    mapping = tmp_path / "who.json"
    mapping.write_text(json.dumps({"alice@example.com": "human:alice"}))
    store = Store.init(tmp_path / "store")
    res = CliRunner().invoke(cli, ["import-workspace", str(ws), "--actor", "ai:openclaw", "--mapping", str(mapping),
                                   "--store", str(store.root), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["kind"], summary["commits"], summary["lineage"]) == ("git", 3, "claw")
    diffs = events(store, "kind = 'code_diff'")
    assert [(d["actor"], d["payload"]["attribution"]["rule"]) for d in diffs] == [
        ("ai:openclaw", "default-actor"), ("ai:openclaw", "default-actor"), ("human:alice", "mapping")]


def test_lineage_import_workspace_through_the_importers_registry(tmp_path, monkeypatch):
    import lineage.importers as importers

    monkeypatch.setitem(importers._MODULES, "workspace", "lineage.agents.formats.workspace")
    snaps = tmp_path / "snaps"
    for name, text in (("2025-02-01", "a\n"), ("2025-02-02", "b\n")):
        (snaps / name).mkdir(parents=True)
        (snaps / name / "MEMORY.md").write_text(text)
    store = Store.init(tmp_path / "store")
    summary = importers.import_source(store, "workspace", snaps, actors=importers.Actors(ai="ai:hermes"))
    assert (summary.lineages, summary.nodes, summary.events) == (["snaps"], 2, 4)
    assert importers.count_records("workspace", snaps) == 2
    again = importers.import_source(store, "workspace", snaps, actors=importers.Actors(ai="ai:hermes"))
    assert (again.events, again.skipped) == (0, 4)
