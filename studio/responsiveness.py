"""A probe of how responsive the GUI thread is: a 10 ms timer that records its own lateness.

While the GUI thread is free, the timer fires every 10 ms; when something blocks the event
loop (or holds the interpreter), it fires late by about as long as the block. Use it from a
test or a script::

    probe = StallProbe()
    probe.start()
    ...                        # run the event loop while training
    probe.stop()
    print(probe.worst_ms, probe.percentile(99))
"""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer


class StallProbe(QObject):
    """Records, for every tick, how much later than ``interval_ms`` it came."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.lateness_ms: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.lateness_ms = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append(max(0.0, (now - self._last) * 1000.0 - self.interval_ms))
        self._last = now

    @property
    def worst_ms(self) -> float:
        """The longest stall seen, in milliseconds (0 before any tick)."""
        return max(self.lateness_ms, default=0.0)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of lateness in milliseconds."""
        return float(np.percentile(self.lateness_ms, q)) if self.lateness_ms else 0.0
