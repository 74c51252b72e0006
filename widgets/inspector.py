"""The inspector: the selected block's settings, output shape, parameter count and problems.

Fed plain data by the application: ``show_block(block_id, block_type, summary, fields, values)``
(fields as in ``widgets.forms``), then ``show_result(shape, params, formula, error, warning, size_formula)`` after every analysis,
and ``set_locked(locked)`` while the model trains. ``offer_data_shape(text)`` shows a one-click
button under an Input block's settings ("Use the data's shape: 64") that emits
``useDataShapeRequested(block_id)``; an empty text hides it. The form scrolls when the panel is short;
the arithmetic and the error text below it always wrap, never elide. Emits ``settingEdited(block_id, name, value)`` for every valid edit.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from gatescope.widgets.forms import SettingsForm


class Inspector(QScrollArea):
    """Settings and analysis of one block, or a summary when nothing (or several) is selected."""

    settingEdited = Signal(str, str, object)
    useDataShapeRequested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setMinimumWidth(260)
        body = QWidget()
        self.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(8)
        self.title = QLabel()
        self.title.setObjectName("heading")
        self.summary = QLabel()
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        self._form_holder = QVBoxLayout()
        layout.addLayout(self._form_holder)
        self.data_shape_button = QPushButton()
        self.data_shape_button.setToolTip("Set this Input's shape to the shape of the loaded dataset's samples "
                                          "(Edit > Undo puts the old shape back)")
        self.data_shape_button.clicked.connect(self._on_use_data_shape)
        self.data_shape_button.hide()
        layout.addWidget(self.data_shape_button)
        line = QFrame()
        line.setFrameShape(QFrame.HLine)
        line.setStyleSheet("color: #3b4250;")
        layout.addWidget(line)
        self.shape_label = QLabel()
        self.shape_label.setWordWrap(True)
        self.shape_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.params_label = QLabel()
        self.params_label.setWordWrap(True)
        self.formula_label = QLabel()
        self.formula_label.setObjectName("muted")
        self.formula_label.setWordWrap(True)
        self.formula_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.size_label = QLabel()
        self.size_label.setObjectName("muted")
        self.size_label.setWordWrap(True)
        self.size_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.locked_label = QLabel()
        self.locked_label.setObjectName("warning")
        self.locked_label.setWordWrap(True)
        self.locked_label.hide()
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.warning_label = QLabel()
        self.warning_label.setObjectName("warning")
        self.warning_label.setWordWrap(True)
        for w in (self.shape_label, self.size_label, self.params_label, self.formula_label, self.error_label,
                  self.warning_label, self.locked_label):
            layout.addWidget(w)
        layout.addStretch(1)
        self.form: SettingsForm | None = None
        self.block_id: str | None = None
        self._block_type: str | None = None
        self.show_nothing("Select a block on the canvas to see and change its settings.")

    def show_nothing(self, message: str) -> None:
        """No single block selected: show ``message`` (e.g. a summary of the model)."""
        self._drop_form()
        self.block_id = self._block_type = None
        self.data_shape_button.hide()
        self.title.setText("Model")
        self.summary.setText(message)
        for w in (self.shape_label, self.size_label, self.params_label, self.formula_label, self.error_label,
                  self.warning_label):
            w.clear()
            w.hide()

    def show_block(self, block_id: str, block_type: str, summary: str, fields: list[dict],
                   values: dict[str, Any]) -> None:
        """Show the settings of ``block_id``; the form is rebuilt only when the block changes."""
        if block_id != self.block_id or block_type != self._block_type:
            self._drop_form()
            self.block_id, self._block_type = block_id, block_type
            self.title.setText(f"{block_type}  ·  {block_id}")
            self.summary.setText(summary)
            if fields:
                self.form = SettingsForm(fields)
                self.form.valueEdited.connect(self._on_value_edited)
                self._form_holder.addWidget(self.form)
        if self.form is not None:
            self.form.set_values(values)

    def show_result(self, shape: str, params: str, formula: str, error: str | None, warning: str | None,
                    size_formula: str = "") -> None:
        """The analysis of the shown block: output shape and the arithmetic that gives its size
        (conv and pool blocks), parameters and their arithmetic, problems."""
        self.shape_label.setText(f"<b>Output</b>&nbsp; {shape}" if shape else "<b>Output</b>&nbsp; unknown")
        self.size_label.setText(f"Output size: {size_formula}" if size_formula else "")
        self.size_label.setVisible(bool(size_formula))
        self.params_label.setText(f"<b>Parameters</b>&nbsp; {params}" if params else "")
        self.formula_label.setText(formula)
        self.error_label.setText(f"Cannot work: {error}" if error else "")
        self.warning_label.setText(warning or "")
        self.shape_label.show()
        self.params_label.setVisible(bool(params))
        self.formula_label.setVisible(bool(formula))
        self.error_label.setVisible(bool(error))
        self.warning_label.setVisible(bool(warning))

    def offer_data_shape(self, text: str) -> None:
        """Show the "use the data's shape" button with ``text`` ('' hides it)."""
        self.data_shape_button.setText(text)
        self.data_shape_button.setVisible(bool(text) and self.block_id is not None)

    def _on_use_data_shape(self) -> None:
        if self.block_id is not None:
            self.useDataShapeRequested.emit(self.block_id)

    def set_locked(self, locked: bool) -> None:
        """While the model trains its settings cannot change (the reason is shown)."""
        if self.form is not None:
            self.form.setEnabled(not locked)
        self.data_shape_button.setEnabled(not locked)
        self.locked_label.setText("The model is locked while it trains; stop the run to change settings."
                                  if locked and self.form is not None else "")
        self.locked_label.setVisible(bool(locked and self.form is not None))

    def _drop_form(self) -> None:
        if self.form is not None:
            self.form.setParent(None)
            self.form.deleteLater()
            self.form = None

    def _on_value_edited(self, name: str, value: Any) -> None:
        if self.block_id is not None:
            self.settingEdited.emit(self.block_id, name, value)
