"""Store commands: init, seal, verify, schema."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lineage.commands._common import console, err_console, open_store, store_option
from lineage.store import Store, resolve_store_path


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(seal)
    cli.add_command(verify)
    cli.add_command(schema)


@click.command()
@store_option
def init(store_dir: str | None) -> None:
    """Create a store (a directory with a DuckDB file, segments/, objects/, inbox/, quarantine/)."""
    existed = Store(resolve_store_path(store_dir)).exists()
    store = Store.init(store_dir)
    console.print(f"{'store already present at' if existed else 'initialized store at'} {store.root}")


@click.command()
@store_option
def seal(store_dir: str | None) -> None:
    """Seal the recent events into an immutable zstd Parquet segment."""
    store = open_store(store_dir)
    result = store.seal()
    if result is None:
        console.print("nothing to seal: every event is already in a segment")
    else:
        console.print(f"sealed events {result.first_seq}..{result.last_seq} ({result.events} events, "
                      f"{result.bytes / 1024:.1f} KiB) into {result.file.relative_to(store.root)}")


@click.command()
@store_option
@click.option("--no-objects", is_flag=True, help="Skip rehashing the object store.")
@click.option("--anchor", "anchors", multiple=True, metavar="SEQ:HASH",
              help="A head printed by an earlier verify and kept outside the store: it must still be "
                   "in the chain (catches deleted newest events, and a log rewritten and rehashed). Repeatable.")
def verify(store_dir: str | None, no_objects: bool, anchors: tuple[str, ...]) -> None:
    """Recompute the hash chain and every object hash. Exit 0 if intact, 1 if not.

    Prints the head (SEQ:HASH of the newest event): keep it somewhere else, and pass it
    to a later verify with --anchor."""
    from lineage.verify import parse_anchor
    from lineage.verify import verify as run_verify

    try:
        wanted = [parse_anchor(a) for a in anchors]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--anchor") from None
    store = open_store(store_dir)
    with err_console.status("verifying…") as status:
        report = run_verify(store, objects=not no_objects, progress=lambda m: status.update(m), anchors=wanted)
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    if report.ok:
        console.print(f"[green]ok[/]: {report.events} events in {report.segments} segments + hot log, "
                      f"{report.objects} objects; hash chain intact"
                      + (f"; {len(wanted)} anchor(s) found" if wanted else ""))
        console.print(f"head: {report.head[0]}:{report.head[1]}", soft_wrap=True)
        return
    for f in report.findings:
        console.print(f"[red]TAMPERED[/] {f.where}: {f.message}")
    sys.exit(1)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Directory to write the schemas to.")
def schema(out_dir: str) -> None:
    """Write a JSON Schema per event kind, for producers in other languages."""
    from schemas.jsonschema import write_schemas

    written = write_schemas(Path(out_dir))
    console.print(f"wrote {len(written)} schemas and index.json to {out_dir}")
