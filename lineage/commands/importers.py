"""`lineage import FORMAT PATH`: bring a loop's archive in as events."""

from __future__ import annotations

import json
import sys

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lineage.commands._common import console, err_console, store_option
from lineage.store import Store, resolve_store_path


def register(cli: click.Group) -> None:
    cli.add_command(import_cmd)


def _format_help() -> str:
    from lineage.importers import FORMATS, module

    return "; ".join(f"{f}: {module(f).DESCRIPTION}" for f in FORMATS)


@click.command("import")
@click.argument("fmt", metavar="FORMAT")
@click.argument("path", type=click.Path(exists=True))
@click.option("--lineage", "lineage", default=None, help="Lineage name (default: from the source's folder or file name; a folder of several runs imports as NAME/<run>).")
@click.option("--ai-actor", default=None, help="Actor for the AI's work when the source does not name its model (default: ai:<format>-...).")
@click.option("--human-actor", default="human:seed-author", show_default=True, help="Actor for hand-written seeds and baselines.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_option
def import_cmd(fmt: str, path: str, lineage: str | None, ai_actor: str | None, human_actor: str, as_json: bool, store_dir: str | None) -> None:
    """Import a self-improvement loop's archive, losing nothing.

    FORMAT is one of: openevolve, ai-scientist, adas, shinkaevolve, aide, dgm (and git,
    workspace: see `lineage import-git` / `import-workspace` for their options).
    Importing the same source twice adds nothing. Records that cannot be mapped are kept
    as `annotation` events (topic `unmapped`) with the raw record, and listed below.
    The store is created if it does not exist.
    """
    from lineage.importers import Actors, UnknownFormat, count_records, import_source, module
    from schemas.actor import parse_actor

    try:
        module(fmt)
    except UnknownFormat as exc:
        raise click.BadParameter(f"{exc}\n{_format_help()}", param_hint="FORMAT") from None
    for value, name in ((ai_actor, "--ai-actor"), (human_actor, "--human-actor")):
        if value is not None:
            kind, _ = parse_actor(value, field=name)
            expected = "ai" if name == "--ai-actor" else "human"
            if kind.value != expected:
                raise click.BadParameter(f"expected '{expected}:<name>', got {value!r}", param_hint=name)
    store = Store(resolve_store_path(store_dir))
    if not store.exists():
        store = Store.init(store.root)
    total = count_records(fmt, path)
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"importing {fmt}", total=total)

        def progress(n: int, description: str | None) -> None:
            bar.update(task, advance=n, **({"description": description} if description else {}))

        summary = import_source(store, fmt, path, lineage=lineage, progress=progress,
                                actors=Actors(human=human_actor, ai=ai_actor))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    _print_summary(summary, store)
    if not summary.lineages and not summary.total_events:
        sys.exit(1)


def _print_summary(summary, store: Store) -> None:
    t = Table(title=f"import {summary.format}: {summary.source}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("lineage" + ("s" if len(summary.lineages) != 1 else ""), ", ".join(summary.lineages) or "—")
    t.add_row("records read", str(summary.records))
    t.add_row("nodes", str(summary.nodes))
    t.add_row("events appended", str(summary.events))
    if summary.skipped:
        t.add_row("already present", f"{summary.skipped} (imported before; nothing duplicated)")
    t.add_row("by kind", ", ".join(f"{k} {v}" for k, v in sorted(summary.by_kind.items())) or "—")
    t.add_row("objects", str(summary.objects))
    t.add_row("missing parents", str(sum(len(v) for v in summary.missing_parents.values())))
    t.add_row("unmapped records", str(len(summary.unmapped)))
    t.add_row("time", f"{summary.seconds:.2f}s")
    t.add_row("store", str(store.root))
    console.print(t)
    if summary.missing_parents:
        gone = sorted({p for ps in summary.missing_parents.values() for p in ps})
        console.print(f"[yellow]missing parents[/] ({len(gone)} ids named by {len(summary.missing_parents)} nodes, "
                      "not in the source; kept as parents and flagged):")
        for p in gone[:20]:
            kids = [n for n, ps in summary.missing_parents.items() if p in ps]
            console.print(f"  {p}  <- {', '.join(kids[:5])}{' …' if len(kids) > 5 else ''}")
        if len(gone) > 20:
            console.print(f"  … and {len(gone) - 20} more")
    if summary.unmapped:
        console.print("[yellow]records that could not be mapped[/] (kept as `annotation` events, topic `unmapped`, with the raw record):")
        for u in summary.unmapped[:50]:
            console.print(f"  {u.source}: {u.reason}")
        if len(summary.unmapped) > 50:
            console.print(f"  … and {len(summary.unmapped) - 50} more (see --json)")
    for w in summary.warnings[:20]:
        console.print(f"[yellow]warning:[/] {w}")
