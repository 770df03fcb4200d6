"""How Arrow's allocator treats freed memory in lineage's own processes.

Arrow's allocator (mimalloc) gives freed memory back to the system 10 ms after it is freed.
Ingest frees and takes again ~100 MB a batch, which the kernel must then zero anew (as huge
pages): ~0.3 s of system time per million events. Kept a second, it serves the next batch,
and is still given back once a command goes idle (`lineage watch` between files).

mimalloc reads the setting when pyarrow loads, so it is made before anything imports
pyarrow (this module imports nothing that does); worker processes inherit it.
"""

from __future__ import annotations

import os

PURGE_DELAY_MS = 1000


def keep_freed_memory() -> None:
    """Keep memory Arrow frees for reuse a second (unless the environment says otherwise)."""
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", str(PURGE_DELAY_MS))
