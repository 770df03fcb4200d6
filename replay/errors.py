"""Errors of the replay layer. Each names the node and, where one is to blame, the event."""

from __future__ import annotations

from lineage.errors import LineageError


class ReplayError(LineageError):
    """Base of every replay error; the CLI prints it as one line (exit code 2)."""


class CheckoutError(ReplayError):
    """A node's code tree could not be rebuilt: a diff that does not apply, a tree hash
    that does not match, a missing or modified object, a path that escapes the target."""

    def __init__(self, message: str, *, node: str | None = None, seq: int | None = None,
                 event_id: str | None = None):
        where = []
        if node is not None:
            where.append(f"node {node}")
        if seq is not None:
            where.append(f"event seq {seq}" + (f" ({event_id})" if event_id else ""))
        super().__init__((", ".join(where) + ": " if where else "") + message)
        self.node = node
        self.seq = seq
        self.event_id = event_id
        self.reason = message


class PatchError(ReplayError):
    """A unified diff does not apply exactly to the tree it claims to be against."""


class PathEscape(PatchError):
    """A path that would land outside the target directory."""


__all__ = ["CheckoutError", "PatchError", "PathEscape", "ReplayError"]
