"""lineage: the flight recorder for self-improving AI."""

from __future__ import annotations

import importlib

from lineage.errors import LineageError

# Loaded on first use (PEP 562), so that `import lineage.service` (the terminal UI) does
# not also load the writing side: validation, pydantic, the tracker.
_WHERE = {"Store": "lineage.store", "Stored": "lineage.store", "Tracker": "lineage.tracker",
          "NodeRecorder": "lineage.tracker"}

__all__ = ["LineageError", "NodeRecorder", "Store", "Stored", "Tracker"]
__version__ = "0.1.0"


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lineage' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
