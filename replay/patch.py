"""A strict unified-diff applier, in memory, with no fuzz.

``unidiff`` parses; this module applies. Strict means: every hunk must land exactly where
its header says, every context and removed line must match byte for byte (line endings
included), hunks may not overlap, an added file must not exist yet, a deleted file must
be consumed entirely. There is no offset search and no fuzz factor: a diff that does not
apply exactly is a fact worth stopping for, because the tree it produces would not be the
tree the loop ran.

Paths: git-style ``a/`` and ``b/`` prefixes are stripped (when both sides carry them, or
``/dev/null``); a path that is absolute, has a ``..`` or empty component, a backslash or
a NUL byte is refused with ``PathEscape`` before anything is applied.

``\\ No newline at end of file`` applies to the line before it, on whichever side that
line belongs to. Binary files cannot be applied from text (``Binary files ... differ``):
they are returned by name so the caller can restore them from the object the event
recorded.

Nothing here touches the disk; the caller writes the finished tree once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import unidiff
from unidiff.constants import (
    LINE_TYPE_ADDED,
    LINE_TYPE_CONTEXT,
    LINE_TYPE_NO_NEWLINE,
    LINE_TYPE_REMOVED,
)

from replay.errors import PatchError, PathEscape

_DEV_NULL = "/dev/null"
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_path(path: str) -> str:
    """``path`` as a normalized relative POSIX path, or ``PathEscape`` if it could leave the tree."""
    if not path or "\0" in path:
        raise PathEscape(f"refused path {path!r}: empty or contains a NUL byte")
    if "\\" in path:
        raise PathEscape(f"refused path {path!r}: backslashes are ambiguous across systems")
    if path.startswith("/") or _DRIVE.match(path):
        raise PathEscape(f"refused path {path!r}: absolute paths escape the target directory")
    parts = path.split("/")
    if any(p == ".." for p in parts):
        raise PathEscape(f"refused path {path!r}: '..' escapes the target directory")
    if any(p in ("", ".") for p in parts):
        raise PathEscape(f"refused path {path!r}: empty or '.' path component")
    return path


@dataclass
class FilePatch:
    """One file's part of a diff, ready to apply."""

    source: str | None  # None: the file is added
    target: str | None  # None: the file is deleted
    hunks: list[tuple[unidiff.Hunk, list[str], list[str]]] = field(default_factory=list)
    binary: bool = False

    @property
    def path(self) -> str:
        return self.target or self.source or "?"


def _strip_prefixes(source: str, target: str) -> tuple[str | None, str | None]:
    src = None if source == _DEV_NULL else source
    tgt = None if target == _DEV_NULL else target
    git_style = (src is None or src.startswith("a/")) and (tgt is None or tgt.startswith("b/"))
    if git_style:
        src = src[2:] if src is not None else None
        tgt = tgt[2:] if tgt is not None else None
    return src, tgt


def _hunk_sides(hunk: unidiff.Hunk) -> tuple[list[str], list[str]]:
    """The lines a hunk expects (source) and the lines it leaves (target), exactly."""
    items: list[list[str]] = []  # [line_type, value]
    for line in hunk:
        kind = line.line_type
        if kind == LINE_TYPE_NO_NEWLINE:
            if not items:
                raise PatchError(f"hunk {_header(hunk)}: '\\ No newline at end of file' before any line")
            last = items[-1]
            if last[1].endswith("\n"):
                last[1] = last[1][:-1]
            continue
        if kind not in (LINE_TYPE_CONTEXT, LINE_TYPE_ADDED, LINE_TYPE_REMOVED):
            raise PatchError(f"hunk {_header(hunk)}: unexpected line type {kind!r}")
        items.append([kind, line.value])
    source = [v for k, v in items if k != LINE_TYPE_ADDED]
    target = [v for k, v in items if k != LINE_TYPE_REMOVED]
    if len(source) != hunk.source_length or len(target) != hunk.target_length:
        raise PatchError(f"hunk {_header(hunk)}: header counts do not match its lines "
                         f"({len(source)} source, {len(target)} target)")
    return source, target


def _header(hunk: unidiff.Hunk) -> str:
    return f"@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@"


