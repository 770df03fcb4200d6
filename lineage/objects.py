"""Content-addressed object store: diffs, code snapshots, small files, named by SHA-256.

An object is written to a temporary file, flushed to disk and renamed into place, so a
crash leaves either the whole object or nothing; writing the same content twice is free.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lineage.errors import ObjectMissing

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class ObjectStore:
    def __init__(self, root: Path):
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, data: bytes | str) -> str:
        if isinstance(data, str):
            data = data.encode()
        digest = sha256_bytes(data)
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

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
