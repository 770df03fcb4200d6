"""lineage: the flight recorder for self-improving AI."""

from lineage.errors import LineageError
from lineage.store import Store, Stored
from lineage.tracker import NodeRecorder, Tracker

__all__ = ["LineageError", "NodeRecorder", "Store", "Stored", "Tracker"]
__version__ = "0.1.0"
