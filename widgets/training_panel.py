"""The training panel: run settings, what the run is doing, and what the last one reached.

The run buttons and the progress bar are ``widgets.run_controls.RunControls``, in the window's
tool bar; this panel holds the settings form, the status line (which may wrap: nothing below it
moves a button), why Train cannot be pressed, and the held-out test result of the last run.

Fed plain data: ``TrainingPanel(fields)`` (fields as in ``widgets.forms``), ``set_settings``,
``set_locked(locked)``, ``set_blocked(reason or None)``, ``set_message(text)``,
``set_result(text)``. Emits ``settingEdited(name, value)``.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from gatescope.widgets.forms import SettingsForm


class TrainingPanel(QWidget):
    """Status and result above the settings form, which scrolls when the panel is short."""

    settingEdited = Signal(str, object)

    def __init__(self, fields: list[dict], parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        self.status = QLabel("Ready.")
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.result = QLabel()
        self.result.setObjectName("result")
        self.result.setWordWrap(True)
        self.result.hide()
        layout.addWidget(self.result)
        self.blocked_label = QLabel()
        self.blocked_label.setObjectName("error")
        self.blocked_label.setWordWrap(True)
        self.blocked_label.hide()
        layout.addWidget(self.blocked_label)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.form = SettingsForm(fields)
        self.form.valueEdited.connect(self.settingEdited)
        self.scroll.setWidget(self.form)
        layout.addWidget(self.scroll, 1)
        self.blocked_reason: str | None = None

    def set_settings(self, values: dict[str, Any]) -> None:
        """Show training settings (without emitting edits)."""
        self.form.set_values(values)

    def set_locked(self, locked: bool) -> None:
        """While a run is under way its settings cannot change."""
        self.form.setEnabled(not locked)

    def set_blocked(self, reason: str | None) -> None:
        """Say why Train cannot be pressed (the model or data cannot train), or nothing with None."""
        self.blocked_reason = reason
        self.blocked_label.setText(f"Cannot train: {reason}" if reason else "")
        self.blocked_label.setVisible(bool(reason))

    def set_message(self, text: str) -> None:
        """The status line: what the run is doing, or what the last run did or why it failed."""
        self.status.setText(text)

    def set_result(self, text: str) -> None:
        """The held-out test result of the last run ("Test accuracy 98.9 % on 360 samples"), or
        nothing with an empty text."""
        self.result.setText(text)
        self.result.setVisible(bool(text))
