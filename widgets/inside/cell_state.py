"""The cell-state panel: trajectories of C_t and h_t over time for a few chosen units.

The cell state C_t is the LSTM's long-term memory (the lectures' "gradient highway"); the
hidden state h_t = o_t * tanh(C_t) is what the block outputs. With the forget gate pinned
to 1 and the input gate to 0 the C_t lines go flat: the memory is frozen. A GRU has no
separate cell state, so only h_t is drawn. By default the most active units (largest
variance over time) are shown; the person can type other unit numbers.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QLineEdit, QPushButton, QSpinBox, QWidget

from gatescope.widgets import theme
from gatescope.widgets.axes import plot_axes
from gatescope.widgets.inside.common import InputSequence, InsidePanel, fill_input_strip, line_colour, time_ticks

MIN_PLOT_HEIGHT = 130     # a C_t or h_t plot, title and axis included

EMPTY_NO_BLOCK = ("This model has no recurrent block (SimpleRNN, LSTM or GRU): add one in the Build view "
                  "to see its memory over time.")
EMPTY_NO_DATA = "Train the model, or choose a probe sample, to fill this panel with its cell state."


def most_active_units(states: np.ndarray, count: int = 5) -> list[int]:
    """The ``count`` units of ``states`` ``(T, H)`` with the largest variance over time, in unit order."""
    variance = np.var(np.asarray(states, dtype=np.float64), axis=0)
    top = np.argsort(-variance, kind="stable")[:count]
    return sorted(int(u) for u in top)


def parse_units(text: str, units: int) -> list[int]:
    """Unit numbers from text like ``"3, 7 12"``; ValueError naming a bad or out-of-range entry."""
    chosen: list[int] = []
    for part in text.replace(",", " ").split():
        if not part.lstrip("-").isdigit():
            raise ValueError(f"'{part}' is not a unit number")
        unit = int(part)
        if not 0 <= unit < units:
            raise ValueError(f"unit {unit} does not exist; units go from 0 to {units - 1}")
        if unit not in chosen:
            chosen.append(unit)
    return chosen


class CellStatePanel(InsidePanel):
    """C_t (top) and h_t (bottom) against t for the chosen units.

    Signal: ``unitsChanged(list)`` when the person types other units or asks for the most
    active ones.
    """

    unitsChanged = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Cell state", "The memory of the block over time: cell state C_t (long-term "
                         "memory) and hidden state h_t (its output), one line per unit.", parent)
        self.units_edit = QLineEdit()
        self.units_edit.setPlaceholderText("units, e.g. 0, 3, 7")
        self.units_edit.setToolTip("Which units to draw: numbers separated by commas")
        self.units_edit.editingFinished.connect(self._on_units_typed)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 20)
        self.count_spin.setValue(5)
        self.count_spin.setToolTip("How many of the most active units to draw")
        self.most_active_button = QPushButton("Most active")
        self.most_active_button.setToolTip("Draw the units whose C_t (or h_t) varies most over time")
        self.most_active_button.clicked.connect(self._on_most_active)
        self.controls.addWidget(QLabel("Units:"))
        self.controls.addWidget(self.units_edit)
        self.controls.addWidget(self.count_spin)
        self.controls.addWidget(self.most_active_button)

        self.graphics = pg.GraphicsLayoutWidget()
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.hide()
        # The strip, the legend row and two plots that each still show their lines; below, it scrolls.
        self.set_captioned_content(self.graphics, self.error_label, min_height=60 + 40 + 2 * MIN_PLOT_HEIGHT + 90)

        self.input_plot = self.graphics.addPlot(row=0, col=0, axisItems=plot_axes(bottom="integer"))
        self.input_plot.setMaximumHeight(80)
        self.input_plot.setMinimumHeight(60)
        # One legend for both plots (a unit has the same colour in each), in a row of its own
        # above them, in rows of five: inside a plot it covered the lines it names.
        self.legend = pg.LegendItem(labelTextSize="8pt", labelTextColor=theme.TEXT, colCount=5)
        self.graphics.addItem(self.legend, row=1, col=0)
        self.cell_plot = self.graphics.addPlot(row=2, col=0, title="cell state C_t (long-term memory)",
                                               axisItems=plot_axes(bottom="integer"))
        self.hidden_plot = self.graphics.addPlot(row=3, col=0, title="hidden state h_t = o_t · tanh(C_t)",
                                                 axisItems=plot_axes(bottom="integer"))
        for plot in (self.cell_plot, self.hidden_plot):
            plot.setMinimumHeight(MIN_PLOT_HEIGHT)
        for plot in (self.input_plot, self.cell_plot, self.hidden_plot):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            theme.plain_axes(plot)
            plot.showGrid(x=True, y=True, alpha=0.2)
        self.cell_plot.setLabel("left", "C_t")
        self.hidden_plot.setLabel("left", "h_t")
        self.hidden_plot.setLabel("bottom", "time step t")
        self.cell_plot.setXLink(self.hidden_plot)
        self.input_plot.setXLink(self.hidden_plot)

        self.cell: np.ndarray | None = None
        self.hidden: np.ndarray | None = None
        self.units: list[int] = []
        self.input_sequence: InputSequence | None = None
        self._auto_units = True
        self._drawn: tuple = ()
        self._labelled: list[int] = []               # the units the lines' names say
        self._cell_lines: list[pg.PlotDataItem] = []
        self._hidden_lines: list[pg.PlotDataItem] = []
        self._strip_sequence: InputSequence | None = None
        self.show_message(EMPTY_NO_BLOCK)

    def set_states(self, hidden: np.ndarray, cell: np.ndarray | None = None,
                   input_sequence: InputSequence | None = None, caption: str = "") -> None:
        """Show ``hidden`` ``(T, H)`` h_t and, for an LSTM, ``cell`` ``(T, H)`` C_t.

        The units drawn stay those the person typed; until they type any, the most active
        ones (by variance of C_t, or of h_t without a cell) are drawn.
        """
        self.hidden = np.asarray(hidden, dtype=np.float32)
        self.cell = None if cell is None else np.asarray(cell, dtype=np.float32)
        self.input_sequence = input_sequence
        units = self.hidden.shape[1]
        if self._auto_units or any(u >= units for u in self.units):
            self.units = most_active_units(self.cell if self.cell is not None else self.hidden,
                                           self.count_spin.value())
            self._auto_units = True
            self.units_edit.setText(", ".join(str(u) for u in self.units))
        self.caption_label.setText(caption)
        self.caption_label.setVisible(bool(caption))
        self._draw()
        self.show_content()

    def set_units(self, units: list[int]) -> None:
        """Draw these units (kept across updates until the person asks for the most active)."""
        self.units = list(units)
        self._auto_units = False
        self.units_edit.setText(", ".join(str(u) for u in self.units))
        if self.hidden is not None:
            self._draw()
        self.unitsChanged.emit(list(self.units))

    def _on_units_typed(self) -> None:
        if self.hidden is None:
            return
        try:
            units = parse_units(self.units_edit.text(), self.hidden.shape[1])
        except ValueError as exc:
            self.error_label.setText(str(exc))
            self.error_label.show()
            return
        self.error_label.hide()
        if units and units != self.units:
            self.set_units(units)

    def _on_most_active(self) -> None:
        if self.hidden is None:
            return
        self._auto_units = True
        self.units = most_active_units(self.cell if self.cell is not None else self.hidden,
                                       self.count_spin.value())
        self.units_edit.setText(", ".join(str(u) for u in self.units))
        self._draw()
        self.unitsChanged.emit(list(self.units))

    def _draw(self) -> None:
        steps = self.hidden.shape[0]
        t = np.arange(steps)
        layout = (len(self.units), self.cell is not None)
        if layout != self._drawn:                       # another number of lines: new lines and legend
            self.cell_plot.clear()
            self.hidden_plot.clear()
            self.legend.clear()
            self._cell_lines, self._hidden_lines = [], []
            for k, unit in enumerate(self.units):
                pen = pg.mkPen(line_colour(k), width=2)
                if self.cell is not None:
                    self._cell_lines.append(self.cell_plot.plot(pen=pen, name=f"unit {unit}"))
                self._hidden_lines.append(self.hidden_plot.plot(pen=pen, name=f"unit {unit}"))
                self.legend.addItem(self._hidden_lines[-1], f"unit {unit}")
            self._drawn = layout
            self._labelled = list(self.units)
        elif self._labelled != self.units:              # other units, as many: relabel the lines
            # (rebuilding lines and legend on each live refresh, when the most active units
            # change, was most of this panel's cost while training)
            for (_, label), unit in zip(self.legend.items, self.units):
                label.setText(f"unit {unit}")
            for lines in (self._cell_lines, self._hidden_lines):
                for line, unit in zip(lines, self.units):
                    line.opts["name"] = f"unit {unit}"
            self._labelled = list(self.units)
        for k, unit in enumerate(self.units):              # same units: only the values change
            if self.cell is not None:
                self._cell_lines[k].setData(t, self.cell[:, unit])
            self._hidden_lines[k].setData(t, self.hidden[:, unit])
        self.cell_plot.setVisible(self.cell is not None)
        self.hidden_plot.setTitle("hidden state h_t = o_t · tanh(C_t)" if self.cell is not None else
                                  "hidden state h_t (a GRU or RNN keeps its memory here; it has no C_t)")
        sequence = self.input_sequence
        axis = self.hidden_plot.getAxis("bottom")
        if sequence is not None and sequence.kind == "text":
            axis.setTicks(time_ticks(sequence.values[:steps]))
            self.hidden_plot.setLabel("bottom", "time step t (input character x_t)")
        else:
            axis.setTicks(None)
            self.hidden_plot.setLabel("bottom", "time step t")
        if sequence is not None and sequence.needs_strip:
            if not sequence.same_as(self._strip_sequence):
                fill_input_strip(self.input_plot, sequence)
                self.input_plot.setTitle(sequence.description or None)
                self._strip_sequence = sequence
            self.input_plot.setVisible(True)
        else:
            self.input_plot.clear()
            self._strip_sequence = None
            self.input_plot.setVisible(False)
        self.hidden_plot.setXRange(-0.5, steps - 0.5, padding=0)

    def data_table(self):
        """Columns ``t``, then ``C_t unit u`` and ``h_t unit u`` for each drawn unit."""
        steps = self.hidden.shape[0]
        header, columns = ["t"], [np.arange(steps)]
        for unit in self.units:
            if self.cell is not None:
                header.append(f"C_t unit {unit}")
                columns.append(self.cell[:, unit])
            header.append(f"h_t unit {unit}")
            columns.append(self.hidden[:, unit])
        return header, np.column_stack(columns)
