"""The gates panel: one heatmap per gate of a recurrent block, time across and units down.

For an LSTM the four heatmaps are the input gate i_t, forget gate f_t, candidate C̃_t and
output gate o_t; for a GRU the reset gate r_t, update gate z_t and candidate h̃_t. Sigmoid
gates share one colour bar from 0 (closed) to 1 (open); the tanh candidate has its own
diverging bar from -1 to 1. The input sequence runs along the time axis: characters as tick
labels, signal values or video frames in a strip above. Moving the mouse over a heatmap
shows the time step, unit and value under it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QSpinBox, QWidget

from gatescope.widgets import theme
from gatescope.widgets.axes import plot_axes
from gatescope.widgets.inside.common import (ColourBar, InputSequence, InsidePanel, diverging_colormap,
                                   fill_input_strip, gate_label, gate_range, heatmap_plot, readable_char,
                                   sequential_colormap, set_heatmap, time_ticks)

EMPTY_NO_BLOCK = ("This model has no recurrent block (SimpleRNN, LSTM or GRU): add one in the Build view "
                  "to see its gates.")
EMPTY_NO_DATA = "Train the model, or choose a probe sample, to fill this panel with its gates."
MIN_HEATMAP_HEIGHT = 40     # pixels of each gate's heatmap, below which its rows cannot be told apart
TITLE_HEIGHT = 30           # a heatmap's title above it
AXIS_HEIGHT = 45            # the shared time axis under the last heatmap
MIN_STRIP_HEIGHT = 70       # the input strip above the heatmaps, its title included
LABELS_HEIGHT = 60          # the caption above the plots and the hover line below them


class GatesPanel(InsidePanel):
    """Gate heatmaps of one recurrent block for one probe sample.

    Signals: ``blockChosen(block_id)`` when the person picks a block in the list,
    ``sampleChanged(index)`` when they change the probe sample number,
    ``nextSampleRequested()`` for the "Next test sample" button.
    """

    blockChosen = Signal(str)
    sampleChanged = Signal(int)
    nextSampleRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Gates", "How far each gate is open at every time step: 0 = closed, "
                         "1 = open. Rows are units of the hidden state, columns are time steps.", parent)
        self.block_combo = QComboBox()
        self.block_combo.setToolTip("The recurrent block whose gates are shown")
        # As wide as its longest entry ("b1 · LSTM (64 units), backward"): it was cut to "b1 · L".
        self.block_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.block_combo.currentIndexChanged.connect(self._on_block_index)
        self.sample_spin = QSpinBox()
        self.sample_spin.setRange(0, 0)
        self.sample_spin.setPrefix("sample #")
        self.sample_spin.setToolTip("Which test sample is run through the model to probe the gates")
        self.sample_spin.valueChanged.connect(self.sampleChanged)
        self.next_button = QPushButton("Next test sample")
        self.next_button.clicked.connect(self.nextSampleRequested)
        self.controls.addWidget(QLabel("Block:"))
        self.controls.addWidget(self.block_combo)
        self.controls.addWidget(self.sample_spin)
        self.controls.addWidget(self.next_button)

        self.graphics = pg.GraphicsLayoutWidget()
        self.hover_label = QLabel("Move the mouse over a heatmap to read a value.")
        self.hover_label.setObjectName("muted")
        self.set_captioned_content(self.graphics, self.hover_label)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

        self.gates: dict[str, np.ndarray] = {}
        self.labels: dict[str, str] = {}
        self.input_sequence: InputSequence | None = None
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.input_plot: pg.PlotItem | None = None
        self.colour_bars: dict[str, ColourBar] = {}
        self._layout_key: tuple = ()
        self._strip_sequence: InputSequence | None = None
        self.show_message(EMPTY_NO_BLOCK)

    # ----------------------------------------------------------------- choices
    def set_blocks(self, blocks: list[tuple[str, str]], current: str | None = None) -> None:
        """The recurrent blocks to choose from, as ``(block_id, label)``; ``current`` selected."""
        self.block_combo.blockSignals(True)
        self.block_combo.clear()
        for block_id, label in blocks:
            self.block_combo.addItem(label, block_id)
        index = self.block_combo.findData(current) if current is not None else -1
        self.block_combo.setCurrentIndex(index if index >= 0 else (0 if blocks else -1))
        self.block_combo.blockSignals(False)

    @property
    def current_block(self) -> str | None:
        return self.block_combo.currentData()

    def set_sample_count(self, count: int) -> None:
        """How many probe samples there are to choose from (the spin box goes 0..count-1)."""
        self.sample_spin.blockSignals(True)
        self.sample_spin.setRange(0, max(0, count - 1))
        self.sample_spin.blockSignals(False)
        self.sample_spin.setEnabled(count > 0)
        self.next_button.setEnabled(count > 1)

    def set_sample(self, index: int) -> None:
        """Show ``index`` in the spin box without emitting ``sampleChanged``."""
        self.sample_spin.blockSignals(True)
        self.sample_spin.setValue(index)
        self.sample_spin.blockSignals(False)

    def _on_block_index(self, index: int) -> None:
        if index >= 0:
            self.blockChosen.emit(self.block_combo.itemData(index))

    # ----------------------------------------------------------------- data
    def set_gates(self, gates: dict[str, np.ndarray], family: str = "LSTM",
                  input_sequence: InputSequence | None = None, caption: str = "",
                  notes: dict[str, str] | None = None) -> None:
        """Show ``gates``: gate name -> ``(T, H)`` values (time steps, units), in drawing order.

        ``family``: ``LSTM`` or ``GRU`` (names the candidate C̃_t or h̃_t). ``input_sequence``:
        the sample's input, drawn along the time axis. ``caption``: one line above the heatmaps
        (which sample, which step of training). ``notes``: gate name -> a remark added to its
        title, e.g. "pinned to 1".
        """
        if not gates:
            self.show_message(EMPTY_NO_DATA)
            return
        self.gates = {name: np.asarray(values, dtype=np.float32) for name, values in gates.items()}
        notes = notes or {}
        self.labels = {name: gate_label(name, family) for name in self.gates}
        self.input_sequence = input_sequence
        key = (tuple(self.gates), family, input_sequence.kind if input_sequence is not None and
               input_sequence.needs_strip else None)
        if key != self._layout_key:
            self._strip_sequence = None
            self._build_layout()
            self._layout_key = key
        steps = next(iter(self.gates.values())).shape[0]
        for name, values in self.gates.items():
            low, high = gate_range(name)
            cmap = diverging_colormap() if name == "candidate" else sequential_colormap()
            set_heatmap(self.images[name], values.T, (low, high), cmap)
            title = self.labels[name] + (f"  ({notes[name]})" if name in notes else "")
            self.plots[name].setTitle(title)
            units = values.shape[1]
            # First and last unit only: a heatmap a few dozen pixels tall has no room for
            # more labels, and pyqtgraph's automatic ticks overlapped there.
            self.plots[name].getAxis("left").setTicks([[(0, "0"), (units - 1, str(units - 1))]] if units > 1
                                                      else [[(0, "0")]])
            self.plots[name].setLimits(xMin=-0.5, xMax=steps - 0.5, yMin=-0.5, yMax=values.shape[1] - 0.5)
            self.plots[name].setRange(xRange=(-0.5, steps - 0.5), yRange=(-0.5, values.shape[1] - 0.5),
                                      padding=0)
        self._draw_input(steps)
        self.caption_label.setText(caption)
        self.caption_label.setVisible(bool(caption))
        self.show_content()

    def _build_layout(self) -> None:
        self.graphics.clear()
        self.plots, self.images, self.colour_bars = {}, {}, {}
        row = 0
        self.input_plot = None
        if self.input_sequence is not None and self.input_sequence.needs_strip:
            self.input_plot = self.graphics.addPlot(row=row, col=0, axisItems=plot_axes(bottom="integer"))
            self.input_plot.setMaximumHeight(90)
            self.input_plot.setMenuEnabled(False)
            self.input_plot.hideButtons()
            theme.plain_axes(self.input_plot)
            row += 1
        names = list(self.gates)
        for name in names:
            plot, image = heatmap_plot(self.graphics, row, 0, self.labels[name])
            plot.setLabel("left", "unit")
            self.plots[name], self.images[name] = plot, image
            row += 1
        first = self.plots[names[0]]
        for name in names[1:]:
            self.plots[name].setXLink(first)
        for name in names[:-1]:
            # The heatmaps share one time axis (linked); only the last one draws it, which
            # leaves each heatmap half as tall again in a dock of ordinary height.
            self.plots[name].hideAxis("bottom")
        if self.input_plot is not None:
            self.input_plot.setXLink(first)
        self.plots[names[-1]].setLabel("bottom", "time step t")
        # Below this the panel scrolls instead of squashing the heatmaps to slivers.
        for name in names:
            self.plots[name].setMinimumHeight(MIN_HEATMAP_HEIGHT + TITLE_HEIGHT + (AXIS_HEIGHT if name == names[-1] else 0))
        if self.input_plot is not None:
            self.input_plot.setMinimumHeight(MIN_STRIP_HEIGHT)
        needed = int(self.graphics.ci.effectiveSizeHint(Qt.MinimumSize).height()) + 10
        self.graphics.setMinimumHeight(needed)
        self.set_content_min_height(needed + LABELS_HEIGHT)
        bars = self.graphics.addLayout(row=row, col=0)
        sigmoid = [self.images[n] for n in names if n != "candidate"]
        if sigmoid:
            bar = ColourBar(sequential_colormap(), (0.0, 1.0), "gate value: 0 = closed, 1 = open")
            bars.addItem(bar, row=0, col=0)
            self.colour_bars["gate"] = bar
        if "candidate" in self.images:
            bar = ColourBar(diverging_colormap(), (-1.0, 1.0), "candidate value (tanh): -1 … 1")
            bars.addItem(bar, row=0, col=1)
            self.colour_bars["candidate"] = bar

    def _draw_input(self, steps: int) -> None:
        sequence = self.input_sequence
        names = list(self.plots)
        for name in names:
            axis = self.plots[name].getAxis("bottom")
            if sequence is not None and sequence.kind == "text":
                axis.setTicks(time_ticks(sequence.values[:steps]))
            else:
                axis.setTicks(None)
        if sequence is not None and sequence.kind == "text":
            self.plots[names[-1]].setLabel("bottom", "time step t (input character x_t)")
        else:
            self.plots[names[-1]].setLabel("bottom", "time step t")
        if self.input_plot is not None and sequence is not None and not sequence.same_as(self._strip_sequence):
            fill_input_strip(self.input_plot, sequence)
            self.input_plot.setTitle(sequence.description or None)
            self._strip_sequence = sequence

    # ----------------------------------------------------------------- hover
    def describe_point(self, name: str, t: int, unit: int) -> str:
        """The hover text for gate ``name`` at time step ``t`` and ``unit``."""
        value = float(self.gates[name][t, unit])
        where = f"t = {t}"
        if self.input_sequence is not None and self.input_sequence.kind == "text" and t < len(self.input_sequence):
            where += f" (input '{readable_char(self.input_sequence.values[t])}')"
        return f"{self.labels[name]}: {where}, unit {unit}, value {value:.3f}"

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        for name, plot in self.plots.items():
            if not plot.sceneBoundingRect().contains(scene_pos):
                continue
            point = plot.getViewBox().mapSceneToView(scene_pos)
            t, unit = int(round(point.x())), int(round(point.y()))
            values = self.gates[name]
            if 0 <= t < values.shape[0] and 0 <= unit < values.shape[1]:
                self.hover_label.setText(self.describe_point(name, t, unit))
            return

    # ----------------------------------------------------------------- export
    def data_table(self):
        """Columns ``t, unit`` then one per gate; one row per (time step, unit)."""
        names = list(self.gates)
        steps, units = self.gates[names[0]].shape
        t, unit = np.meshgrid(np.arange(steps), np.arange(units), indexing="ij")
        columns = [t.ravel(), unit.ravel()] + [self.gates[n].ravel() for n in names]
        return ["t", "unit"] + [self.labels[n] for n in names], np.column_stack(columns)
