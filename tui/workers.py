"""One path for worker failures: every widget or screen that starts workers reports here.

Textual does not bubble ``Worker.StateChanged`` past the node that started the worker, so
each such class mixes this in; the app then shows one error dialog (or a passing note for
background refreshes). A failed query never takes the UI down.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            event.stop()
            self.app.report_worker_error(event.worker)
