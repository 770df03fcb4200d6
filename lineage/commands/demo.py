"""`lineage demo`: build the bundled demo store (a real, small self-improvement loop)."""

from __future__ import annotations

import time

import click

from lineage.commands._common import console, store_option
from lineage.store import resolve_store_path


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@store_option
def demo(store_dir: str | None) -> None:
    """Build the demo lineage by running the bundled loop (data/demo); then explore it.

    The loop really runs: every generation's evaluation is executed. Its actors (an AI
    researcher, two people) are simulated by scripts.
    """
    from lineage.demo import build_demo

    path = resolve_store_path(store_dir)
    start = time.perf_counter()
    with console.status("running the demo loop…") as status:
        summary = build_demo(path, progress=lambda msg: status.update(msg))
    took = time.perf_counter() - start
    verb = "built" if summary.get("created") else "already present:"
    console.print(f"demo lineage [bold]{summary['lineage']}[/] {verb} {path} ({took:.1f}s)")
    console.print(f"  {summary['nodes']} nodes over {summary['generations']} generations, "
                  f"{summary['events']} events, {summary['failed']} failed candidates kept, "
                  f"branches: {', '.join(summary['branches'])}")
    for key in ("root", "best"):
        s = summary[key]
        value = f"{s['value']:.4f}" if isinstance(s["value"], float) else "n/a"
        console.print(f"  {key:<5} {s['node']}  {s['metric']} = {value} ({s['split']})")
    flag = f" --store {store_dir}" if store_dir else ""
    console.print(f"\nnext: [bold]lineage tui{flag}[/] to browse it, or [bold]lineage tree{flag}[/], "
                  f"[bold]lineage involvement{flag}[/], [bold]lineage signals{flag}[/], "
                  f"[bold]lineage sql{flag} \"SELECT * FROM involvement_by_generation\"[/]")