def parse_diff(diff_text: str) -> list[FilePatch]:
    """Parse a unified diff (git-style or plain) into per-file patches; paths are checked."""
    try:
        patch = unidiff.PatchSet(diff_text)
    except unidiff.UnidiffParseError as exc:
        raise PatchError(f"not a valid unified diff: {exc}") from None
    out: list[FilePatch] = []
    for f in patch:
        # Added/deleted only by /dev/null (git's new/deleted file headers set it too):
        # unidiff's is_removed_file also says True for a file emptied by the diff.
        src, tgt = _strip_prefixes(f.source_file, f.target_file)
        if src is None and tgt is None:
            raise PatchError("a file patch with neither a source nor a target path")
        for p in (src, tgt):
            if p is not None:
                safe_path(p)
        fp = FilePatch(source=src, target=tgt, binary=bool(f.is_binary_file))
        for hunk in f:
            source, target = _hunk_sides(hunk)
            fp.hunks.append((hunk, source, target))
        out.append(fp)
    return out


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split on LF only (like diff and patch; not str.splitlines)."""
    if not text:
        return []
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def apply_hunks(path: str, old: bytes | None, hunks: list[tuple[unidiff.Hunk, list[str], list[str]]]) -> bytes:
    """Apply one file's hunks strictly to its old content; return the new content."""
    if old is None:
        old_lines: list[str] = []
    else:
        old_lines = split_lines(old.decode("utf-8", errors="surrogateescape"))
    out: list[str] = []
    pos = 0
    for hunk, source, target in hunks:
        # A hunk with no source lines inserts *after* line source_start (0 = at the top).
        start = hunk.source_start if hunk.source_length == 0 else hunk.source_start - 1
        if start < pos:
            raise PatchError(f"{path}: hunk {_header(hunk)} overlaps the hunk before it")
        if start + len(source) > len(old_lines):
            raise PatchError(f"{path}: hunk {_header(hunk)} reaches past the end of the file "
                             f"({len(old_lines)} lines)")
        found = old_lines[start:start + len(source)]
        if found != source:
            i = next(i for i, (a, b) in enumerate(zip(found, source, strict=True)) if a != b)
            raise PatchError(f"{path}: hunk {_header(hunk)} does not apply at line {start + i + 1}: "
                             f"expected {source[i]!r}, found {found[i]!r}")
        out.extend(old_lines[pos:start])
        out.extend(target)
        pos = start + len(source)
    out.extend(old_lines[pos:])
    return "".join(out).encode("utf-8", errors="surrogateescape")


def apply_diff(tree: Mapping[str, bytes], patches: list[FilePatch]) -> tuple[dict[str, bytes | None], list[str]]:
    """Apply parsed patches to ``tree`` (not modified). Returns the changes (path -> new
    bytes, or None for a deleted path) and the paths of binary files the diff could not
    carry, which the caller must restore from objects."""
    changes: dict[str, bytes | None] = {}
    binary: list[str] = []

    def current(path: str) -> bytes | None:
        return changes[path] if path in changes else tree.get(path)

    for fp in patches:
        if fp.binary:
            binary.append(fp.path)
            if fp.source and fp.target and fp.source != fp.target:
                raise PatchError(f"{fp.target}: a binary rename cannot be applied from text")
            continue
        if fp.source is None:  # added
            if current(fp.target) is not None:
                raise PatchError(f"{fp.target}: the diff adds it, but it already exists")
            changes[fp.target] = apply_hunks(fp.target, None, fp.hunks)
            continue
        old = current(fp.source)
        if old is None:
            raise PatchError(f"{fp.source}: the diff changes it, but it does not exist")
        if fp.target is None:  # deleted
            rest = apply_hunks(fp.source, old, fp.hunks)
            if rest:
                raise PatchError(f"{fp.source}: the diff deletes it, but {len(split_lines(rest.decode('utf-8', 'replace')))} "
                                 "line(s) the diff does not know about would remain")
            changes[fp.source] = None
            continue
        new = apply_hunks(fp.target, old, fp.hunks) if fp.hunks else old
        if fp.target != fp.source:  # renamed
            if current(fp.target) is not None:
                raise PatchError(f"{fp.target}: renamed onto a file that already exists")
            changes[fp.source] = None
        changes[fp.target] = new
    return changes, binary


__all__ = ["FilePatch", "apply_diff", "apply_hunks", "parse_diff", "safe_path", "split_lines"]
