"""`lineage ingest` and `lineage watch`: files of events from other processes into the log."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import click
from rich.markup import escape as _escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from lineage.commands._common import console, err_console, open_store, store_option
from lineage.ingest import FileReport, Ingester, IngestReport


def register(cli: click.Group) -> None:
    cli.add_command(ingest)
    cli.add_command(watch)


@contextmanager
def _stop_on_interrupt():
    """First Ctrl-C (or SIGTERM): stop cleanly between batches. A second Ctrl-C: stop now."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        _warn("[yellow]stopping after the current batch… (Ctrl-C again to abort)[/]")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _say(text: str) -> None:
    console.print(text, soft_wrap=True)  # never break a path or a reason across lines


def _warn(text: str) -> None:
    err_console.print(text, soft_wrap=True)


def _where(r: FileReport, at: int) -> str:
    return f"{r.path}:{at}" if r.format == "jsonl" else f"{r.path} row {at}"


def _print_problems(r: FileReport) -> None:
    for at, reason in r.problems:
        _warn(f"[red]quarantined[/] {_escape(_where(r, at))}: {_escape(reason)}")
    more = r.quarantined - len(r.problems)
    if more > 0:
        _warn(f"  … and {more} more from {_escape(str(r.path))}")


def _summary(report: IngestReport) -> None:
    for path, why in report.skipped:
        _warn(f"[yellow]skipped[/] {_escape(str(path))}: {why}")
    for r in report.files:
        if r.restarted:
            _warn(f"[yellow]note[/] {_escape(str(r.path))} changed since it was last ingested; read again from the start")
        if r.note:
            _warn(f"[dim]{_escape(str(r.path))}: {r.note}[/]")
        _print_problems(r)
        if r.pending_bytes:
            _warn(f"[yellow]pending[/] {_escape(str(r.path))}: the last {r.pending_bytes} bytes are an "
                  "unfinished line (no newline yet); they are ingested once complete, or now with --complete")
    quarantined = report.quarantined
    color = "red" if quarantined else "green"
    _say(
        f"[{color}]{report.ingested} ingested[/], {report.duplicates} duplicates skipped, "
        f"{quarantined} quarantined from {len(report.files)} file{'s' if len(report.files) != 1 else ''}"
        + (" [yellow](interrupted: run again to continue)[/]" if report.interrupted else "")
    )
    if quarantined:
        _say("  bad lines are kept whole in the store's quarantine/ folder, with file, line and reason")


@click.command()
@store_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--complete", is_flag=True,
              help="The files are finished: also read a last line that has no newline (default: leave it pending).")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes validating large files (default: one per idle CPU beyond the first; 0: none).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def ingest(store_dir, paths, complete, workers, quiet) -> None:
    """Ingest JSONL or Parquet event files (or folders of them) into the store.

    \b
    One event envelope per line (see `lineage schema`), or Parquet with the envelope columns.
    Idempotent: events already stored (same event_id) are skipped, and a file is read on from
    where the last ingest stopped. Bad lines go to quarantine/ with the reason; the rest is
    ingested. Exit status 1 when anything was quarantined.
      lineage ingest runs/*.jsonl
      lineage ingest exported.parquet --store .lineage
    """
    store = open_store(store_dir)
    with _stop_on_interrupt() as stop:
        if quiet or not err_console.is_terminal:
            with Ingester(store, complete=complete, workers=workers, should_stop=stop.is_set) as ing:
                report = ing.ingest(paths)
        else:
            progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                TimeRemainingColumn(), console=err_console, transient=True)
            tasks: dict[Path, int] = {}

            def on_progress(path: Path, done: int, total: int) -> None:
                if path not in tasks:
                    tasks[path] = progress.add_task(_escape(path.name), total=total)
                progress.update(tasks[path], completed=done, total=total)

            with progress, Ingester(store, complete=complete, workers=workers, should_stop=stop.is_set,
                                    on_progress=on_progress) as ing:
                report = ing.ingest(paths)
    _summary(report)
    if report.interrupted:
        sys.exit(130)
    if report.quarantined:
        sys.exit(1)


@click.command()
@store_option
@click.argument("dirs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--settle", type=float, default=2.0, show_default=True,
              help="Seconds an unreadable Parquet file must stay unchanged before it is quarantined.")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes validating large files (default: one per idle CPU beyond the first; 0: none).")
def watch(store_dir, dirs, settle, workers) -> None:
    """Ingest new and growing event files as they appear, until Ctrl-C.

    \b
    Watches the store's inbox/ by default (where `Tracker(..., inbox=True)` workers write), or
    the given folders, e.g. a folder another tool writes JSONL into. Lines are taken once
    complete; bad ones are quarantined and reported. Readers (`lineage sql`, `log`, the TUI)
    get in whenever the watcher is idle. Ctrl-C stops after the current batch.

    An inbox file whose producer has marked it done (an empty `<file>.done` beside it, which
    `Tracker(inbox=True)` creates on close) is ingested to its end and moved to archive/inbox/.
    """
    from lineage.watch import Watcher

    store = open_store(store_dir)

    def on_file(r: FileReport) -> None:
        _say(f"{_escape(str(r.path))}: {r.ingested} ingested"
             + (f", {r.duplicates} duplicates skipped" if r.duplicates else "")
             + (f", [red]{r.quarantined} quarantined[/]" if r.quarantined else ""))
        _print_problems(r)

    def on_skip(path: Path, why: str) -> None:
        _warn(f"[yellow]skipped[/] {_escape(str(path))}: {why}")

    def on_error(path: Path, exc: Exception) -> None:
        _warn(f"[red]error[/] {_escape(str(path))}: {_escape(str(exc))} (nothing of that batch was stored; will retry)")

    def on_archive(path: Path, moved: Path) -> None:
        _say(f"{_escape(str(path))}: done (its producer finished); moved to {_escape(str(moved))}")

    with _stop_on_interrupt() as stop:
        watcher = Watcher(store, list(dirs) or None, stop=stop, settle=settle, workers=workers,
                          on_file=on_file, on_skip=on_skip, on_error=on_error, on_archive=on_archive)
        _warn(f"watching {', '.join(_escape(str(d)) for d in watcher.dirs)} (Ctrl-C to stop)")
        totals = watcher.run()
    _say(f"stopped: {totals.ingested} ingested, {totals.duplicates} duplicates skipped, "
         f"{totals.quarantined} quarantined, {len(totals.skipped)} files skipped"
         + (f", {totals.archived} finished inbox files archived" if totals.archived else ""))
