"""File > New from Data…: choose data, see what was found, pick a template, make the project.

The dialog holds a ``DataPanel`` offering own data only (a file, an image folder or a video
folder, with the loader options of its format), what was found, a template and the training
settings it starts with. Plain data in: ``set_found(lines)``, ``set_templates(choices,
current)`` with ``(name, summary)`` pairs, ``set_settings(epochs, batch_size, learning_rate)``,
``set_ready(ready, reason)``. Signals out: ``templateChosen(str)`` and ``createRequested(dict)``
with ``template``, ``epochs``, ``batch_size`` and ``learning_rate``; the data panel's own
``datasetRequested(dict)``.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QFrame, QHBoxLayout, QLabel,
                               QPushButton, QScrollArea, QSpinBox, QVBoxLayout)

from gatescope.widgets.data_panel import FILE_SOURCE, DataPanel


class NewFromDataDialog(QDialog):
    """See the module docstring."""

    templateChosen = Signal(str)
    createRequested = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New from Data")
        self.setMinimumSize(640, 760)
        layout = QVBoxLayout(self)
        self.data = DataPanel()
        self.data.set_sources([])
        self.data.source.setCurrentText(FILE_SOURCE)
        self.data.source.hide()          # own data only: the choice is the buttons
        self.data.source_label.hide()
        scroll = QScrollArea()           # the options and sample pictures need room; the dialog may be shorter
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(self.data)
        layout.addWidget(scroll, 1)
        self.found = QLabel("Choose a file or a folder: what it holds is shown here before anything is made.")
        self.found.setWordWrap(True)
        layout.addWidget(self.found)
        form = QFormLayout()
        self.template = QComboBox()
        self.template.currentIndexChanged.connect(self._on_template)
        self.template_help = QLabel()
        self.template_help.setObjectName("muted")
        self.template_help.setWordWrap(True)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100000)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 65536)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(1e-5, 10.0)
        self.learning_rate.setSingleStep(1e-4)
        form.addRow("Template", self.template)
        form.addRow("", self.template_help)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.learning_rate)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.reason = QLabel()
        self.reason.setObjectName("muted")
        self.reason.setWordWrap(True)
        self.create_button = QPushButton("Create project…")
        self.create_button.setObjectName("primary")
        self.create_button.setEnabled(False)
        self.create_button.clicked.connect(self._on_create)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons.addWidget(self.reason, 1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.create_button)
        layout.addLayout(buttons)
        self._summaries: dict[str, str] = {}
        self.set_ready(False, "Choose data first.")

    def set_found(self, lines: list[str]) -> None:
        """What the data holds, one line each."""
        self.found.setText("<b>Found</b><br>" + "<br>".join(lines) if lines else "")

    def set_templates(self, choices: list[tuple[str, str]], current: str | None) -> None:
        """The templates that fit the data, ``current`` chosen (no ``templateChosen`` for it)."""
        self.template.blockSignals(True)
        self.template.clear()
        self._summaries = dict(choices)
        for name, _ in choices:
            self.template.addItem(name)
        if current is not None:
            self.template.setCurrentText(current)
        self.template.blockSignals(False)
        self.template_help.setText(self._summaries.get(self.template.currentText(), ""))

    def set_settings(self, epochs: int, batch_size: int, learning_rate: float) -> None:
        self.epochs.setValue(int(epochs))
        self.batch_size.setValue(int(batch_size))
        self.learning_rate.setValue(float(learning_rate))

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """Whether a project can be made now; ``reason`` says why not."""
        self.create_button.setEnabled(ready)
        self.reason.setText("" if ready else reason)

    def _on_template(self, index: int) -> None:
        name = self.template.itemText(index)
        self.template_help.setText(self._summaries.get(name, ""))
        if name:
            self.templateChosen.emit(name)

    def _on_create(self) -> None:
        self.createRequested.emit({"template": self.template.currentText(), "epochs": self.epochs.value(),
                                   "batch_size": self.batch_size.value(),
                                   "learning_rate": self.learning_rate.value()})
