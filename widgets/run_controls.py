"""The run controls: Train, Pause, Resume, Stop and a progress bar, in the window's tool bar.

They stay in one place in every view (a person can start training from the gates and watch
them move), and the row never moves: the long status text lives in the training panel, the
bar carries only a short label ("Epoch 3 of 20 · 42 %").

Fed plain values: ``set_state('idle' | 'running' | 'paused')``, ``set_blocked(reason or None)``,
``set_progress(fraction, label)``. Emits ``trainRequested()``, ``pauseRequested()``,
``resumeRequested()``, ``stopRequested()``.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

PROGRESS_STEPS = 1000


class RunControls(QWidget):
    """Train / Pause / Resume / Stop beside a progress bar (see the module docstring)."""

    trainRequested = Signal()
    pauseRequested = Signal()
    resumeRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 4, 0)
        row.setSpacing(6)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("primary")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        for button, signal, tip in (
                (self.train_button, self.trainRequested, "Train the model on the dataset (F5)"),
                (self.pause_button, self.pauseRequested, "Pause after this step; Resume goes on from there (F6)"),
                (self.resume_button, self.resumeRequested, "Go on training from where it paused (F7)"),
                (self.stop_button, self.stopRequested, "Stop after this step and keep the weights so far "
                                                       "(Shift+F5)")):
            button.clicked.connect(signal)
            button.setToolTip(tip)
            row.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.progress.setFormat("Ready")
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(220)
        row.addWidget(self.progress)
        self.state = "idle"
        self.blocked_reason: str | None = None
        self._refresh()

    def set_state(self, state: str) -> None:
        """``idle``, ``running`` or ``paused``: which buttons can be pressed."""
        self.state = state
        self._refresh()

    def set_blocked(self, reason: str | None) -> None:
        """Disable Train and say why in its tooltip, or enable it again with None."""
        self.blocked_reason = reason
        self._refresh()

    def set_progress(self, fraction: float, label: str) -> None:
        """Fill the bar to ``fraction`` (0..1) with ``label`` on it (the percentage is added once
        there is some)."""
        fraction = min(1.0, max(0.0, float(fraction)))
        # QProgressBar.setValue repaints at once (synchronously), and in a window full of docks
        # that cost milliseconds per update while training; with updates off around it the bar
        # is only marked dirty and painted in the next ordinary pass.
        self.progress.setUpdatesEnabled(False)
        self.progress.setValue(int(round(fraction * PROGRESS_STEPS)))
        if not label:
            text = f"{fraction:.0%}"
        elif fraction > 0:
            text = f"{label} · {fraction:.0%}"
        else:
            text = label
        self.progress.setFormat(text)
        self.progress.setUpdatesEnabled(True)

    @property
    def fraction(self) -> float:
        return self.progress.value() / PROGRESS_STEPS

    def _refresh(self) -> None:
        idle = self.state == "idle"
        self.train_button.setEnabled(idle and not self.blocked_reason)
        self.train_button.setToolTip(f"Cannot train: {self.blocked_reason}" if self.blocked_reason
                                     else "Train the model on the dataset (F5)")
        self.pause_button.setEnabled(self.state == "running")
        self.resume_button.setEnabled(self.state == "paused")
        self.stop_button.setEnabled(not idle)
