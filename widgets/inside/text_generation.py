"""The text-generation panel: type a prefix, generate characters, see each step's softmax.

This is the lectures' "hello" table: at every step the model gives a probability for each
character of the vocabulary (a softmax), one character is drawn from it and fed back as the
next input. The heatmap has the generated steps across and the vocabulary down, colour =
probability, the chosen character outlined; the bars below show the distribution of the
step under the mouse (the last step until the mouse moves).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal
from PySide6.QtWidgets import (QDoubleSpinBox, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from gatescope.widgets import theme
from gatescope.widgets.inside.common import (ColourBar, InsidePanel, heatmap_plot, readable_char, sequential_colormap,
                                   set_heatmap)

EMPTY_NO_MODEL = ("Text generation needs a model trained on characters (a text dataset such as "
                  "'text' or 'hello', ending in Classify). Train one, then type a prefix and press Generate.")
EMPTY_READY = "Type a prefix, pick a temperature and press Generate."


class TextGenerationPanel(InsidePanel):
    """Prefix, temperature and length controls; the text and its per-step probabilities.

    Signal: ``generateRequested(prefix, temperature, length)``.
    """

    generateRequested = Signal(str, float, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Text generation", "The model predicts a probability for every character "
                         "(softmax); one is drawn, appended and fed back as the next input. Low "
                         "temperature: always the likeliest; high: more surprising.", parent)
        self.prefix_edit = QLineEdit("h")
        self.prefix_edit.setPlaceholderText("prefix to start from")
        self.prefix_edit.returnPressed.connect(self._on_generate)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.0, 3.0)
        self.temperature_spin.setSingleStep(0.1)
        self.temperature_spin.setValue(1.0)
        self.temperature_spin.setPrefix("temperature ")
        self.temperature_spin.setToolTip("0: always the most likely character; 1: as predicted; above 1: flatter")
        self.length_spin = QSpinBox()
        self.length_spin.setRange(1, 1000)
        self.length_spin.setValue(40)
        self.length_spin.setSuffix(" characters")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("primary")
        self.generate_button.clicked.connect(self._on_generate)
        self.controls.addWidget(QLabel("Prefix:"))
        self.controls.addWidget(self.prefix_edit)
        self.controls.addWidget(self.temperature_spin)
        self.controls.addWidget(self.length_spin)
        self.controls.addWidget(self.generate_button)

        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        self.text_label = QLabel()
        self.text_label.setWordWrap(True)
        self.text_label.setStyleSheet("font-family: monospace; font-size: 14px;")
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.hide()
        self.graphics = pg.GraphicsLayoutWidget()
        self.hover_label = QLabel()
        self.hover_label.setObjectName("muted")
        column.addWidget(self.text_label)
        column.addWidget(self.error_label)
        column.addWidget(self.graphics, 1)
        column.addWidget(self.hover_label)
        self.set_content(content)
        self.table_plot, self.table_image = heatmap_plot(self.graphics, 0, 0,
                                                         "P(next character) at each step; outlined: the one drawn")
        self.table_plot.setLabel("bottom", "generation step (the character drawn)")
        self.table_plot.setLabel("left", "vocabulary")
        self.chosen_marks = pg.ScatterPlotItem(symbol="s", size=14, pen=pg.mkPen("w", width=2), brush=None,
                                               pxMode=True)
        self.table_plot.addItem(self.chosen_marks)
        bar = ColourBar(sequential_colormap(), (0.0, 1.0), "probability", orientation="vertical")
        self.graphics.addItem(bar, row=0, col=1)
        self.bar_plot = self.graphics.addPlot(row=1, col=0)
        self.bar_plot.setMaximumHeight(200)
        theme.plain_axes(self.bar_plot)
        self.bar_plot.setLabel("left", "probability")
        self.bar_plot.setLabel("bottom", "character")
        self.bar_plot.setYRange(0, 1, padding=0.02)
        self.bar_plot.setMouseEnabled(x=False, y=False)
        self.bar_plot.setMenuEnabled(False)
        self.bar_plot.hideButtons()
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.bar_plot.addItem(self.bars)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

        self.prefix = ""
        self.generated = ""
        self.probabilities = np.zeros((0, 0), dtype=np.float32)
        self.vocab: list[str] = []
        self.shown_step = -1
        self.set_available(False)

    # ----------------------------------------------------------------- state
    def set_available(self, available: bool, message: str = EMPTY_NO_MODEL) -> None:
        """Enable the controls when the model can generate; otherwise say why in the panel."""
        for widget in (self.prefix_edit, self.temperature_spin, self.length_spin, self.generate_button):
            widget.setEnabled(available)
        if not available:
            self.show_message(message)
        elif not self.generated:
            self.show_message(EMPTY_READY)

    def set_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy)
        self.generate_button.setText("Generating…" if busy else "Generate")

    def show_error(self, text: str) -> None:
        """A problem with the request (e.g. a prefix character the model does not know)."""
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
        if self.is_empty:
            self.show_message(text)

    def _on_generate(self) -> None:
        if not self.generate_button.isEnabled():
            return
        self.error_label.hide()
        self.generateRequested.emit(self.prefix_edit.text(), float(self.temperature_spin.value()),
                                    int(self.length_spin.value()))

    # ----------------------------------------------------------------- data
    def set_result(self, prefix: str, generated: str, probabilities: np.ndarray, vocab: list[str]) -> None:
        """Show ``generated`` (the characters after ``prefix``) and ``probabilities``
        ``(len(generated), V)``: row k is the distribution step k's character was drawn from."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != (len(generated), len(vocab)):
            raise ValueError(f"probabilities must be ({len(generated)}, {len(vocab)}), not {probabilities.shape}")
        self.prefix, self.generated, self.probabilities, self.vocab = prefix, generated, probabilities, list(vocab)
        self.error_label.hide()
        self.text_label.setText(f"<span style='color:{theme.MUTED}'>{_html(prefix)}</span>"
                                f"<span style='color:{theme.ACCENT}'>{_html(generated)}</span>")
        steps = len(generated)
        set_heatmap(self.table_image, probabilities.T, (0.0, 1.0), sequential_colormap())
        chosen = [self.vocab.index(c) for c in generated]
        self.chosen_marks.setData(x=np.arange(steps), y=np.array(chosen, dtype=np.float64))
        self.table_plot.getAxis("bottom").setTicks(
            [[(float(k), readable_char(c)) for k, c in enumerate(generated)], []])
        self.table_plot.getAxis("left").setTicks([[(float(v), readable_char(c)) for v, c in enumerate(self.vocab)],
                                                  []])
        self.table_plot.setRange(xRange=(-0.5, steps - 0.5), yRange=(-0.5, len(self.vocab) - 0.5), padding=0)
        self.bar_plot.getAxis("bottom").setTicks([[(float(v), readable_char(c)) for v, c in enumerate(self.vocab)],
                                                  []])
        self.bar_plot.setXRange(-0.6, len(self.vocab) - 0.4, padding=0)
        self.show_step(steps - 1)
        self.show_content()

    def show_step(self, step: int) -> None:
        """Draw the distribution of generation step ``step`` as bars, the chosen character highlighted."""
        if not 0 <= step < len(self.generated):
            return
        self.shown_step = step
        chosen = self.vocab.index(self.generated[step])
        brushes = [pg.mkBrush(theme.WARNING if v == chosen else theme.ACCENT) for v in range(len(self.vocab))]
        self.bars.setOpts(x=np.arange(len(self.vocab)), height=self.probabilities[step], width=0.8, brushes=brushes)
        context = (self.prefix + self.generated)[:len(self.prefix) + step][-12:]
        self.bar_plot.setTitle(f"step {step + 1}: after '…{context}' the model drew "
                               f"'{readable_char(self.generated[step])}' "
                               f"(p = {self.probabilities[step, chosen]:.2f})")
        self.hover_label.setText("Move the mouse over the table to see the probabilities of another step.")

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.generated or not self.table_plot.sceneBoundingRect().contains(scene_pos):
            return
        point = self.table_plot.getViewBox().mapSceneToView(scene_pos)
        step, v = int(round(point.x())), int(round(point.y()))
        if 0 <= step < len(self.generated):
            if step != self.shown_step:
                self.show_step(step)
            if 0 <= v < len(self.vocab):
                self.hover_label.setText(f"step {step + 1}: P('{readable_char(self.vocab[v])}') = "
                                         f"{self.probabilities[step, v]:.3f}")

    # ----------------------------------------------------------------- export
    def data_table(self):
        """One row per generation step: step, index of the chosen character, then P of each character."""
        chosen = [self.vocab.index(c) for c in self.generated]
        header = ["step", "chosen index"] + [f"P({readable_char(c)})" for c in self.vocab]
        return header, np.column_stack([np.arange(len(self.generated)), chosen, self.probabilities])


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "↵<br>"))
