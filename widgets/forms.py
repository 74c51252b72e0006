"""A form built from plain setting descriptions, one editor per kind, validating as the person types.

A field is a dict ``{"name", "kind", "label", "help", "minimum", "maximum", "choices", "default"}``
with ``kind`` one of ``int`` (QSpinBox), ``float`` (a line edit that turns red on a bad
number), ``bool`` (QCheckBox), ``choice`` (QComboBox), ``str`` (QLineEdit), ``shape`` (sizes
such as ``1, 8, 8``) or ``padding`` (``valid``, ``same`` or a number).
"""
from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QSpinBox, QWidget)

INT_LIMIT = 2_000_000_000


def parse_shape(text: str) -> tuple[int, ...] | None:
    """``'1, 8, 8'`` or ``'1x8x8'`` -> ``(1, 8, 8)``; None unless 1 to 4 positive whole numbers."""
    parts = [p for p in re.split(r"[\s,x×()\[\]]+", text.strip()) if p]
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        return None
    sizes = tuple(int(p) for p in parts)
    return sizes if min(sizes) >= 1 else None


def format_shape(shape) -> str:
    return ", ".join(str(int(s)) for s in shape)


def format_float(value: float) -> str:
    """A float as a person would type it: ``0.001``, ``1e-05``, ``0.5``."""
    return f"{value:g}"


class SettingsForm(QWidget):
    """Editors for a list of fields. Emits ``valueEdited(name, value)`` for every valid edit."""

    valueEdited = Signal(str, object)

    def __init__(self, fields: list[dict], parent=None):
        super().__init__(parent)
        self.fields = {f["name"]: f for f in fields}
        self.editors: dict[str, QWidget] = {}
        self.problems: dict[str, str] = {}
        self._loading = False
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        layout.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self._problem_labels: dict[str, QLabel] = {}
        for field in fields:
            editor = self._make_editor(field)
            editor.setToolTip(field.get("help", ""))
            editor.setObjectName(f"field-{field['name']}")
            self.editors[field["name"]] = editor
            label = QLabel(field.get("label") or field["name"])
            label.setToolTip(field.get("help", ""))
            layout.addRow(label, editor)
            problem = QLabel()
            problem.setObjectName("error")
            problem.setWordWrap(True)
            problem.hide()
            layout.addRow("", problem)
            self._problem_labels[field["name"]] = problem

    # ----------------------------------------------------------------- editors
    def _make_editor(self, field: dict) -> QWidget:
        kind, name = field["kind"], field["name"]
        if kind == "int":
            box = QSpinBox()
            low = field.get("minimum")
            high = field.get("maximum")
            box.setRange(int(low) if low is not None else -INT_LIMIT, int(high) if high is not None else INT_LIMIT)
            box.setKeyboardTracking(True)
            box.valueChanged.connect(lambda v, n=name: self._emit(n, int(v)))
            return box
        if kind == "bool":
            check = QCheckBox()
            check.toggled.connect(lambda v, n=name: self._emit(n, bool(v)))
            return check
        if kind == "choice":
            combo = QComboBox()
            combo.addItems([str(c) for c in field.get("choices", ())])
            combo.currentTextChanged.connect(lambda v, n=name: self._emit(n, v))
            return combo
        if kind == "padding":
            combo = QComboBox()
            combo.setEditable(True)
            combo.addItems(["valid", "same"])
            combo.setToolTip("valid, same, or a number of zeros added on each side")
            combo.editTextChanged.connect(lambda text, n=name: self._text_edited(n, text))
            return combo
        edit = QLineEdit()
        if kind == "shape":
            edit.setPlaceholderText("e.g. 1, 28, 28")
        edit.textEdited.connect(lambda text, n=name: self._text_edited(n, text))
        return edit

    def _parse(self, name: str, text: str) -> tuple[Any, str | None]:
        """``(value, None)`` for valid text, ``(None, reason)`` otherwise."""
        field = self.fields[name]
        kind, label = field["kind"], field.get("label") or name
        if kind == "str":
            return text, None
        if kind == "shape":
            shape = parse_shape(text)
            return (shape, None) if shape else (None, f"{label}: 1 to 4 positive sizes, such as 1, 8, 8")
        if kind == "padding":
            t = text.strip()
            if t in ("valid", "same"):
                return t, None
            if t.isdigit():
                return int(t), None
            return None, f"{label}: valid, same or a whole number of zeros"
        try:
            value = float(text)
        except ValueError:
            return None, f"{label}: not a number"
        if not math.isfinite(value):
            return None, f"{label}: must be a finite number"
        low, high = field.get("minimum"), field.get("maximum")
        if low is not None and value < low:
            return None, f"{label}: at least {low:g}"
        if high is not None and value > high:
            return None, f"{label}: at most {high:g}"
        return value, None

    def _text_edited(self, name: str, text: str) -> None:
        if self._loading:
            return
        value, problem = self._parse(name, text)
        self._show_problem(name, problem)
        if problem is None:
            self.valueEdited.emit(name, value)

    def _show_problem(self, name: str, problem: str | None) -> None:
        editor = self.editors[name]
        target = editor.lineEdit() if isinstance(editor, QComboBox) and editor.isEditable() else editor
        target.setProperty("invalid", "true" if problem is not None else "false")
        target.style().unpolish(target)
        target.style().polish(target)
        label = self._problem_labels[name]
        label.setText(problem or "")
        label.setVisible(problem is not None)
        if problem is None:
            self.problems.pop(name, None)
        else:
            self.problems[name] = problem

    def _emit(self, name: str, value: Any) -> None:
        if not self._loading:
            self.valueEdited.emit(name, value)

    # ----------------------------------------------------------------- values
    def set_values(self, values: dict[str, Any]) -> None:
        """Show ``values`` without emitting; an editor with keyboard focus keeps what is typed in it."""
        self._loading = True
        try:
            for name, value in values.items():
                editor = self.editors.get(name)
                if editor is None or (editor.hasFocus() and name in self.problems) or \
                        (isinstance(editor, QLineEdit) and editor.hasFocus()):
                    continue
                kind = self.fields[name]["kind"]
                if kind == "int" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    editor.setValue(int(value))
                elif kind == "bool":
                    editor.setChecked(bool(value))
                elif kind == "choice":
                    editor.setCurrentText(str(value))
                elif kind == "padding":
                    editor.setEditText(str(value))
                elif kind == "shape":
                    editor.setText(format_shape(value) if isinstance(value, (list, tuple)) else str(value))
                elif kind == "float":
                    editor.setText(format_float(float(value)) if isinstance(value, (int, float)) else str(value))
                else:
                    editor.setText(str(value))
                self._show_problem(name, None)
        finally:
            self._loading = False

    def values(self) -> dict[str, Any]:
        """The current valid value of every field (fields with a problem are left out)."""
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if name in self.problems:
                continue
            kind = self.fields[name]["kind"]
            if kind == "int":
                out[name] = editor.value()
            elif kind == "bool":
                out[name] = editor.isChecked()
            elif kind == "choice":
                out[name] = editor.currentText()
            elif kind == "padding":
                value, problem = self._parse(name, editor.currentText())
                if problem is None:
                    out[name] = value
            else:
                value, problem = self._parse(name, editor.text())
                if problem is None:
                    out[name] = value
        return out
