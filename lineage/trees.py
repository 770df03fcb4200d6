"""Code trees: manifests, tree hashes, and unified diffs between two trees.

A tree is a mapping ``relative path -> bytes``. Its hash is the SHA-256 of its manifest
(one ``path NUL blob-sha256 LF`` line per file, sorted by path), so two trees with the
same files hash the same wherever they came from. Replay checks these hashes as it
rebuilds a node's code from the diff chain.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import unidiff

# Directories that are never part of a node's code.
IGNORED_DIRS = {".git", "__pycache__", ".lineage", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "node_modules"}

Tree = Mapping[str, bytes]


def read_tree(root: str | os.PathLike) -> dict[str, bytes]:
    """All regular files under ``root`` (symlinks are not followed), by POSIX relative path."""
    root = Path(root)
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def blob_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(tree: Tree) -> dict[str, str]:
    return {path: blob_hash(data) for path, data in sorted(tree.items())}


def tree_hash(tree: Tree) -> str:
    return manifest_hash(manifest(tree))


def manifest_hash(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path}\0{files[path]}\n".encode())
    return h.hexdigest()


def is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines(text: str) -> list[str]:
    """Split at newlines only. str.splitlines also breaks at \r, \f, \x1c-\x1e, \u2028 and
    more, which would write a diff that is not the change."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def diff_trees(before: Tree, after: Tree) -> tuple[str, list[dict]]:
    """A git-style unified diff from ``before`` to ``after`` and per-file change records.

    Binary files cannot be expressed as a text diff; they are listed with change
    ``binary`` and the caller stores their bytes as objects.
    """
    chunks: list[str] = []
    files: list[dict] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if (old is not None and not is_text(old)) or (new is not None and not is_text(new)):
            files.append({"path": path, "change": "binary", "lines_added": 0, "lines_removed": 0,
                          **({"object": blob_hash(new)} if new is not None else {"deleted": True})})
            continue
        old_lines = _lines(old.decode()) if old is not None else []
        new_lines = _lines(new.decode()) if new is not None else []
        body = list(difflib.unified_diff(
            old_lines, new_lines,
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
            n=3,
        ))
        # difflib leaves a last line without newline unmarked; mark it like git so patches apply exactly.
        fixed = []
        for line in body:
            if not line.endswith("\n"):
                fixed.append(line + "\n\\ No newline at end of file\n")
            else:
                fixed.append(line)
        header = f"diff --git a/{path} b/{path}\n"
        if old is None:
            header += "new file mode 100644\n"
        elif new is None:
            header += "deleted file mode 100644\n"
        chunks.append(header + "".join(fixed))
        added = sum(1 for ln in body[2:] if ln.startswith("+"))
        removed = sum(1 for ln in body[2:] if ln.startswith("-"))
        change = "added" if old is None else "deleted" if new is None else "modified"
        files.append({"path": path, "change": change, "lines_added": added, "lines_removed": removed})
    return "".join(chunks), files


def diff_stats(diff_text: str) -> list[dict]:
    """Per-file change records of a unified diff (git-style or plain)."""
    try:
        patch = unidiff.PatchSet(diff_text)
    except unidiff.UnidiffParseError as exc:
        raise ValueError(f"not a unified diff: {exc}") from None
    if not len(patch) and diff_text.strip():
        raise ValueError("not a unified diff: no file headers (---/+++) found; "
                         "to diff two trees pass before=/after= instead")
    files = []
    for f in patch:
        path = f.path
        # /dev/null is the only sign of an added or deleted file; a file emptied by a diff
        # still exists (unidiff's is_removed_file guesses from the hunk instead).
        change = ("added" if f.source_file == "/dev/null" else
                  "deleted" if f.target_file == "/dev/null" else "modified")
        if getattr(f, "is_rename", False):
            change = "renamed"
        if f.is_binary_file:
            change = "binary"
        rec = {"path": path, "change": change, "lines_added": f.added, "lines_removed": f.removed}
        src = f.source_file[2:] if f.source_file.startswith("a/") else f.source_file
        if change == "renamed" and src != path:
            rec["old_path"] = src
        files.append(rec)
    return files
