"""Errors a user can meet. Each names the store, file, node or event and says what to do."""

from __future__ import annotations

from schemas.errors import SchemaError


class LineageError(Exception):
    """Base of every error the CLI reports as a message instead of a traceback."""


class StoreNotFound(LineageError):
    pass


class StoreLocked(LineageError):
    pass


class ReadOnlyViolation(LineageError):
    pass


class QueryError(LineageError):
    pass


class ObjectMissing(LineageError):
    pass


__all__ = ["LineageError", "QueryError", "ReadOnlyViolation", "SchemaError", "StoreLocked", "StoreNotFound", "ObjectMissing"]
