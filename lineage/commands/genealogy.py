"""Genealogy commands: tree, involvement, signals. Each reads the SQL projections, so
whatever they print, `lineage sql` can query too."""

from __future__ import annotations

import sys

import click
import orjson
from rich.table import Table
from rich.text import Text

from lineage import genealogy, involvement
from lineage import signals as oversight
from lineage.commands._common import console, open_store, store_option

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def register(cli: click.Group) -> None:
    cli.add_command(tree)
    cli.add_command(involvement_command)
    cli.add_command(signals_command)


def _dump(obj) -> None:
    sys.stdout.buffer.write(orjson.dumps(genealogy.plain(obj), default=str, option=orjson.OPT_INDENT_2) + b"\n")


# -- tree -----------------------------------------------------------------------------------


def _tree_line(line: genealogy.TreeLine) -> Text:
    r = line.row
    text = Text(genealogy.guides(line), style="dim")
    text.append(r["node"], style="bold")
    text.append(f"  g{r['generation']}", style="dim")
    if r["label"]:
        text.append(f"  {r['label']}")
    scores = genealogy.score_text(r["scores"])
    if scores:
        text.append(f"  {scores}", style="green")
    if r["is_best"]:
        text.append(" ★", style="bold yellow")
    if r["status"] in ("failed", "rejected", "accepted"):
        text.append(f"  [{r['status']}]", style="red" if r["status"] != "accepted" else "green")
    if r.get("autonomy_level") is not None or r.get("human_share") is not None:
        text.append(f"  {involvement.badge(r)}", style="magenta")
    if r["signals"]:
        style = _SEVERITY_STYLE.get(genealogy.severity_name(r["severity"]) or "", "yellow")
        text.append(f"  ⚠ {', '.join(r['signals'])}", style=style)
    if line.also_from:
        text.append(f"  ⊕ also from {', '.join(line.also_from)}", style="blue")
    if line.from_outside:
        text.append(f"  ↖ from {', '.join(line.from_outside)}", style="blue")
    if r["missing_parents"]:
        text.append(f"  ✗ missing parent {', '.join(r['missing_parents'])}", style="red")
    return text


@click.command()
@store_option
@click.option("--lineage", "lineage_name", default=None, help="Only this lineage.")
@click.option("--branch", default=None, help="Only the nodes of this branch.")
def tree(store_dir, lineage_name, branch) -> None:
    """Show the genealogy: each node under its first parent, with its generation, label,
    latest scores, involvement badge and oversight signals.

    \b
    Badge  H40 A50 S10 L2 ↺1: percent of the node's events by humans, AI and system
           tools; autonomy level L0-L3; ↺n self-built (by an ancestor), n the length
           of the self-built level-3 run ending here.
    Marks  ★ best latest score of its lineage on some metric;  ⚠ oversight signals
           (lineage signals);  ⊕ further parents (crossover, merge);  ↖ parents on
           another branch;  ✗ a parent that was never recorded.
    """
    store = open_store(store_dir)
    trees = genealogy.tree(store, lineage=lineage_name, branch=branch)
    if not trees:
        what = " ".join(filter(None, [lineage_name and f"lineage {lineage_name!r}", branch and f"branch {branch!r}"]))
        console.print(f"no nodes{' in ' + what if what else ''} (store {store.root})")
        return
    for i, (name, lines) in enumerate(trees.items()):
        if i:
            console.print()
        gens = [ln.row["generation"] for ln in lines if ln.row["generation"] is not None] or [0]
        span = f"generation {min(gens)}" if min(gens) == max(gens) else f"generations {min(gens)}-{max(gens)}"
        head = Text(f"{name}", style="bold underline")
        head.append(f"  {len(lines)} node{'s' if len(lines) != 1 else ''}, {span}"
                    + (f", branch {branch}" if branch else ""), style="dim")
        console.print(head, soft_wrap=True)
        for line in lines:
            console.print(_tree_line(line), soft_wrap=True)


# -- involvement --------------------------------------------------------------------------


def _shares(row: dict, prefix: str = "") -> str:
    return "/".join(involvement.percent(row.get(f"{k}_{prefix}share")) for k in ("human", "ai", "system"))


def _self_built(row: dict) -> str:
    if not row["self_built"]:
        return ""
    return f"↺{row['recursion_depth']}" if row["recursion_depth"] else "↺"


def _table(title: str, columns: list[str], right: set[str]) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", header_style="bold", box=None)
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    return t


def _node_table(rows: list[dict]) -> Table:
    many = len({r["lineage"] for r in rows}) > 1
    t = _table("per node  (shares in % human/ai/system; stages P I E V L C)",
               [*(["lineage"] if many else []), "node", "gen", "events", "lines", "decisions", "stages",
                "level", "self"], {"gen"})
    for r in rows:
        t.add_row(*([r["lineage"]] if many else []), r["node"], str(r["generation"]), _shares(r),
                  _shares(r, "line_"), _shares(r, "decision_"), involvement.stages_text(r),
                  involvement.level_text(r["autonomy_level"]), _self_built(r))
    return t


