"""Starting the terminal UI fast: the store is read while Textual loads.

Importing and starting Textual takes about 0.3 s, and so does reading the first screen of
a large lineage. ``create_app`` starts that read (``FirstScreen``) on a thread before it
imports the UI, so the two overlap (DuckDB does its work without holding the GIL). This
module therefore imports nothing from Textual at the top.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.service import LineageService, Opening

if TYPE_CHECKING:
    from tui.app import LineageApp


class FirstScreen:
    """Reads the store's head and the first screen (``LineageService.opening``) on a thread.

    ``result()`` gives (opening, head seq, index seq); the opening is None when the node
    index is behind the store, which only the app can bring up to date (it shows progress).
    """

    def __init__(self, service: LineageService, prefer: str | None) -> None:
        self._future: Future[tuple[Opening | None, int, int]] = Future()
        self._service = service
        self._prefer = prefer
        threading.Thread(target=self._run, name="lineage-first-screen", daemon=True).start()

    def _run(self) -> None:
        svc = self._service
        try:
            with svc.session():  # one connection for the whole burst
                seq, indexed = svc.heads()
                opening = svc.opening(self._prefer) if indexed >= seq else None
        except BaseException as exc:  # handed to whoever asks for the result
            self._future.set_exception(exc)
        else:
            self._future.set_result((opening, seq, indexed))

    def result(self) -> tuple[Opening | None, int, int]:
        return self._future.result()


def create_app(
    store_path: str | os.PathLike,
    *,
    lineage: str | None = None,
    poll_interval: float | None = 1.0,
    sql_history: str | os.PathLike | None = None,
    banner: str | None = None,
) -> LineageApp:
    """The app over the store at ``store_path``. ``poll_interval=None`` turns live refresh
    off (snapshots); ``sql_history``: a file that keeps the SQL console's history."""
    service = LineageService(store_path)
    first = FirstScreen(service, lineage)
    from tui.app import LineageApp

    return LineageApp(service, lineage=lineage, poll_interval=poll_interval,
                      sql_history=Path(sql_history) if sql_history else None, banner=banner, first_screen=first)
