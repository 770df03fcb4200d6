"""The query service the terminal UI reads through, and the node index under it."""

from __future__ import annotations

import ast
import pathlib

import duckdb
import pytest
from test_tui_fixtures import build_small_store

from lineage.errors import QueryError, ReadOnlyViolation
from lineage.service import Filter, LineageService
from lineage.tracker import Tracker

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytest_plugins = ["test_tui_fixtures"]


def rows(store, sql):
    con = duckdb.connect(str(store.db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def svc(small_store) -> LineageService:
    s = LineageService(small_store)
    s.refresh_index()
    return s


def test_the_tree_starts_at_roots_and_a_pruned_parent_is_flagged(svc):
    roots = svc.roots("evo")
    assert [r.node for r in roots.rows] == ["root", "orphan"]
    orphan = roots.rows[1]
    assert orphan.missing_parent and orphan.generation == 1
    assert roots.rows[0].children == 1


def test_children_come_in_creation_order_with_merge_links(svc):
    page = svc.children("evo", "n1")
    assert [r.node for r in page.rows] == ["n2", "n4", "x1"]
    assert not page.chain
    under_n4 = svc.children("evo", "n4")
    assert under_n4.rows == [] and [r.node for r in under_n4.links] == ["n5"]
    n5 = svc.node("evo", "n5")
    assert n5.parent == "n3" and n5.other_parents == ("n4",)


def test_a_run_of_only_children_comes_back_flat(svc):
    page = svc.children("evo", "n2")
    assert page.chain and [r.node for r in page.rows] == ["n3", "n5"]


def test_a_branch_view_starts_at_its_fork(svc):
    assert [r.node for r in svc.roots("evo", "explore").rows] == ["n1"]
    assert [r.node for r in svc.children("evo", "n1", branch="explore").rows] == ["x1"]
    assert svc.branches("evo") == ["main", "explore"]


def test_best_node_ignores_a_retracted_score(svc):
    assert svc.node("evo", "n3").best == pytest.approx(0.66)
    assert svc.best_node("evo").node == "n5"
    scores = svc.node_scores("evo", "n3")
    assert [(s.value, s.retracted, s.latest) for s in scores] == [(0.99, True, False), (0.66, False, True)]
    assert scores[1].parent_value == pytest.approx(0.64)


def test_find_filters_by_text_actor_level_signal_and_score(svc):
    def ids(flt):
        return [r.node for r in svc.find("evo", flt)[0]]

    assert ids(Filter(text="sort")) == ["n1", "n4", "x1"]
    assert ids(Filter(actor="human")) == ["root", "x1"]
    assert ids(Filter(actor="ai:coder", text="n5")) == ["n5"]
    assert ids(Filter(min_score=0.65)) == ["n3", "n5", "x1"]
    assert "n2" in ids(Filter(signal="contamination"))
    assert set(ids(Filter(level=3))) >= {"n3", "n5"}
    assert ids(Filter(level=0)) == ["root", "x1"]  # no AI event: human-built


def test_path_and_resolve_find_a_node_by_id_or_label(svc):
    assert svc.path_to("evo", "n5") == ["root", "n1", "n2", "n3", "n5"]
    assert svc.resolve("evo", "crossover").node == "n5"
    assert svc.resolve("evo", "n4").node == "n4"
    assert svc.resolve("evo", "nothing like it") is None


def test_node_detail_tabs_have_their_data(svc, small_store):
    detail = svc.node_detail("evo", "n5")
    assert detail.known_parents == ("n3", "n4") and detail.missing_parents == ()
    assert svc.node_detail("evo", "n4").merged_children == ("n5",)
    assert svc.node_detail("evo", "orphan").missing_parents == ("pruned-7",)
    kinds = [e.kind for e in svc.node_events("evo", "root")]
    assert kinds[:3] == ["node_created", "proposal", "code_diff"]
    diff = svc.node_diffs("evo", "n2")[0]
    assert "+def test_sorted():" in diff.text and diff.paths == ("test_solver.py",)
    artifacts = {a.artifact: a for a in svc.node_artifacts("evo", "root")}
    assert artifacts["diff"].integrity == "ok" and artifacts["dataset"].integrity == "ok"
    inv = svc.node_involvement("evo", "root")
    assert inv["autonomy_level"] == 0 and inv["stage_counts"]["propose"]["human"] == 1
    signals = svc.node_signals("evo", "n2")
    assert {s.signal for s in signals} >= {"contamination", "evaluator_touched"}
    assert all(s.evidence for s in signals)


def test_a_modified_object_shows_as_modified(svc, small_store):
    diff = svc.node_diffs("evo", "n1")[0]
    digest = next(a.content_hash for a in svc.node_artifacts("evo", "n1") if a.artifact == "diff")
    path = small_store.objects.path(digest)
    path.chmod(0o644)
    path.write_text("tampered")
    assert diff.text is not None
    artifact = next(a for a in svc.node_artifacts("evo", "n1") if a.artifact == "diff")
    assert artifact.integrity == "modified"
    assert svc.node_diffs("evo", "n1")[0].problem


def test_generation_stats_per_generation(svc):
    stats = {s.generation: s for s in svc.generation_stats("evo")}
    assert stats[0].best == pytest.approx(0.5) and stats[0].human_share == pytest.approx(5 / 8)
    assert stats[4].best_node == "n5"


def test_sql_is_read_only_and_errors_are_typed(svc):
    assert svc.sql("SELECT count(*) AS n FROM events").column("n")[0].as_py() == 37
    with pytest.raises(ReadOnlyViolation):
        svc.sql("DELETE FROM event_log")
    with pytest.raises(QueryError):
        svc.sql("SELEC nonsense")


def test_the_index_agrees_with_the_projections_on_the_demo(demo_store):
    """Tree badges come from the index; the involvement tab from the projection: same numbers."""
    svc = LineageService(demo_store)
    view = {r[0]: r[1:] for r in rows(demo_store, "SELECT node, generation, events, human_events, ai_events, "
                                                  "system_events, autonomy_level FROM involvement")}
    nodes = {r[0]: r[1] for r in rows(demo_store, "SELECT node, children FROM nodes")}
    indexed = svc.nodes("packing", list(view))
    assert len(indexed) == len(view)
    for row in indexed:
        assert (row.generation, row.events, row.human, row.ai, row.system, row.level) == view[row.node], row.node
        assert row.children + row.links == nodes[row.node], row.node


def test_catching_up_in_pieces_equals_indexing_at_once(small_store_master, tmp_path):
    at_once = build_small_store(tmp_path / "a")
    LineageService(at_once).refresh_index()
    in_pieces = build_small_store(tmp_path / "b")
    from lineage.node_index import catch_up

    with in_pieces.writer() as w:
        catch_up(w.con, chunk=3)
    cols = "lineage, node, branch, parent, generation, missing_parent, children, events, human, ai, system, " \
           "diffs, human_diffs, diff_lines, human_lines, human_hands_on"
    assert rows(at_once, f"SELECT {cols} FROM node_index ORDER BY ALL") == \
        rows(in_pieces, f"SELECT {cols} FROM node_index ORDER BY ALL")


def test_changes_since_names_new_and_touched_nodes(svc, small_store):
    seq = svc.index_seq()
    with Tracker(small_store, lineage="evo", actor="ai:coder") as t:
        t.record("node_created", {"parents": ["n5"], "label": "live one"}, node="n6")
        t.record("annotation", {"text": "note"}, node="n4")
    svc.refresh_index()
    changes = svc.changes_since("evo", seq)
    assert [r.node for r in changes.new_nodes] == ["n6"]
    assert [r.node for r in changes.touched] == ["n4"]
    assert svc.node("evo", "n5").children == 1


def test_events_before_their_node_created_are_kept(small_store):
    with Tracker(small_store, lineage="evo", actor="ai:coder") as t:
        t.record("proposal", {"idea": "early"}, node="late")
    svc = LineageService(small_store)
    svc.refresh_index()
    assert svc.node("evo", "late").created_seq is None
    with Tracker(small_store, lineage="evo", actor="ai:coder") as t:
        t.record("node_created", {"parents": ["n1"]}, node="late")
    svc.refresh_index()
    late = svc.node("evo", "late")
    assert late.created_seq is not None and late.events == 2 and late.parent == "n1"


# -- layers ---------------------------------------------------------------------------------


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_ui_never_imports_duckdb_and_reads_only_through_the_service():
    allowed_lineage = {"lineage.service", "lineage.errors"}
    for path in sorted((ROOT / "tui").rglob("*.py")):
        imported = _imports(path)
        assert not any(m == "duckdb" or m.startswith("duckdb.") for m in imported), path
        assert not any(m == "pyarrow.parquet" for m in imported), path
        lineage_mods = {m for m in imported if m == "lineage" or m.startswith("lineage.")}
        if path.name == "cli.py":  # the command opens the store or builds the demo before the app starts
            allowed = allowed_lineage | {"lineage.commands._common", "lineage.store", "lineage.demo"}
        else:
            allowed = allowed_lineage
        assert lineage_mods <= allowed, (path, lineage_mods - allowed)


def test_the_lineage_layer_never_imports_the_ui():
    for path in sorted((ROOT / "lineage").rglob("*.py")):
        assert not any(m == "tui" or m.startswith("tui.") for m in _imports(path)), path


def test_the_opening_is_what_the_tree_and_detail_would_read_one_by_one(svc):
    opening = svc.opening(prefer="evo")
    assert opening.lineage == "evo"
    assert [r.node for r in opening.roots.rows] == [r.node for r in svc.roots("evo").rows]
    first = opening.roots.rows[0]
    assert opening.expanded.node == first.node  # the first root has children: it is the one opened
    assert [r.node for r in opening.children.rows] == [r.node for r in svc.children("evo", first.node).rows]
    assert opening.detail.row.node == first.node
    assert [e.event_id for e in opening.events] == [e.event_id for e in svc.node_events("evo", first.node)]
    assert svc.opening(prefer="no-such-lineage").lineage == max(opening.lineages, key=lambda li: li.last_seq).name


def test_the_ui_reader_lets_a_writer_in_another_process_in_at_once(small_store):
    """The service keeps its read connection open between reads; a writer in another
    process must not wait for it to linger out, and the next read sees what it wrote."""
    import subprocess
    import sys

    svc = LineageService(small_store)
    svc._reader.linger = 30.0  # longer than the test: only a waiting writer can close it
    before = svc.latest_seq()
    assert svc._reader.is_open
    code = ("import sys, time; from lineage.tracker import Tracker; t0 = time.monotonic()\n"
            "with Tracker(sys.argv[1], lineage='evo', actor='human:ana') as t:\n"
            "    t.record('annotation', {'text': 'from another process'}, node='n1')\n"
            "print(time.monotonic() - t0)")
    out = subprocess.run([sys.executable, "-c", code, str(small_store.root)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    waited = float(out.stdout.strip().splitlines()[-1])
    assert waited < 1.5, f"the writer waited {waited:.2f} s for the UI's reader"
    assert svc.latest_seq() == before + 1
