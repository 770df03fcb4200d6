"""Human versus AI involvement: shares, stages, autonomy levels, self-built nodes and
recursion depth, each worked out by hand for a lineage recorded through the real Tracker."""

from __future__ import annotations

import statistics

import orjson
import pytest
from click.testing import CliRunner

from lineage import Store, Tracker
from lineage.cli import cli
from schemas.payloads import STAGE


def diff(path: str, added: int, removed: int = 0) -> str:
    """A unified diff of ``path`` adding and removing that many lines."""
    head = f"@@ -1,{removed} +1,{added} @@" if removed else f"@@ -0,0 +1,{added} @@"
    body = [f"-old {i}" for i in range(removed)] + [f"+new {i}" for i in range(added)]
    return "\n".join([f"--- a/{path}", f"+++ b/{path}", head, *body]) + "\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """One store for the module; every test records its own lineage in it."""
    return Store.init(tmp_path_factory.mktemp("involvement") / "store")


def involvement_of(store: Store, lineage: str) -> dict[str, dict]:
    rows = store.query_arrow("SELECT * FROM involvement WHERE lineage = ?", [lineage]).to_pylist()
    return {r["node"]: r for r in rows}


def test_human_proposed_ai_implemented_human_selected_is_level_1(store):
    with Tracker(store, lineage="assist", actor="system:loop") as t:
        with t.node("seed", actor="human:ann") as seed:
            seed.code_diff(diff("pack.py", 5))
        with t.node("n1", parents=["seed"]) as n:  # node_created by system:loop
            n.proposal("sort the items first", actor="human:ann")
            n.code_diff(diff("pack.py", 3, 1), actor="ai:claude")
            n.score("fill", 0.9, actor="system:eval")
            n.select(actor="human:ann")
    got = involvement_of(store, "assist")["n1"]
    # 5 events: node_created (system), proposal (human), code_diff (ai), score (system), selection (human)
    assert (got["events"], got["human_events"], got["ai_events"], got["system_events"]) == (5, 2, 1, 2)
    assert (got["human_share"], got["ai_share"], got["system_share"]) == pytest.approx((0.4, 0.2, 0.4))
    # 4 changed lines, all by the AI
    assert (got["diff_lines"], got["ai_lines"], got["ai_line_share"], got["human_line_share"]) == (4, 4, 1.0, 0.0)
    # decisions: the proposal and the selection, both human
    assert (got["decisions"], got["human_decision_share"], got["ai_decision_share"]) == (2, 1.0, 0.0)
    assert [got[s] for s in ("propose", "implement", "experiment", "validate", "learn", "choose")] == [
        "human", "ai", "none", "system", "none", "human"]
    assert got["autonomy_level"] == 1
    assert got["self_built"] is False and got["recursion_depth"] == 0
    # the seed: a human wrote it, the loop registered nothing else: level 0
    assert involvement_of(store, "assist")["seed"]["autonomy_level"] == 0


def test_humans_implementing_most_lines_is_level_0(store):
    with Tracker(store, lineage="handmade", actor="system:loop") as t:
        with t.node("a") as n:
            n.proposal("use a heap", actor="ai:gpt-5")
            n.code_diff(diff("heap.py", 9, 1), actor="human:bob")  # 10 lines
            n.code_diff(diff("heap.py", 2), actor="ai:gpt-5")  # 2 lines
            n.review("approve", actor="ai:gpt-5")
        with t.node("b", actor="human:bob") as n:  # nothing by an AI at all
            n.annotate("notes")
    got = involvement_of(store, "handmade")
    a = got["a"]
    assert (a["diff_lines"], a["human_lines"], a["ai_lines"]) == (12, 10, 2)
    assert a["human_line_share"] == pytest.approx(10 / 12)
    assert a["implement"] == "mixed"
    assert a["autonomy_level"] == 0
    assert got["b"]["autonomy_level"] == 0
    assert got["b"]["human_share"] == 1.0 and got["b"]["diff_lines"] == 0 and got["b"]["human_line_share"] is None


def test_ai_researcher_with_humans_only_reviewing_and_selecting_is_level_2(store):
    with Tracker(store, lineage="researcher", actor="ai:scientist") as t:
        with t.node("r") as n:
            n.proposal("try attention")
            n.code_diff(diff("model.py", 4, 4))
            n.run(["python", "train.py"], status="ok")
            n.score("acc", 0.8, actor="system:eval")
            n.review("approve", "looks right", actor="human:ann")
            n.select(actor="human:ann")
        with t.node("s") as n:  # same, but a human scores it: humans evaluate, so level 1
            n.proposal("try dropout")
            n.code_diff(diff("model.py", 1, 1))
            n.score("acc", 0.7, actor="human:ann")
    got = involvement_of(store, "researcher")
    assert got["r"]["autonomy_level"] == 2
    assert got["r"]["validate"] == "mixed" and got["r"]["choose"] == "human" and got["r"]["experiment"] == "ai"
    assert (got["r"]["decisions"], got["r"]["human_decisions"], got["r"]["ai_decisions"]) == (3, 2, 1)
    assert got["s"]["autonomy_level"] == 1


def test_self_built_chain_is_level_3_with_its_recursion_depth(store):
    """seed (human) -> g1 -> g2 -> g3 -> g4 -> g5, each built by an AI that is an ancestor
    node (actor_node). g4 gets a human review, so it is level 2 and ends the run."""
    with Tracker(store, lineage="rsi", actor="system:loop") as t:
        with t.node("seed", actor="human:ann") as n:
            n.code_diff(diff("agent.py", 20))

        def built_by(node: str, parents: list[str], builder: str):
            n = t.node(node, parents=parents, actor="ai:agent", actor_node=builder)
            n.proposal(f"improve {parents[0]}")
            n.code_diff(diff("agent.py", 2, 1), actor_node=builder)
            n.score("solve_rate", 0.5, actor="system:bench")
            return n

        built_by("g1", ["seed"], "seed")
        built_by("g2", ["g1"], "g1")
        built_by("g3", ["g2"], "g1")  # a grandparent builds: still an ancestor
        built_by("g4", ["g3"], "g3").review("approve", actor="human:bob")
        built_by("g5", ["g4"], "g4")
        built_by("x", ["g1"], "g2")  # g2 is not an ancestor of x (it is x's sibling)
        with t.node("y", parents=["g1"], actor="ai:gpt-5") as n:  # an outside AI, not a node
            n.code_diff(diff("agent.py", 1))
        built_by("z", ["g3", "x"], "g3")  # crossover: the longer run comes through g3
    got = involvement_of(store, "rsi")
    expect = {  # node: (autonomy_level, self_built, recursion_depth)
        "seed": (0, False, 0),
        "g1": (3, True, 1),
        "g2": (3, True, 2),
        "g3": (3, True, 3),
        "g4": (2, True, 0),
        "g5": (3, True, 1),
        "x": (3, False, 0),
        "y": (3, False, 0),
        "z": (3, True, 4),
    }
    assert {k: (v["autonomy_level"], v["self_built"], v["recursion_depth"]) for k, v in got.items()} == expect
    assert got["g3"]["producer_nodes"] == ["g1"] and got["x"]["producer_nodes"] == ["g2"]
    assert got["g1"]["ai_share"] == pytest.approx(3 / 4) and got["g1"]["system_share"] == pytest.approx(1 / 4)


def test_a_node_with_neither_human_nor_ai_events_has_no_level(store):
    with Tracker(store, lineage="automation", actor="system:loop") as t, t.node("a") as n:
        n.score("acc", 0.5, actor="system:eval")
    got = involvement_of(store, "automation")["a"]
    assert got["autonomy_level"] is None and got["system_share"] == 1.0


def test_rollups_pool_events_per_generation_and_per_lineage(store):
    with Tracker(store, lineage="rollup", actor="ai:m") as t:
        with t.node("seed", actor="human:ann") as n:  # gen 0: 2 human events, L0
            n.code_diff(diff("a.py", 1))
        with t.node("a", parents=["seed"]) as n:  # gen 1: H1 A2, L1
            n.proposal("p", actor="human:ann")
            n.code_diff(diff("a.py", 1, 1))
        with t.node("b", parents=["seed"]) as n:  # gen 1: H1 A3, L2
            n.proposal("q")
            n.code_diff(diff("a.py", 2, 1))
            n.review("approve", actor="human:ann")
        with t.node("c", parents=["a"]) as n:  # gen 2: A2, L3 (not self-built)
            n.code_diff(diff("a.py", 1, 1))
    gens = {r["generation"]: r for r in store.query_arrow(
        "SELECT * FROM involvement_by_generation WHERE lineage = 'rollup'").to_pylist()}
    assert sorted(gens) == [0, 1, 2]
    assert (gens[0]["nodes"], gens[0]["events"], gens[0]["human_share"], gens[0]["level0"]) == (1, 2, 1.0, 1)
    g1 = gens[1]
    assert (g1["nodes"], g1["events"]) == (2, 7)
    assert (g1["human_share"], g1["ai_share"]) == pytest.approx((2 / 7, 5 / 7))
    assert (g1["level1"], g1["level2"], g1["mean_autonomy"]) == (1, 1, 1.5)
    assert g1["diff_lines"] == 5 and g1["ai_line_share"] == 1.0
    assert gens[2]["human_share"] == 0.0 and gens[2]["level3"] == 1
    (lin,) = store.query_arrow("SELECT * FROM involvement_by_lineage WHERE lineage = 'rollup'").to_pylist()
    assert (lin["nodes"], lin["generations"], lin["events"]) == (4, 3, 11)
    assert lin["human_share"] == pytest.approx(4 / 11)
    assert [lin[f"level{i}"] for i in range(4)] == [1, 1, 1, 1]
    slope = statistics.linear_regression([0, 1, 1, 2], [1.0, 1 / 3, 1 / 4, 0.0]).slope
    assert lin["human_share_slope"] == pytest.approx(slope) and slope < 0


def test_events_on_another_branch_do_not_count_toward_a_node(store):
    with Tracker(store, lineage="branches", actor="ai:agent") as t:
        with t.node("a") as n:
            n.code_diff(diff("x.py", 1))
        exp = t.branch_from("a", "exp", actor="human:ann")
        exp.record("review", {"verdict": "reject", "text": "not on my branch"}, node="a", actor="human:ann")
        with exp.node("e1", parents=["a"]) as n:
            n.code_diff(diff("x.py", 1, 1))
    got = involvement_of(store, "branches")
    assert got["a"]["branch"] == "main" and got["a"]["events"] == 2 and got["a"]["autonomy_level"] == 3
    assert got["e1"]["branch"] == "exp" and got["e1"]["generation"] == 1


def test_a_retracted_event_does_not_count_and_a_retracted_retraction_restores_it(store):
    with Tracker(store, lineage="retract", actor="ai:agent") as t:
        with t.node("a") as n:
            n.code_diff(diff("x.py", 1))
            review = n.review("approve", actor="human:ann")
        assert involvement_of(store, "retract")["a"]["autonomy_level"] == 2
        first = t.record("retraction", {"event_id": review.event_id, "reason": "wrong node"}, actor="human:ann")
        assert involvement_of(store, "retract")["a"]["autonomy_level"] == 3
        t.record("retraction", {"event_id": first.event_id.replace("-", "").upper(), "reason": "it was right"},
                 actor="human:ann")
        assert involvement_of(store, "retract")["a"]["autonomy_level"] == 2
    # as of the first retraction, in the time-travel macro
    (row,) = store.query_arrow(
        "SELECT autonomy_level FROM involvement_at(?) WHERE lineage = 'retract'", [first.seq]).to_pylist()
    assert row["autonomy_level"] == 3


def test_every_kind_maps_to_its_research_loop_stage(store):
    with Tracker(store, lineage="stages", actor="ai:agent") as t, t.node("a") as n:
        n.proposal("p")
        n.code_diff(diff("x.py", 1))
        n.dataset("d", role="train", uri="file:///d")
        n.run("make", status="ok")
        n.checkpoint(uri="file:///ckpt")
        n.score("acc", 1.0)
        n.review("comment", "fine")
        n.annotate("learned")
        n.select()
    rows = store.query_arrow("SELECT kind, stage FROM node_events WHERE lineage = 'stages'").to_pylist()
    assert {r["kind"]: r["stage"] for r in rows} == {"node_created": None, **STAGE}


def test_involvement_command_prints_nodes_generations_and_lineages(store):
    with Tracker(store, lineage="cli", actor="ai:agent") as t, t.node("a") as n:
        n.proposal("p", actor="human:ann")
        n.code_diff(diff("x.py", 1))
    runner = CliRunner()
    out = runner.invoke(cli, ["involvement", "--store", str(store.root), "--lineage", "cli", "--json"])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.output)
    assert [n["node"] for n in data["nodes"]] == ["a"] and data["nodes"][0]["autonomy_level"] == 1
    assert data["generations"][0]["generation"] == 0 and data["lineages"][0]["lineage"] == "cli"

    out = runner.invoke(cli, ["involvement", "a", "--store", str(store.root), "--lineage", "cli"])
    assert out.exit_code == 0, out.output
    assert "H33 A67 S0 L1" in out.output and "implement" in out.output

    out = runner.invoke(cli, ["involvement", "nope", "--store", str(store.root)])
    assert out.exit_code == 2 and "no node 'nope'" in out.output