def _rollup_table(rows: list[dict], title: str, key: str | None) -> Table:
    t = _table(title, ["lineage", *(["gen"] if key else []), "nodes", "events", "lines", "decisions",
                       "L0/L1/L2/L3/L?", "self-built", "depth"],
               {"gen", "nodes", "self-built", "depth"})
    for r in rows:
        t.add_row(r["lineage"], *([str(r[key])] if key else []), str(r["nodes"]), _shares(r),
                  _shares(r, "line_"), _shares(r, "decision_"),
                  "/".join(str(r[k]) for k in ("level0", "level1", "level2", "level3", "level_unknown")),
                  str(r["self_built"]), str(r["max_recursion_depth"]))
    return t


def _node_detail(r: dict) -> Table:
    t = Table(title=f"{r['lineage']} / {r['node']}", title_justify="left", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("badge", involvement.badge(r))
    t.add_row("autonomy", involvement.LEVELS.get(r["autonomy_level"], "unknown: no human or AI event in its making"))
    t.add_row("self-built", f"yes, by {', '.join(r['producer_nodes'])}; recursion depth {r['recursion_depth']}"
              if r["self_built"] else "no")
    t.add_row("events", f"{r['events']}: human {r['human_events']}, ai {r['ai_events']}, system {r['system_events']}")
    t.add_row("diff lines", f"{r['diff_lines']}: human {r['human_lines']}, ai {r['ai_lines']}, system {r['system_lines']}")
    t.add_row("decisions", f"{r['decisions']}: human {r['human_decisions']}, ai {r['ai_decisions']}, "
              f"system {r['system_decisions']}")
    for stage in involvement.STAGES:
        t.add_row(stage, r[stage])
    return t


@click.command("involvement")
@store_option
@click.argument("node", required=False)
@click.option("--lineage", "lineage_name", default=None, help="Only this lineage.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {nodes, generations, lineages}.")
def involvement_command(store_dir, node, lineage_name, as_json) -> None:
    """How much of each node humans, AI and system tools built.

    Per node (or only NODE): shares by event count, by changed diff lines and by
    decisions (proposals, reviews, selections); who performed each research-loop stage
    (P propose, I implement, E experiment, V validate, L learn, C choose: H human, A AI,
    S system, M mixed, · none); the autonomy level L0-L3; whether an ancestor node built
    it (self-built) and the recursion depth. Then the same per generation and per lineage.
    """
    store = open_store(store_dir)
    data = involvement.report(store, node, lineage=lineage_name)
    if as_json:
        _dump(data)
        return
    if node is not None:
        for r in data["nodes"]:
            console.print(_node_detail(r))
    elif not data["nodes"]:
        console.print(f"no nodes (store {store.root})")
        return
    else:
        console.print(_node_table(data["nodes"]))
    console.print()
    console.print(_rollup_table(data["generations"], "per generation", "generation"))
    console.print()
    console.print(_rollup_table(data["lineages"], "per lineage", None))


# -- signals ---------------------------------------------------------------------------------


@click.command("signals")
@store_option
@click.option("--lineage", "lineage_name", default=None, help="Only this lineage.")
@click.option("--node", "node_id", default=None, help="Only this node.")
@click.option("--signal", type=click.Choice(oversight.SIGNALS), default=None, help="Only this signal.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of findings.")
@click.option("--settings", "show_settings", is_flag=True, help="Show the thresholds and globs the signals use.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Change a setting, e.g. --set jump_max_diff_lines=10 or --set 'evaluator_globs=[\"*eval*\"]'.")
def signals_command(store_dir, lineage_name, node_id, signal, as_json, show_settings, assignments) -> None:
    """Oversight signals: findings that deserve a human look, with their evidence events.

    \b
    self_evaluation       scored by the actor that built it
    evaluator_touched     a diff edits evaluation or test code (settings: evaluator_globs)
    contamination         train data shares a content hash with eval/held-out data in its ancestry
    unreviewed_promotion  promoted by an AI or system with no human approval
    heldout_gap           public score up, held-out score down versus the parent
    suspicious_jump       large score gain from a tiny diff (settings: jump_*)
    """
    store = open_store(store_dir)
    if assignments:
        for a in assignments:
            key, sep, value = a.partition("=")
            if not sep:
                raise click.BadParameter(f"expected KEY=VALUE, got {a!r}", param_hint="--set")
            stored = oversight.set_setting(store, key.strip(), value.strip())
            console.print(f"{key.strip()} = {stored}")
        return
    if show_settings:
        rows = oversight.settings(store)
        if as_json:
            _dump(rows)
            return
        t = Table(header_style="bold", box=None)
        for name in ("key", "value", "description"):
            t.add_column(name, overflow="fold")
        for r in rows:
            t.add_row(r["key"], r["value"], r["description"] or "")
        console.print(t)
        return
    rows = oversight.signals(store, lineage=lineage_name, node_id=node_id, signal=signal)
    if as_json:
        _dump(rows)
        return
    if not rows:
        console.print("no signals")
        return
    seqs = oversight.evidence_seqs(store, rows)
    t = Table(header_style="bold", box=None)
    for name in ("severity", "lineage", "node", "signal", "detail", "evidence"):
        t.add_column(name, overflow="fold")
    for r in rows:
        t.add_row(Text(r["severity"], style=_SEVERITY_STYLE.get(r["severity"], "")), r["lineage"], r["node"],
                  r["signal"], r["detail"], " ".join(f"#{seqs[e]}" if e in seqs else e for e in r["evidence"]))
    console.print(t)
    console.print(f"[dim]{len(rows)} finding{'s' if len(rows) != 1 else ''}; evidence as event seqs "
                  "(lineage log shows them; --json gives the event ids)[/]")
