"""A git history imports as a lineage with honest attribution: people, AI agents, mixed work, bots.

Every test builds a real repository with the git command: merges, renames, binary files,
an empty commit, non-UTF-8 messages, and people whose names or emails merely contain an
agent's name.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from lineage.agents.attribution import Identity, attribute_commit, classify, load_mapping
from lineage.agents.correction import attribute_node, effective_actors
from lineage.agents.gitlog import import_git, parse_patch
from lineage.cli import cli
from lineage.errors import LineageError
from lineage.store import Store
from lineage.verify import verify

ALICE = ("Alice Martin", "alice@example.com")
CLAUDE_CODE = "\n\n🤖 Generated with [Claude Code](https://claude.com/claude-code)\n"


class Repo:
    """A scratch repository driven by the git command, with a fixed clock."""

    def __init__(self, path: Path):
        self.path = path
        self.clock = 1_700_000_000
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", ALICE[0])
        self.git("config", "user.email", ALICE[1])
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None) -> str:
        out = subprocess.run(["git", "-C", str(self.path), *args], input=input, capture_output=True,
                             check=True, env={**os.environ, **(env or {})})
        return out.stdout.decode().strip()

    def write(self, rel: str, data: str | bytes) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def commit(self, message: str | bytes, author: tuple[str, str] = ALICE, *, files: dict | None = None,
               empty: bool = False, config: tuple[str, ...] = ()) -> str:
        for rel, data in (files or {}).items():
            if data is None:
                self.git("rm", "-q", rel)
            else:
                self.write(rel, data)
                self.git("add", rel)
        self.clock += 3600
        when = f"{self.clock} +0200"
        env = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": when,
               "GIT_COMMITTER_NAME": "Committer", "GIT_COMMITTER_EMAIL": "ci@example.com",
               "GIT_COMMITTER_DATE": f"{self.clock + 60} +0000"}
        msg = message.encode() if isinstance(message, str) else message
        extra = [a for c in config for a in ("-c", c)]
        subprocess.run(["git", "-C", str(self.path), *extra, "commit", "-q", "--allow-empty-message", "-F", "-",
                        *(["--allow-empty"] if empty else [])], input=msg, check=True, capture_output=True,
                       env={**os.environ, **env})
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def raw_commit(self, message: bytes) -> str:
        """A commit whose message bytes git keeps exactly (git commit would re-encode them)."""
        tree = self.git("rev-parse", "HEAD^{tree}")
        self.clock += 3600
        body = (f"tree {tree}\nparent {self.head()}\n"
                f"author Bob Chen <bob@openhands-fan.org> {self.clock} +0000\n"
                f"committer Bob Chen <bob@openhands-fan.org> {self.clock} +0000\n\n").encode() + message
        sha = self.git("hash-object", "-t", "commit", "-w", "--stdin", input=body)
        self.git("update-ref", "refs/heads/main", sha)
        return sha


def events(store: Store, where: str = "TRUE", params: list | None = None) -> list[dict]:
    rows = store.query_arrow(f"SELECT seq, event_id, node, kind, actor, actor_kind, occurred_at, payload::VARCHAR AS payload "
                             f"FROM events WHERE {where} ORDER BY seq", params).to_pylist()
    for r in rows:
        r["payload"] = orjson.loads(r["payload"])
    return rows


def by_node(store: Store) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for e in events(store):
        out.setdefault(e["node"], {})[e["kind"]] = e
    return out


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """One repository holding every attribution case, imported once into a store."""
    base = tmp_path_factory.mktemp("git")
    r = Repo(base / "project")
    c: dict[str, str] = {}
    c["root"] = r.commit("Initial commit\n\nA loop that packs bins.", files={
        "pack.py": "def pack(items):\n    -- a line that starts with dashes\n    return []\n",
        "README.md": "# packing\n"})
    c["openhands"] = r.commit("Sort items first", ("openhands", "openhands@all-hands.dev"), files={
        "pack.py": "def pack(items):\n    items = sorted(items)\n    return []\n"})
    c["copilot"] = r.commit("Add tests\n\nCo-authored-by: Alice Martin <alice@example.com>",
                            ("copilot-swe-agent[bot]", "198982749+Copilot@users.noreply.github.com"),
                            files={"tests/test_pack.py": "def test_pack():\n    assert True\n"})
    c["devin"] = r.commit("Refactor", ("devin-ai-integration[bot]", "158243242+devin-ai-integration[bot]@users.noreply.github.com"),
                          files={"util.py": "X = 1\n"})
    c["claude_bot"] = r.commit("Fix typo", ("claude[bot]", "209825114+claude[bot]@users.noreply.github.com"),
                               files={"README.md": "# Packing\n"})
    c["claude_plain"] = r.commit("Speed up\n\nCo-Authored-By: Claude <noreply@anthropic.com>",
                                 files={"util.py": "X = 2\nY = 3\n"})
    c["claude_opus"] = r.commit("Best-fit decreasing" + CLAUDE_CODE + "\nCo-Authored-By: Claude Opus 4.5 <noreply@anthropic.com>",
                                files={"pack.py": "def pack(items):\n    items = sorted(items, reverse=True)\n    return [items]\n"})
    c["openhands_coauthor"] = r.commit("Docs\n\nCo-authored-by: openhands <openhands@all-hands.dev>",
                                       files={"docs.md": "docs\n"})
    c["marker_only"] = r.commit("Cache results" + CLAUDE_CODE, files={"cache.py": "CACHE = {}\n"})
    c["dependabot"] = r.commit("Bump numpy from 1.0 to 2.0", ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com"),
                               files={"requirements.txt": "numpy==2.0\n"})
    c["renovate"] = r.commit("Update actions", ("renovate[bot]", "29139614+renovate[bot]@users.noreply.github.com"),
                             files={"ci.yml": "on: push\n"})
    c["precommit"] = r.commit("[pre-commit.ci] auto fixes", ("pre-commit-ci[bot]", "66853113+pre-commit-ci[bot]@users.noreply.github.com"),
                              files={"ci.yml": "on: [push]\n"})
    c["claudette"] = r.commit("Claudette's change\n\nCo-authored-by: Claudette Roy <claudette@example.com>",
                              ("Claudette Roy", "claudette@example.com"), files={"c.txt": "c\n"})
    c["openhands_fan"] = r.commit("Bob's change", ("Bob Chen", "bob@openhands-fan.org"), files={"b.txt": "b\n"})
    c["claude_person"] = r.commit("Claude the person", ("Claude", "claude.dupont@example.fr"), files={"d.txt": "d\n"})
    c["rename"] = r.commit("Move util", files={"util.py": None, "lib/util.py": "X = 2\nY = 3\n"})
    c["binary"] = r.commit("Add logo", files={"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00binary\x00"})
    c["binary_edit"] = r.commit("New logo", files={"logo.png": b"\x89PNG\r\n\x1a\n\x00\x01changed\x00"})
    c["empty"] = r.commit("Empty: trigger CI", empty=True)
    c["latin1_declared"] = r.commit("Caf\xe9 au lait".encode("latin-1"), files={"e.txt": "e\n"},
                                    config=("i18n.commitEncoding=ISO-8859-1",))
    c["not_utf8"] = r.raw_commit(b"Caf\xe9 \xff broken bytes\n")
    # A feature branch by an agent, merged by a person.
    r.git("checkout", "-q", "-b", "feature")
    c["feature"] = r.commit("Feature by openhands", ("openhands", "openhands@all-hands.dev"),
                            files={"feature.py": "def feature():\n    return 1\n"})
    r.git("checkout", "-q", "main")
    c["main_side"] = r.commit("Meanwhile on main", files={"main.txt": "m\n"})
    r.clock += 3600
    r.git("merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature",
          env={"GIT_AUTHOR_DATE": f"{r.clock} +0000", "GIT_COMMITTER_DATE": f"{r.clock} +0000"})
    c["merge"] = r.head()
    store = Store.init(base / "store")
    summary = import_git(store, r.path, lineage="project")
    return r, c, store, summary


# Expected: (involvement, actor of node/proposal, actor of code_diff or None if no diff)
EXPECTED = {
    "root": ("human", "human:Alice Martin", "human:Alice Martin"),
    "openhands": ("ai", "ai:openhands", "ai:openhands"),
    "copilot": ("mixed", "human:Alice Martin", "ai:copilot"),
    "devin": ("ai", "ai:devin", "ai:devin"),
    "claude_bot": ("ai", "ai:claude", "ai:claude"),
    "claude_plain": ("mixed", "human:Alice Martin", "ai:claude"),
    "claude_opus": ("mixed", "human:Alice Martin", "ai:claude-opus-4.5"),
    "openhands_coauthor": ("mixed", "human:Alice Martin", "ai:openhands"),
    "marker_only": ("mixed", "human:Alice Martin", "ai:claude-code"),
    "dependabot": ("system", "system:dependabot", "system:dependabot"),
    "renovate": ("system", "system:renovate", "system:renovate"),
    "precommit": ("system", "system:pre-commit-ci", "system:pre-commit-ci"),
    "claudette": ("human", "human:Claudette Roy", "human:Claudette Roy"),
    "openhands_fan": ("human", "human:Bob Chen", "human:Bob Chen"),
    "claude_person": ("human", "human:Claude", "human:Claude"),
    "rename": ("human", "human:Alice Martin", "human:Alice Martin"),
    "binary": ("human", "human:Alice Martin", "human:Alice Martin"),
    "binary_edit": ("human", "human:Alice Martin", "human:Alice Martin"),
    "empty": ("human", "human:Alice Martin", None),
    "latin1_declared": ("human", "human:Alice Martin", "human:Alice Martin"),
    "not_utf8": ("human", "human:Bob Chen", None),
    "feature": ("ai", "ai:openhands", "ai:openhands"),
    "main_side": ("human", "human:Alice Martin", "human:Alice Martin"),
    "merge": ("human", "human:Alice Martin", "human:Alice Martin"),
}


def test_every_commit_is_attributed_with_its_rule_and_evidence(history):
    _, c, store, summary = history
    nodes = by_node(store)
    assert set(nodes) == set(c.values())
    assert summary["commits"] == len(c)
    for name, (involvement, lead, implementer) in EXPECTED.items():
        ev = nodes[c[name]]
        assert ev["node_created"]["actor"] == lead, name
        assert ev["proposal"]["actor"] == lead, name
        if implementer is None:
            assert "code_diff" not in ev, name
        else:
            assert ev["code_diff"]["actor"] == implementer, name
        for e in ev.values():
            att = e["payload"]["attribution"]
            assert att["involvement"] == involvement, name
            assert att["actor"] == e["actor"], name
            assert att["rule"] and att["evidence"], name
    counts = {k: sum(1 for v in EXPECTED.values() if v[0] == k) for k in ("human", "ai", "mixed", "system")}
    assert {k: summary[f"{k}_commits"] for k in counts} == counts


def test_mixed_commits_keep_the_model_name_and_the_evidence(history):
    _, c, store, _ = history
    diff = by_node(store)[c["claude_opus"]]["code_diff"]
    att = diff["payload"]["attribution"]
    assert att["rule"] == "co-author-ai"
    assert att["human"] == "human:Alice Martin"
    assert att["ai"] == ["ai:claude-opus-4.5"]
    assert att["agent"] == "claude-code"
    assert any("Claude Opus 4.5 <noreply@anthropic.com>" in e for e in att["evidence"])
    assert any("Generated with [Claude Code]" in e for e in att["evidence"])
    marker = by_node(store)[c["marker_only"]]["code_diff"]["payload"]["attribution"]
    assert marker["rule"] == "marker" and marker["agent"] == "claude-code"


def test_people_whose_names_contain_an_agent_name_stay_people(history):
    _, c, store, _ = history
    nodes = by_node(store)
    for name in ("claudette", "openhands_fan", "claude_person"):
        att = nodes[c[name]]["node_created"]["payload"]["attribution"]
        assert att["rule"] == "person", name
        assert att["involvement"] == "human", name


def test_a_merge_has_two_parents_a_flagged_diff_and_a_selection(history):
    _, c, store, _ = history
    ev = by_node(store)[c["merge"]]
    assert ev["node_created"]["payload"]["parents"] == [c["main_side"], c["feature"]]
    assert ev["code_diff"]["payload"]["merge"] is True
    assert ev["code_diff"]["payload"]["base"] == c["main_side"]
    assert ev["code_diff"]["payload"]["paths"] == ["feature.py"]
    sel = ev["selection"]
    assert sel["payload"]["node"] == c["feature"] and sel["payload"]["purpose"] == "parent"
    assert sel["actor"] == "human:Alice Martin"


def test_renames_binary_files_and_line_counts(history):
    _, c, store, _ = history
    nodes = by_node(store)
    root = nodes[c["root"]]["code_diff"]["payload"]
    pack = next(f for f in root["files"] if f["path"] == "pack.py")
    assert (pack["change"], pack["lines_added"], pack["lines_removed"]) == ("added", 3, 0)
    # the line "    -- a line..." removed later is counted once, not taken for a header
    oh = nodes[c["openhands"]]["code_diff"]["payload"]
    assert (oh["lines_added"], oh["lines_removed"]) == (1, 1)
    ren = nodes[c["rename"]]["code_diff"]["payload"]
    assert ren["files"] == [{"path": "lib/util.py", "old_path": "util.py", "change": "renamed",
                             "lines_added": 0, "lines_removed": 0, "similarity": 100}]
    for name, content in (("binary", b"\x89PNG\r\n\x1a\n\x00\x00binary\x00"),
                          ("binary_edit", b"\x89PNG\r\n\x1a\n\x00\x01changed\x00")):
        f = nodes[c[name]]["code_diff"]["payload"]["files"][0]
        assert f["change"] == "binary" and f["path"] == "logo.png"
        assert store.objects.get(f["object"]) == content
    assert nodes[c["binary"]]["code_diff"]["payload"]["files"][0]["added"] is True


def test_the_diff_text_is_an_object_that_git_apply_accepts(history, tmp_path):
    r, c, store, _ = history
    diff = by_node(store)[c["claude_opus"]]["code_diff"]["payload"]
    text = store.objects.get(diff["diff_object"])
    assert text.startswith(b"diff --git a/pack.py b/pack.py")
    # the change is in that commit's tree: on a checkout of it, the diff applies in reverse
    wt = tmp_path / "wt"
    subprocess.run(["git", "-C", str(r.path), "worktree", "add", "-q", "--detach", str(wt), c["claude_opus"]], check=True)
    check = subprocess.run(["git", "-C", str(wt), "apply", "--check", "-R", "-"], input=text, capture_output=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "-C", str(r.path), "worktree", "remove", "--force", str(wt)], check=True)


def test_messages_that_are_not_utf8_are_kept_exactly(history):
    _, c, store, _ = history
    nodes = by_node(store)
    declared = nodes[c["latin1_declared"]]["proposal"]["payload"]
    assert declared["idea"] == "Café au lait" and "message_b64" not in declared
    raw = nodes[c["not_utf8"]]["proposal"]["payload"]
    assert base64.b64decode(raw["message_b64"]) == b"Caf\xe9 \xff broken bytes\n"
    assert raw["idea"] == "Caf\ufffd \ufffd broken bytes"


def test_empty_commits_and_times(history):
    _, c, store, _ = history
    ev = by_node(store)[c["empty"]]
    assert set(ev) == {"node_created", "proposal"}
    node = ev["node_created"]
    assert node["payload"]["label"] == "Empty: trigger CI"
    # occurred_at is the author time; the committer's is in the payload
    author = subprocess.run(["git", "-C", str(history[0].path), "log", "-1", "--format=%at %cI", c["empty"]],
                            capture_output=True, text=True, check=True).stdout.split()
    assert int(node["occurred_at"].timestamp()) == int(author[0])
    assert node["payload"]["committer_date"] == author[1]
    assert node["payload"]["author_date"].endswith("+02:00")


def test_reimport_adds_nothing_and_the_chain_verifies(history):
    r, _, store, first = history
    again = import_git(store, r.path, lineage="project")
    assert again["events_added"] == 0 and again["commits"] == first["commits"]
    assert verify(store).ok


def test_a_new_commit_is_all_a_reimport_adds(tmp_path):
    r = Repo(tmp_path / "repo")
    r.commit("one", files={"a": "1\n"})
    store = Store.init(tmp_path / "store")
    import_git(store, r.path)
    sha = r.commit("two", files={"a": "2\n"})
    summary = import_git(store, r.path)
    assert summary["events_added"] == 3
    assert {e["node"] for e in events(store, "seq > 3")} == {sha}
    assert summary["lineage"] == "repo"


def test_a_mapping_file_overrides_and_extends_the_rules(tmp_path):
    r = Repo(tmp_path / "repo")
    a = r.commit("by hermes", ("Hermes", "hermes@localhost"), files={"a": "1\n"})
    b = r.commit("by openhands, really Bob", ("openhands", "openhands@all-hands.dev"), files={"a": "2\n"})
    co = r.commit("pairing\n\nCo-authored-by: Hermes <hermes@localhost>", files={"a": "3\n"})
    ci = r.commit("deploy", ("Deploy Bot", "deploy@ci.example.com"), files={"a": "4\n"})
    toml = tmp_path / "who.toml"
    toml.write_text('[identities]\n"Hermes <hermes@localhost>" = "ai:hermes-3"\n'
                    '"openhands@all-hands.dev" = "human:Bob Chen"\n"Deploy Bot" = "system:deploy"\n')
    store = Store.init(tmp_path / "store")
    import_git(store, r.path, mapping=toml)
    nodes = by_node(store)
    assert nodes[a]["code_diff"]["actor"] == "ai:hermes-3"
    assert nodes[a]["code_diff"]["payload"]["attribution"]["rule"] == "mapping"
    assert nodes[b]["code_diff"]["actor"] == "human:Bob Chen"
    assert (nodes[co]["proposal"]["actor"], nodes[co]["code_diff"]["actor"]) == ("human:Alice Martin", "ai:hermes-3")
    assert nodes[ci]["code_diff"]["actor"] == "system:deploy"
    # the same in JSON
    js = tmp_path / "who.json"
    js.write_text(json.dumps({"hermes@localhost": "ai:hermes-json"}))
    assert classify(Identity("Hermes", "hermes@localhost"), load_mapping(js)).actor == "ai:hermes-json"


def test_a_bad_mapping_file_names_the_file_and_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('"alice@example.com" = "robot:alice"\n')
    with pytest.raises(LineageError, match=r"bad\.toml.*alice@example\.com"):
        load_mapping(bad)


@pytest.mark.parametrize(("author", "message", "involvement", "implementer"), [
    (("Claude Sonnet 4.5", "noreply@anthropic.com"), "x", "ai", "ai:claude-sonnet-4.5"),
    (("Paul (aider)", "paul@example.com"), "x", "mixed", "ai:aider"),
    (("Paul", "paul@example.com"), "x\n\nCo-authored-by: aider (anthropic/claude-3-5-sonnet) <noreply@aider.chat>",
     "mixed", "ai:claude-3-5-sonnet"),
    (("Paul", "paul@example.com"), "x\n\nCo-authored-by: Claude <claude@dupont.fr>", "human", "human:Paul"),
    (("some-app[bot]", "1+some-app[bot]@users.noreply.github.com"), "x", "system", "system:some-app"),
    (("openhands", "bob@gmail.com"), "x", "human", "human:openhands"),
    (("Bob", "123+claude[bot]@users.noreply.github.com"), "x", "ai", "ai:claude"),
])
def test_attribution_rules(author, message, involvement, implementer):
    att = attribute_commit(Identity(*author), message)
    assert (att.involvement, att.implementer) == (involvement, implementer)


def test_patch_parsing_of_quoted_and_spaced_paths():
    patch = (b'diff --git "a/t\\303\\251st\\tx.txt" "b/t\\303\\251st\\tx.txt"\n'
             b"new file mode 100644\nindex 0000000..1111111\n--- /dev/null\n"
             b'+++ "b/t\\303\\251st\\tx.txt"\n@@ -0,0 +1 @@\n+hi\n'
             b"diff --git a/with space.txt b/with space.txt\nnew file mode 100644\nindex 0000000..e69de29\n")
    files = parse_patch(patch)
    assert [f["path"] for f in files] == ["tést\tx.txt", "with space.txt"]
    assert files[0]["lines_added"] == 1 and files[1]["change"] == "added"


def test_cli_import_git_and_attribute(history, tmp_path):
    r, c, _, _ = history
    store_dir = tmp_path / "cli-store"
    runner = CliRunner()
    res = runner.invoke(cli, ["import-git", str(r.path), "--lineage", "proj", "--store", str(store_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["commits"] == len(c)
    res = runner.invoke(cli, ["attribute", c["claude_opus"][:10], "human:Alice Martin", "--kind", "code_diff",
                              "--by", "human:Carol", "--reason", "written by hand", "--store", str(store_dir)])
    assert res.exit_code == 0, res.output
    store = Store.open(store_dir)
    eff = {e["event_id"]: e for e in effective_actors(store, "proj") if e["node"] == c["claude_opus"]}
    diff = next(e for e in eff.values() if e["kind"] == "code_diff")
    assert (diff["recorded_actor"], diff["actor"], diff["actor_kind"], diff["corrected"]) == (
        "ai:claude-opus-4.5", "human:Alice Martin", "human", True)
    note = events(store, "kind = 'annotation'")[-1]
    assert note["actor"] == "human:Carol" and note["payload"]["topic"] == "attribution"
    assert note["payload"]["previous"] == {diff["event_id"]: "ai:claude-opus-4.5"}
    # a second correction wins over the first; the original event is untouched
    attribute_node(store, c["claude_opus"], "ai:claude-sonnet-4.5", kinds=["code_diff"], by="human:Carol")
    diff2 = next(e for e in effective_actors(store, "proj") if e["event_id"] == diff["event_id"])
    assert diff2["actor"] == "ai:claude-sonnet-4.5" and diff2["recorded_actor"] == "ai:claude-opus-4.5"
    res = runner.invoke(cli, ["import-git", str(tmp_path), "--store", str(store_dir)])
    assert res.exit_code == 2 and "not a git repository" in res.output


def test_lineage_import_git_through_the_importers_registry(history, tmp_path, monkeypatch):
    import lineage.importers as importers

    monkeypatch.setitem(importers._MODULES, "git", "lineage.agents.formats.git")
    r, c, _, first = history
    store = Store.init(tmp_path / "store")
    summary = importers.import_source(store, "git", r.path, lineage="project")
    assert (summary.lineages, summary.nodes, summary.events) == (["project"], len(c), first["events_added"])
    assert summary.by_kind["code_diff"] == sum(1 for v in EXPECTED.values() if v[2])
    # the same ids as `lineage import-git`: importing both ways adds the history once
    assert import_git(store, r.path, lineage="project")["events_added"] == 0
    assert importers.count_records("git", r.path) == len(c)


def test_replay_rebuilds_a_commit_exactly_as_git_has_it(history, tmp_path):
    if cli.get_command(click.Context(cli), "checkout") is None:
        pytest.skip("the replay layer is not installed")
    r, c, store, _ = history
    dest, expected = tmp_path / "rebuilt", tmp_path / "expected"
    res = CliRunner().invoke(cli, ["checkout", c["merge"], str(dest), "--store", str(store.root)])
    assert res.exit_code == 0, res.output
    expected.mkdir()
    archive = subprocess.run(["git", "-C", str(r.path), "archive", c["merge"]], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(expected)], input=archive, check=True)

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and ".lineage" not in p.relative_to(root).parts}

    assert tree(dest) == tree(expected)
