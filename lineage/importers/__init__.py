"""Importers: bring the archives of real self-improvement loops in as events, losing nothing.

    from lineage.importers import import_source
    summary = import_source(store, "openevolve", "runs/evolve_cache_run0")

One module per format (``FORMAT``, ``DESCRIPTION``, ``run(session, path, lineage=, actors=)``
and optionally ``count_records(path)`` for the progress bar); ``base`` holds what they share.
See docs/importers.md for every format's mapping.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from lineage.importers.base import Actors, ImportSession, ImportSummary, Progress
from lineage.store import Store

# name -> module, in the order the CLI lists them. Aliases map other spellings.
_MODULES = {
    "openevolve": "lineage.importers.openevolve",
    "ai-scientist": "lineage.importers.ai_scientist",
    "adas": "lineage.importers.adas",
    "shinkaevolve": "lineage.importers.shinkaevolve",
    "aide": "lineage.importers.aide",
    "dgm": "lineage.importers.dgm",
    # issue 8's adapters (same ids as `lineage import-git` / `import-workspace`)
    "git": "lineage.agents.formats.git",
    "workspace": "lineage.agents.formats.workspace",
}
ALIASES = {"ai_scientist": "ai-scientist", "aiscientist": "ai-scientist", "shinka": "shinkaevolve",
           "shinka-evolve": "shinkaevolve", "darwin-godel-machine": "dgm"}
FORMATS: tuple[str, ...] = tuple(_MODULES)


class UnknownFormat(ValueError):
    pass


def module(fmt: str) -> ModuleType:
    name = ALIASES.get(fmt.lower(), fmt.lower())
    if name not in _MODULES:
        raise UnknownFormat(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    return importlib.import_module(_MODULES[name])


def count_records(fmt: str, path: str | os.PathLike) -> int | None:
    """How many records the importer will read (for a progress bar), when cheap to know."""
    mod = module(fmt)
    counter = getattr(mod, "count_records", None)
    try:
        return counter(Path(path)) if counter else None
    except OSError:
        return None


def import_source(
    store: Store,
    fmt: str,
    path: str | os.PathLike,
    *,
    lineage: str | None = None,
    actors: Actors | None = None,
    progress: Progress | None = None,
    batch_size: int = 2000,
) -> ImportSummary:
    """Import ``path`` in format ``fmt`` into ``store`` (created if absent). Idempotent:
    importing the same source again appends nothing."""
    mod = module(fmt)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with ImportSession(store, mod.FORMAT, path, progress=progress, batch_size=batch_size) as session:
        mod.run(session, path, lineage=lineage, actors=actors or Actors())
    return session.summary


__all__ = ["ALIASES", "Actors", "FORMATS", "ImportSession", "ImportSummary", "UnknownFormat", "count_records",
           "import_source", "module"]
