"""Staged view updates: several updates that one event (an epoch's end) asks for, each run in an
event-loop pass of its own.

One epoch dirties several views (loss and accuracy plots, the confusion matrix, the panels that
follow the epoch). Done and painted in one pass they stalled the GUI for 70-100 ms; staged
``STAGE_GAP_MS`` apart on a real timer, the paint each update asks for (posted events) happens
before the next update, so input and timers get in between.
"""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer

STAGE_GAP_MS = 10


class StagedUpdates(QObject):
    """``add(key, update)`` runs ``update`` in a later pass, one per pass, in order; a pending
    update with the same ``key`` is replaced (it would be superseded anyway). ``flush()`` runs
    every pending update now."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pending: dict[Any, Callable[[], None]] = {}
        self._scheduled = False

    def add(self, key: Any, update: Callable[[], None]) -> None:
        self._pending.pop(key, None)
        self._pending[key] = update
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(STAGE_GAP_MS, self, self._run_next)

    def _run_next(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        key = next(iter(self._pending))
        update = self._pending.pop(key)
        if self._pending:
            self._scheduled = True
            QTimer.singleShot(STAGE_GAP_MS, self, self._run_next)
        update()

    def flush(self) -> None:
        while self._pending:
            key = next(iter(self._pending))
            self._pending.pop(key)()
