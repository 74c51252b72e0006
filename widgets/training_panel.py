"""The training panel: run settings, Train / Pause / Resume / Stop, and progress with ETA.

Fed plain data: ``TrainingPanel(fields)`` (fields as in ``widgets.forms``), ``set_settings``,
``set_state('idle' | 'running' | 'paused')``, ``set_blocked(reason or None)``,
``set_progress(done, total, text)``. Emits ``settingEdited(name, value)``,
``trainRequested()``, ``pauseRequested()``, ``resumeRequested()``, ``stopRequested()``.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QVBoxLayout,
                               QWidget)

from gatescope.widgets.forms import SettingsForm


def format_duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; ``4000`` -> ``'1 h 07 min'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TrainingPanel(QWidget):
    """Settings form above the run buttons and the progress bar."""

    settingEdited = Signal(str, object)
    trainRequested = Signal()
    pauseRequested = Signal()
    resumeRequested = Signal()
    stopRequested = Signal()

    def __init__(self, fields: list[dict], parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        self.form = SettingsForm(fields)
        self.form.valueEdited.connect(self.settingEdited)
        scroll.setWidget(self.form)
        layout.addWidget(scroll, 1)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("primary")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        for button, signal in ((self.train_button, self.trainRequested), (self.pause_button, self.pauseRequested),
                               (self.resume_button, self.resumeRequested), (self.stop_button, self.stopRequested)):
            button.clicked.connect(signal)
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.blocked_label = QLabel()
        self.blocked_label.setObjectName("error")
        self.blocked_label.setWordWrap(True)
        self.blocked_label.hide()
        layout.addWidget(self.blocked_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        layout.addWidget(self.progress)
        self.status = QLabel("Ready.")
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        layout.addWidget(self.status)
        self.state = "idle"
        self.blocked_reason: str | None = None
        self._refresh_buttons()

    def set_settings(self, values: dict[str, Any]) -> None:
        """Show training settings (without emitting edits)."""
        self.form.set_values(values)

    def set_state(self, state: str) -> None:
        """``idle``, ``running`` or ``paused``: which buttons can be pressed, and whether settings can change."""
        self.state = state
        self.form.setEnabled(state == "idle")
        self._refresh_buttons()

    def set_blocked(self, reason: str | None) -> None:
        """Disable Train and say why (the model or data cannot train), or enable it again with None."""
        self.blocked_reason = reason
        self.blocked_label.setText(f"Cannot train: {reason}" if reason else "")
        self.blocked_label.setVisible(bool(reason))
        self._refresh_buttons()

    def set_progress(self, done: float, total: float, text: str) -> None:
        """Fill the bar to ``done / total`` and show ``text`` (ETA, samples per second, ...)."""
        fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
        # QProgressBar.setValue repaints at once (synchronously), and in a window full of
        # docks that repaint cost milliseconds per update while training; with updates off
        # around it the bar is only marked dirty and painted in the next ordinary pass.
        self.progress.setUpdatesEnabled(False)
        self.progress.setValue(int(round(fraction * 1000)))
        self.progress.setFormat(f"{fraction:.0%}")
        self.progress.setUpdatesEnabled(True)
        self.status.setText(text)

    def set_message(self, text: str) -> None:
        """A line under the bar: what the last run did, or why it failed."""
        self.status.setText(text)

    def _refresh_buttons(self) -> None:
        idle = self.state == "idle"
        self.train_button.setEnabled(idle and not self.blocked_reason)
        self.train_button.setToolTip(self.blocked_reason or "Train the model on the dataset")
        self.pause_button.setEnabled(self.state == "running")
        self.resume_button.setEnabled(self.state == "paused")
        self.stop_button.setEnabled(not idle)
