"""Inbox files that are done: how a producer says so, and where they go once ingested.

A producer appends events to its own file in the store's ``inbox/`` and may hold it open
for as long as it runs, so the owner of the inbox (``lineage watch``) cannot tell from the
file alone whether more will come; moving a file still held open would send the rest of
its lines into the moved file, where nothing reads them. So the producer says it: once its
last line is written and fsynced, it creates ``<file>.done`` beside the file
(``Tracker(inbox=True)`` does on close; a producer in another language creates an empty
file of that name). The watcher then ingests the file to its end, its last line too, and
moves it to ``archive/inbox/`` in the store (removing the marker after it). A file without
a marker (its producer crashed, or is another tool's) stays where it is: it is cheap to
skip, and nothing is ever moved that may still grow.
"""

from __future__ import annotations

import os
from pathlib import Path

from lineage.objects import fsync_dir

DONE_SUFFIX = ".done"


def done_marker(path: Path) -> Path:
    """The marker that says no more lines will be appended to ``path``."""
    return path.with_name(path.name + DONE_SUFFIX)


def mark_done(path: Path) -> None:
    """Say that ``path`` is finished (call once its last line is fsynced)."""
    fd = os.open(done_marker(path), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def marked_file(marker: Path) -> Path | None:
    """The file a marker speaks for, or None when ``marker`` is not a marker."""
    if not marker.name.endswith(DONE_SUFFIX) or marker.name == DONE_SUFFIX:
        return None
    return marker.with_name(marker.name[: -len(DONE_SUFFIX)])


def archive(inbox: Path, archive_root: Path, path: Path) -> Path:
    """Move a finished inbox file to ``archive_root/inbox/`` (keeping its place under the
    inbox), then remove its marker. Returns where it went. A name already taken there
    gets a ``~N`` suffix: nothing archived is overwritten."""
    target = archive_root / "inbox" / path.relative_to(inbox)
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while target.exists():
        target = target.with_name(f"{path.name}~{n}")
        n += 1
    os.replace(path, target)  # same file system: the store's
    fsync_dir(path.parent)
    fsync_dir(target.parent)
    done_marker(path).unlink(missing_ok=True)
    return target


__all__ = ["DONE_SUFFIX", "archive", "done_marker", "mark_done", "marked_file"]
