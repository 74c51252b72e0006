"""The run history: every training run of the project in a table sortable by any metric, the runs
chosen overlaid on one plot, and a run's model and weights restored.

``set_runs(rows, keep_weights)``: one dict per run (``number``, ``title``, ``when``, ``ended``,
``epochs``, ``changes``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``,
``test_accuracy``, ``seconds``, ``parameters``, ``has_weights``, and the curves ``epoch_x``,
``train_curve``, ``val_x``, ``val_curve`` (per epoch) and ``step_x``, ``step_curve`` (per
step, x in epochs)). Selecting rows overlays their curves. Emits ``restoreRequested(number)``,
``deleteRequested(list of numbers)`` and ``keepWeightsChanged(bool)``.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QPushButton, QSplitter, QWidget

from gatescope.widgets import theme
from gatescope.widgets.compare.table import MetricsTable
from gatescope.widgets.curves import MIN_PLOT_HEIGHT
from gatescope.widgets.inside.common import InsidePanel, line_colour

EMPTY = "Every training run of this project is listed here: train it, or compare variants of it."
COLUMNS = (("run", "number", "int"), ("what", "title", "text"), ("what changed", "changes", "text"),
           ("ended", "ended", "text"), ("epochs", "epochs", "int"), ("train loss", "train_loss", "number"),
           ("val loss", "val_loss", "number"), ("val accuracy", "val_accuracy", "percent"),
           ("test loss", "test_loss", "number"), ("test accuracy", "test_accuracy", "percent"),
           ("seconds", "seconds", "number"), ("parameters", "parameters", "int"), ("weights", "weights", "text"),
           ("when", "when", "text"))


class RunHistoryPanel(InsidePanel):
    """See the module docstring; the newest run comes first."""

    restoreRequested = Signal(int)
    deleteRequested = Signal(list)
    keepWeightsChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Run history", "Select runs to overlay their loss curves (training solid, validation "
                         "dashed, each step thin). Sort by any column.", parent)
        self.keep_box = QCheckBox("Keep each run's weights")
        self.keep_box.setToolTip("Store the weights of every new run in the project file, so any run can be restored")
        self.restore_button = QPushButton("Restore run")
        self.restore_button.setToolTip("Make the selected run's model, settings and weights the project's")
        self.delete_button = QPushButton("Delete runs")
        self.delete_button.setToolTip("Remove the selected runs from the history")
        for widget in (self.keep_box, self.restore_button, self.delete_button):
            self.controls.addWidget(widget)
        splitter = QSplitter(Qt.Vertical)
        self.table = MetricsTable([(title, kind) for title, _key, kind in COLUMNS])
        self.plot = pg.PlotWidget(background=theme.BACKGROUND)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "epoch", color=theme.MUTED)
        self.plot.setLabel("left", "loss", color=theme.MUTED)
        self.plot.setMenuEnabled(False)
        self.plot.setMinimumHeight(MIN_PLOT_HEIGHT)
        theme.plain_axes(self.plot)
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor=theme.TEXT,
                                          brush=pg.mkBrush(37, 41, 49, 200))
        splitter.addWidget(self.table)
        splitter.addWidget(self.plot)
        splitter.setSizes([160, 240])
        self.set_content(splitter, min_height=120 + MIN_PLOT_HEIGHT)
        self.rows: dict[int, dict] = {}
        self.overlaid: list[int] = []
        self.keep_box.toggled.connect(self.keepWeightsChanged)
        self.restore_button.clicked.connect(self._on_restore)
        self.delete_button.clicked.connect(lambda: self.deleteRequested.emit(self.table.selected_keys()))
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.show_message(EMPTY)
        self._refresh_buttons()

    def set_runs(self, rows: list[dict], keep_weights: bool) -> None:
        selected = self.table.selected_keys()
        self.keep_box.blockSignals(True)
        self.keep_box.setChecked(keep_weights)
        self.keep_box.blockSignals(False)
        self.rows = {int(r["number"]): dict(r, weights="kept" if r.get("has_weights") else "–") for r in rows}
        newest_first = list(reversed(self.rows.values()))
        self.table.set_rows([[r.get(key) for _title, key, _kind in COLUMNS] for r in newest_first],
                            [r["number"] for r in newest_first])
        if rows:
            self.show_content()
        else:
            self.show_message(EMPTY)
        self.table.select_keys([k for k in selected if k in self.rows])
        self._on_selection()

    def select_runs(self, numbers: list[int]) -> None:
        """Select (and so overlay) runs ``numbers``."""
        self.table.select_keys(list(numbers))
        self._on_selection()

    def _on_selection(self) -> None:
        self.overlay(self.table.selected_keys())
        self._refresh_buttons()

    def overlay(self, numbers: list[int]) -> None:
        """Draw the curves of runs ``numbers`` (those selected) on the plot."""
        self.plot.clear()
        self.legend.clear()
        self.overlaid = sorted(n for n in numbers if n in self.rows)      # colours in the order of the runs
        for k, number in enumerate(self.overlaid):
            row, colour = self.rows[number], line_colour(k)
            faint = QColor(colour)
            faint.setAlpha(110)
            self.plot.plot(row.get("step_x", []), row.get("step_curve", []), pen=pg.mkPen(faint, width=1))
            self.plot.plot(row.get("epoch_x", []), row.get("train_curve", []), pen=pg.mkPen(colour, width=2),
                           symbol="o", symbolSize=5, symbolBrush=colour, symbolPen=None, name=row["title"])
            self.plot.plot(row.get("val_x", []), row.get("val_curve", []),
                           pen=pg.mkPen(colour, width=2, style=Qt.DashLine))

    def _refresh_buttons(self) -> None:
        keys = self.table.selected_keys()
        self.restore_button.setEnabled(len(keys) == 1 and bool(self.rows.get(keys[0], {}).get("has_weights")))
        self.delete_button.setEnabled(bool(keys))

    def _on_restore(self) -> None:
        keys = self.table.selected_keys()
        if len(keys) == 1:
            self.restoreRequested.emit(keys[0])

    def data_table(self):
        """One row per run: its number, then the numeric columns."""
        numeric = [(title, key) for title, key, kind in COLUMNS if kind in ("int", "number", "percent")]
        header = [title for title, _ in numeric]
        table = [[np.nan if r.get(key) is None else float(r[key]) for _, key in numeric] for r in self.rows.values()]
        return header, np.asarray(table, dtype=np.float64).reshape(-1, len(header))
