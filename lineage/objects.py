"""Content-addressed object store: diffs, code snapshots, small files, named by SHA-256.

An object is written to a temporary file and renamed into place, so a crash leaves either
the whole object or nothing; writing the same content twice is free. ``put`` makes each
object durable before returning. Bulk writers (importers) pass ``durable=False`` and call
``sync()`` once before committing the events that name those objects: one filesystem
sync instead of hundreds of fsyncs, and still no event can outlive its object.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lineage.errors import ObjectMissing

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(d: Path) -> None:
    """Make the names in directory ``d`` durable (a file renamed into it, or out of it)."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class ObjectStore:
    def __init__(self, root: Path):
        self.root = root
        self._pending: list[Path] = []

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, data: bytes | str, *, durable: bool = True) -> str:
        if isinstance(data, str):
            data = data.encode()
        digest = sha256_bytes(data)
        target = self.path(digest)
        try:
            if target.stat().st_size == len(data):  # a torn earlier write is redone
                return digest
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not durable:
            self._pending.append(target)
        return digest

    def sync(self) -> None:
        """Make every object written with ``durable=False`` durable."""
        if not self._pending:
            return
        paths, self._pending = self._pending, []
        if _syncfs(self.root):
            return
        for p in paths:
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        for d in {p.parent for p in paths}:
            fsync_dir(d)

    def put_file(self, path: Path) -> str:
        return self.put(Path(path).read_bytes())

    def get(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"object {digest} is not in {self.root}; the store is incomplete") from None

    def get_text(self, digest: str) -> str:
        return self.get(digest).decode("utf-8", errors="replace")

    def verified(self, digest: str) -> bytes:
        """The object's bytes, refusing them if they no longer hash to their name."""
        data = self.get(digest)
        if sha256_bytes(data) != digest:
            raise ObjectMissing(f"object {digest} was modified on disk ({self.path(digest)}); run `lineage verify`")
        return data

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith(".tmp-"):
                        yield f.name, f


_LIBC: object = None


def _syncfs(path: Path) -> bool:
    """``syncfs(2)`` on the filesystem holding ``path`` (Linux); False where unavailable."""
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.syncfs  # noqa: B018 - probe that the symbol exists
            _LIBC = libc
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return _LIBC.syncfs(fd) == 0
    finally:
        os.close(fd)
