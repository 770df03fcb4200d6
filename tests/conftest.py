"""Shared fixtures: a fresh store in a temporary directory. Everything is real files."""

from __future__ import annotations

import pytest

from lineage.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    """An initialised, empty store under ``tmp_path/store``."""
    return Store.init(tmp_path / "store")
