"""A read-only table sortable by any column, numbers by their value (not their text).

``MetricsTable(columns)``: ``columns`` is ``[(title, format)]`` with ``format`` ``"text"``,
``"int"``, ``"number"`` (4 significant digits), ``"percent"`` or ``"ms"`` (seconds shown as
milliseconds); ``set_rows(rows, keys)`` fills it, one list of values per row (None shows as a
dash and sorts first) with ``keys[i]`` kept on the row (``row_key(row)``), so a selection still
names the right thing after the person sorts. Rows stay in the order given until the person
clicks a column.
"""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

FORMATS = ("text", "int", "number", "percent", "ms")


def format_value(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "number":
        return f"{float(value):.4g}"
    if kind == "percent":
        return f"{float(value):.1%}"
    if kind == "ms":
        return f"{float(value) * 1e3:.2f}"
    return str(value)


class _Item(QTableWidgetItem):
    """A cell that sorts by its value: numbers as numbers, missing values first."""

    def __init__(self, value: Any, kind: str):
        super().__init__(format_value(value, kind))
        self.value, self.kind = value, kind
        if kind != "text":
            self.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)

    def _order(self):
        if self.value is None or (isinstance(self.value, float) and not math.isfinite(self.value)):
            return (0, 0.0, "")
        if self.kind == "text":
            return (1, 0.0, str(self.value).lower())
        return (1, float(self.value), "")

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Item):
            return self._order() < other._order()
        return super().__lt__(other)


class MetricsTable(QTableWidget):
    """See the module docstring."""

    def __init__(self, columns: list[tuple[str, str]], parent=None):
        super().__init__(0, len(columns), parent)
        self.columns = list(columns)
        self.setHorizontalHeaderLabels([title for title, _ in columns])
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)   # rows as given until a column is clicked
        self.setSortingEnabled(True)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.setMinimumHeight(90)

    def set_rows(self, rows: list[list[Any]], keys: list[Any]) -> None:
        sorting = self.isSortingEnabled()
        self.setSortingEnabled(False)           # rows stay where they are put while filling
        self.setRowCount(len(rows))
        for r, (values, key) in enumerate(zip(rows, keys)):
            for c, (value, (_title, kind)) in enumerate(zip(values, self.columns)):
                item = _Item(value, kind)
                item.setData(Qt.UserRole, key)
                self.setItem(r, c, item)
        self.setSortingEnabled(sorting)

    def row_key(self, row: int) -> Any:
        item = self.item(row, 0)
        return None if item is None else item.data(Qt.UserRole)

    def selected_keys(self) -> list[Any]:
        """The keys of the selected rows, top to bottom as shown."""
        rows = sorted({index.row() for index in self.selectionModel().selectedRows()})
        return [self.row_key(r) for r in rows]

    def select_keys(self, keys: list[Any]) -> None:
        self.clearSelection()
        mode = self.selectionMode()
        self.setSelectionMode(QAbstractItemView.MultiSelection)
        for row in range(self.rowCount()):
            if self.row_key(row) in keys:
                self.selectRow(row)
        self.setSelectionMode(mode)
