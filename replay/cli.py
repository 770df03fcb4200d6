"""Replay's contribution to the `lineage` command (loaded through the lineage.commands entry point).

    lineage checkout NODE DIR          rebuild a node's code tree (checked) into DIR
    lineage replay NODE --rerun        re-execute a node's runs in a sandbox, compare scores
    lineage replay --as-of SEQ|TIME    the projections as the store was at that point
    lineage branch NODE NAME           fork a branch at NODE
    lineage branches                   list branches
    lineage compare A B                two branches side by side since their fork
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from lineage.store import Store

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

store_option = click.option(
    "--store", "store_dir", type=click.Path(file_okay=False), default=None,
    help="Store directory (default: $LINEAGE_STORE, else ./.lineage).",
)
lineage_option = click.option("--lineage", "lineage_name", default=None,
                              help="Needed only if several lineages have a node (or branch) of this name.")
as_of_option = click.option("--as-of", "as_of", default=None, metavar="SEQ|TIME",
                            help="As the store was after event SEQ, or at TIME (ISO 8601, recorded_at).")


def register(cli: click.Group) -> None:
    cli.add_command(checkout_cmd)
    cli.add_command(replay_cmd)
    cli.add_command(branch_cmd)
    cli.add_command(branches_cmd)
    cli.add_command(compare_cmd)


def _open(store_dir: str | None) -> Store:
    return Store.open(store_dir)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


# -- checkout -----------------------------------------------------------------------------


@click.command("checkout")
@store_option
@lineage_option
@as_of_option
@click.argument("node")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Write into a non-empty DIR (symlinks on the way are still refused).")
def checkout_cmd(store_dir, lineage_name, as_of, node, dest, force) -> None:
    """Rebuild NODE's code tree from the diff chain (checking every tree hash) into DEST.

    DEST also gets .lineage/manifest.json: the chain of events applied and the node's
    datasets and checkpoints (uri, content hash, present, intact).
    """
    from replay.materialize import checkout
    from replay.timetravel import resolve_as_of

    store = _open(store_dir)
    max_seq = resolve_as_of(store, as_of) if as_of else None
    co = checkout(store, node, dest, lineage=lineage_name, force=force, max_seq=max_seq)
    snap = sum(1 for s in co.steps if s.snapshot)
    console.print(f"checked out [bold]{co.node}[/] ({co.lineage}, branch {co.branch}) into [bold]{co.dest}[/]")
    console.print(f"  tree     {co.tree_hash}  ({co.files} files)")
    console.print(f"  chain    {len(co.steps)} code_diff event(s)" + (" starting from a snapshot" if snap else " from the root")
                  + ", every recorded tree hash checked")
    arts = [("dataset", a) for a in co.manifest["datasets"]] + [("checkpoint", a) for a in co.manifest["checkpoints"]]
    if arts:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("kind", "name/uri", "hash", "state", "where"):
            t.add_column(col)
        for kind, a in arts:
            state = ("[green]intact[/]" if a["intact"] else "[yellow]present, unverified[/]" if a["intact"] is None
                     else "[red]MODIFIED[/]") if a["present"] else "[red]missing[/]"
            t.add_row(kind, a.get("name") or a.get("uri") or "-", (a.get("content_hash") or "-")[:12], state, a["location"] or "-")
        console.print(t)
    console.print("  manifest .lineage/manifest.json")


# -- replay -------------------------------------------------------------------------------


@click.command("replay")
@store_option
@lineage_option
@as_of_option
@click.argument("node", required=False)
@click.option("--rerun", is_flag=True, help="Re-execute NODE's recorded run commands in a fresh sandbox.")
@click.option("--yes", "-y", is_flag=True, help="Consent to running the commands without being asked.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds each command may run.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=ABS",
              help="Absolute tolerance for a metric (repeatable); a bare number applies to every metric. Default 1e-9.")
@click.option("--keep", is_flag=True, help="Keep the sandbox directory and print its path.")
@click.option("--no-record", is_flag=True, help="Do not append the replay event.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (or the as-of state) as JSON.")
@click.option("--branch", default=None, help="With --as-of: only this branch.")
def replay_cmd(store_dir, lineage_name, as_of, node, rerun, yes, timeout, tolerances, keep, no_record, as_json, branch) -> None:
    """Time travel (--as-of) or re-execute a node (NODE --rerun).

    \b
      lineage replay --as-of 120              nodes, scores, involvement, signals after event 120
      lineage replay --as-of 2025-06-01T12:00 the same, as of a time (recorded_at)
      lineage replay n7                       show what --rerun would run
      lineage replay n7 --rerun               run it (asks first), compare, record a replay event

    Exit status with --rerun: 0 reproduced, 1 drifted or failed.
    """
    store = _open(store_dir)
    if node is None:
        if not as_of:
            raise click.UsageError("give a NODE (with --rerun to re-execute it) or --as-of SEQ|TIME")
        _as_of(store, as_of, lineage_name, branch, as_json)
        return
    if as_of:
        raise click.UsageError("--as-of with a NODE: use `lineage checkout NODE DIR --as-of ...`; re-execution runs the node as recorded now")
    from replay.rerun import execute as run_plan
    from replay.rerun import parse_tolerances, plan, record_replay

    p = plan(store, node, lineage=lineage_name)
    _print_plan(p, err_console if as_json else console)
    if not rerun:
        (err_console if as_json else console).print("\n[dim]nothing ran; pass --rerun to re-execute (in a fresh sandbox, after you confirm)[/]")
        return
    per, default = parse_tolerances(tolerances)
    if not yes:
        try:
            ok = click.confirm("\nRun these commands on this machine?", default=False, err=True)
        except click.Abort:
            ok = False
        if not ok:
            err_console.print("\n[red]refused:[/] re-execution runs code from the store; confirm at the prompt, or pass --yes")
            sys.exit(2)
    with err_console.status("re-executing…") as status:
        report = run_plan(p, timeout=timeout, tolerances=per, default_tolerance=default, keep=keep,
                          on_progress=lambda msg: status.update(msg))
    if not no_record:
        report.recorded = record_replay(p, report)
    if as_json:
        out = report.payload(p) | {"lineage": report.lineage, "branch": report.branch,
                                   "recorded_seq": report.recorded.seq if report.recorded else None,
                                   "sandbox": str(report.sandbox) if report.sandbox else None}
        click.echo(json.dumps(out, indent=2))
    else:
        _print_report(report)
    sys.exit(0 if report.outcome == "reproduced" else 1)


def _print_plan(p, out: Console) -> None:
    out.print(f"[bold]{p.node.node}[/] ({p.node.lineage}, branch {p.node.branch})"
                  + (f" · {p.node.label}" if p.node.label else ""))
    out.print("recorded runs:")
    for line, r in zip(p.describe(), p.runs, strict=True):
        scores = ", ".join(f"{s.metric}={s.value:.6g} ({s.split})" for s in r.expected().values()) or "no scores"
        out.print(f"  {line}\n     [dim]recorded {r.recorded_status}; {scores}[/]")


def _print_report(report) -> None:
    color = {"reproduced": "green", "drifted": "yellow", "failed": "red"}[report.outcome]
    console.print(f"\n[bold {color}]{report.outcome.upper()}[/]  {report.node}  ({report.duration_s:.2f}s)")
    if report.reason:
        console.print(f"  {report.reason}")
    for r in report.runs:
        color = "green" if r.reproduces_status else "red"
        console.print(f"  run seq {r.seq}: [{color}]{r.status}[/] in {r.duration_s:.2f}s"
                      + (f" · metrics from {r.metrics_source}" if r.metrics_source else "")
                      + (f" · {r.reason}" if r.reason else ""))
        if not r.reproduces_status and r.stderr_tail.strip():
            for line in r.stderr_tail.strip().splitlines()[-5:]:
                console.print(f"    [dim]{line}[/]")
    if report.metrics:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("metric", "split", "recorded", "reproduced", "delta", "tolerance", "verdict"):
            t.add_column(col, justify="right" if col in ("recorded", "reproduced", "delta", "tolerance") else "left")
        colors = {"reproduced": "green", "drifted": "yellow", "missing": "red"}
        for m in report.metrics:
            t.add_row(m.metric, m.split, _fmt(m.recorded), _fmt(m.reproduced),
                      "-" if m.delta is None else f"{m.delta:+.3g}", f"{m.tolerance:g}",
                      f"[{colors[m.status]}]{m.status}[/]" + (f" ({m.reason})" if m.reason else ""))
        console.print(t)
    if report.sandbox:
        console.print(f"  sandbox kept at {report.sandbox}")
    if report.recorded:
        console.print(f"  recorded replay event seq {report.recorded.seq}")


def _as_of(store: Store, as_of: str, lineage_name: str | None, branch: str | None, as_json: bool) -> None:
    from replay.timetravel import as_of as state_as_of
    from replay.timetravel import resolve_as_of

    seq = resolve_as_of(store, as_of)
    state = state_as_of(store, seq, lineage=lineage_name, branch=branch)
    if as_json:
        click.echo(json.dumps(state.to_dict(), indent=2, default=str))
        return
    console.print(f"[bold]as of seq {seq}[/]" + (f" ({state.recorded_at})" if state.recorded_at else "")
                  + f" · {state.source}")
    for name, table in state.tables.items():
        rows = table.to_pylist()
        console.print(f"\n[bold]{name}[/] ({len(rows)} rows)")
        if not rows:
            continue
        t = Table(box=None, header_style="bold", pad_edge=False)
        cols = [c for c in SHOWN.get(name, table.column_names) if c in table.column_names]
        if lineage_name:
            cols = [c for c in cols if c != "lineage"]
        for i, c in enumerate(cols):
            last = i == len(cols) - 1
            t.add_column(c, no_wrap=not last, overflow="ellipsis" if not last else "fold",
                         max_width=None if last else 22, min_width=30 if last else None)
        for r in rows[:50]:
            t.add_row(*[_cell(_public_only(r[c]) if (name, c) == ("nodes", "scores") else r[c]) for c in cols])
        console.print(t)
        if len(rows) > 50:
            console.print(f"[dim]… {len(rows) - 50} more (use --json, or SQL with the *_at(seq) macros)[/]")


# The columns `replay --as-of` shows per projection (--json has them all).
SHOWN = {
    "nodes": ["lineage", "branch", "node", "generation", "label", "status", "scores"],
    "scores": ["lineage", "node", "metric", "split", "value", "is_latest", "actor"],
    "involvement": ["lineage", "node", "generation", "human_share", "ai_share", "system_share", "autonomy_level", "self_built"],
    "signals": ["lineage", "node", "signal", "severity", "detail"],
}


def _public_only(scores):
    """The node table shows public-split scores; --json and SQL have every split."""
    if isinstance(scores, list):
        return [x for x in scores if isinstance(x, tuple) and str(x[0]).endswith("@public")]
    return scores


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):  # lists, and maps (lists of key/value pairs)
        return ", ".join(f"{x[0]}={_cell(x[1])}" if isinstance(x, tuple) and len(x) == 2 else str(x) for x in v)
    return str(v)


# -- branches -----------------------------------------------------------------------------


@click.command("branch")
@store_option
@lineage_option
@click.argument("node")
@click.argument("name")
@click.option("--actor", required=True, help="Who forks: human:<name> | ai:<model> | system:<tool>.")
def branch_cmd(store_dir, lineage_name, node, name, actor) -> None:
    """Fork branch NAME at NODE. Events recorded later with branch NAME extend it
    (SDK Tracker(branch=NAME), `lineage record --branch NAME`, ingest)."""
    from replay.branch import create_branch

    store = _open(store_dir)
    ack = create_branch(store, node, name, actor=actor, lineage=lineage_name)
    console.print(f"branch [bold]{name}[/] forked at {node} (seq {ack.seq})")


@click.command("branches")
@store_option
@click.option("--lineage", "lineage_name", default=None, help="Only this lineage.")
@as_of_option
def branches_cmd(store_dir, lineage_name, as_of) -> None:
    """List branches: fork node, events, nodes, best scores."""
    from replay.branch import list_branches
    from replay.timetravel import resolve_as_of

    store = _open(store_dir)
    max_seq = resolve_as_of(store, as_of) if as_of else None
    infos = list_branches(store, lineage_name, max_seq=max_seq)
    if not infos:
        console.print("no events")
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("lineage", "branch", "forked at", "from", "events", "nodes", "best"):
        t.add_column(col, justify="right" if col in ("events", "nodes") else "left", overflow="fold")
    for b in infos:
        fork = b.fork
        t.add_row(b.lineage, f"[bold]{b.name}[/]", fork.from_node if fork else "-", fork.from_branch if fork and fork.from_branch else "-",
                  str(b.events), str(b.nodes), "\n".join(str(x) for x in _one_per_metric(b.best)[:3]) or "-")
    console.print(t)


def _one_per_metric(best: list) -> list:
    seen, out = set(), []
    for x in best:  # already public-first
        if x.metric not in seen:
            seen.add(x.metric)
            out.append(x)
    return out


@click.command("compare")
@store_option
@lineage_option
@as_of_option
@click.argument("a")
@click.argument("b")
def compare_cmd(store_dir, lineage_name, as_of, a, b) -> None:
    """Branches A and B side by side since their fork: best scores, involvement, signals."""
    from replay.branch import Involvement, compare
    from replay.timetravel import resolve_as_of

    store = _open(store_dir)
    max_seq = resolve_as_of(store, as_of) if as_of else None
    c = compare(store, a, b, lineage=lineage_name, max_seq=max_seq)
    forks = [f"{s.branch} forked from {s.fork.from_branch} at {s.fork.from_node} (seq {s.fork.seq})" for s in (c.a, c.b) if s.fork]
    console.print(f"[bold]{a}[/] vs [bold]{b}[/] in {c.lineage}: " + ("; ".join(forks) if forks else "no common fork"))
    t = Table(header_style="bold", pad_edge=False, show_lines=False)
    t.add_column("since the fork")
    t.add_column(a, overflow="fold")
    t.add_column(b, overflow="fold")

    def pct(counter, kind) -> str:
        shares = Involvement.shares(counter)
        return f"{shares[kind]:.0%}" if shares else "-"

    t.add_row("events", str(len(c.a.events)), str(len(c.b.events)))
    t.add_row("nodes", str(len(c.a.nodes)), str(len(c.b.nodes)))
    keys = sorted({(x.metric, x.split) for x in c.a.best} | {(x.metric, x.split) for x in c.b.best})
    best_a = {(x.metric, x.split): x for x in c.a.best}
    best_b = {(x.metric, x.split): x for x in c.b.best}
    for key in keys:
        xa, xb = best_a.get(key), best_b.get(key)
        better = None
        if xa and xb and xa.value != xb.value:
            better = "a" if (xa.value > xb.value) == xa.higher_is_better else "b"
        cell_a = f"{xa.value:.6g} @{xa.node}" if xa else "-"
        cell_b = f"{xb.value:.6g} @{xb.node}" if xb else "-"
        t.add_row(f"best {key[0]} ({key[1]})", f"[green]{cell_a}[/]" if better == "a" else cell_a,
                  f"[green]{cell_b}[/]" if better == "b" else cell_b)
    for label, attr in (("events", "events"), ("diff lines", "diff_lines"), ("decisions", "decisions")):
        ia, ib = getattr(c.a.involvement, attr), getattr(c.b.involvement, attr)
        t.add_row(f"{label}: human / ai / system",
                  " / ".join(pct(ia, k) for k in ("human", "ai", "system")),
                  " / ".join(pct(ib, k) for k in ("human", "ai", "system")))
    if c.a.involvement.levels or c.b.involvement.levels:
        def levels(inv) -> str:
            return " ".join(f"L{lv}:{inv.levels[lv]}" for lv in sorted(x for x in inv.levels if x is not None)) or "-"
        t.add_row("autonomy levels (nodes)", levels(c.a.involvement), levels(c.b.involvement))
        t.add_row("self-built nodes · recursion depth", f"{c.a.involvement.self_built} · {c.a.involvement.recursion_depth}",
                  f"{c.b.involvement.self_built} · {c.b.involvement.recursion_depth}")
    sig_names = sorted(set(c.a.signals) | set(c.b.signals))
    for s in sig_names:
        t.add_row(f"signal {s}", str(len(c.a.signals.get(s, []))), str(len(c.b.signals.get(s, []))))
    if not sig_names:
        t.add_row("signals", "none", "none")
    if c.a.replays or c.b.replays:
        t.add_row("replays", ", ".join(f"{k} {v}" for k, v in sorted(c.a.replays.items())) or "-",
                  ", ".join(f"{k} {v}" for k, v in sorted(c.b.replays.items())) or "-")
    console.print(t)
