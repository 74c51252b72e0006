"""What every "inside the network" panel shares.

``InsidePanel`` is the frame of each panel: a title, a one-line explanation, a row of
controls ending in "Save picture..." and "Save data..." buttons, and a content area that is
replaced by a sentence saying what to do while the panel has nothing to show. The rest are
small helpers: CSV writing, gate names as the lectures spell them, colour maps, and how an
input sequence (characters, signal values, video frames) is drawn along a time axis.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QFrame, QLabel, QPushButton, QScrollArea, QSizePolicy,
                               QStackedWidget, QVBoxLayout, QWidget)

from gatescope.widgets import theme
from gatescope.widgets.axes import plot_axes
from gatescope.widgets.flow_layout import FlowLayout

# Gate names as the recurrent layers record them -> how the lectures write them.
GATE_LABELS = {
    "input": "input gate i_t",
    "forget": "forget gate f_t",
    "candidate": "candidate C̃_t (tanh)",
    "output": "output gate o_t",
    "reset": "reset gate r_t",
    "update": "update gate z_t",
}
GRU_CANDIDATE_LABEL = "candidate h̃_t (tanh)"

# Values a gate can take: sigmoid gates 0..1, the tanh candidate -1..1.
SIGMOID_RANGE = (0.0, 1.0)
TANH_RANGE = (-1.0, 1.0)

# Distinct line colours for several units or curves on one dark plot.
LINE_COLOURS = ("#5fa8ff", "#ff9f5f", "#6fcf73", "#e0d25f", "#b68cff", "#ff5c8a", "#4fb3bf",
                "#f2f2f2", "#c08457", "#9aa3b2")


def gate_label(name: str, family: str = "LSTM") -> str:
    """How the lectures name gate ``name`` ("forget" -> "forget gate f_t")."""
    if name == "candidate" and family.upper() == "GRU":
        return GRU_CANDIDATE_LABEL
    return GATE_LABELS.get(name, name.replace("_", " "))


def gate_symbol(name: str, family: str = "LSTM") -> str:
    """Gate ``name`` as the lectures' symbol alone: ``i_t``, ``f_t``, ``C̃_t``, ``h̃_t``."""
    return gate_label(name, family).replace(" (tanh)", "").split(" ")[-1]


def gate_range(name: str) -> tuple[float, float]:
    """The values gate ``name`` can take: (-1, 1) for the tanh candidate, (0, 1) otherwise."""
    return TANH_RANGE if name == "candidate" else SIGMOID_RANGE


def sequential_colormap() -> pg.ColorMap:
    """Dark-to-bright map for 0..1 values (gates closed -> open)."""
    return pg.colormap.get("viridis")


def diverging_colormap() -> pg.ColorMap:
    """Blue-white-red map for -1..1 values (the tanh candidate), white at 0."""
    return pg.colormap.get("CET-D1")


def line_colour(index: int) -> str:
    return LINE_COLOURS[index % len(LINE_COLOURS)]


def write_csv(path: str | Path, header: Sequence[str], rows) -> Path:
    """Write a numeric table as CSV: one header line, then ``rows`` (2-D) with ``,`` between values.

    Read it back with ``numpy.loadtxt(path, delimiter=",", skiprows=1)``. Missing values are
    written as ``nan``.
    """
    path = Path(path)
    table = np.asarray(rows, dtype=np.float64)
    if table.ndim == 1:
        table = table.reshape(-1, 1)
    names = [str(h).replace(",", ";").replace("\n", " ") for h in header]
    if table.size and table.shape[1] != len(names):
        raise ValueError(f"{len(names)} column names for {table.shape[1]} columns")
    np.savetxt(path, table.reshape(-1, len(names)), delimiter=",", header=",".join(names),
               comments="", fmt="%.9g")
    return path


def readable_char(ch: str) -> str:
    """A character as a tick label: space, newline and tab made visible."""
    return {" ": "␣", "\n": "↵", "\t": "⇥", "": "∅"}.get(ch, ch)


def time_ticks(labels: Sequence[str], most: int = 60) -> list[list[tuple[float, str]]]:
    """Tick list for a pyqtgraph axis: ``labels[t]`` at ``t``, thinned to at most ``most`` ticks."""
    step = max(1, int(np.ceil(len(labels) / most)))
    major = [(float(t), readable_char(labels[t])) for t in range(0, len(labels), step)]
    return [major, []]


class InputSequence:
    """The input of one sample along the time axis, as the panels draw it.

    ``kind``: ``"text"`` (``values``: one character per step), ``"signal"`` (``values``:
    ``(T,)`` or ``(T, F)`` numbers), ``"frames"`` (``values``: ``(T, H, W)`` grey or
    ``(T, H, W, 3)`` colour images). ``description``: a short caption ("input x_t: 'hello'").
    """

    def __init__(self, kind: str, values, description: str = ""):
        if kind not in ("text", "signal", "frames"):
            raise ValueError(f"input kind must be text, signal or frames, not {kind!r}")
        self.kind = kind
        self.values = list(values) if kind == "text" else np.asarray(values, dtype=np.float32)
        self.description = description

    def __len__(self) -> int:
        return len(self.values)

    def same_as(self, other: "InputSequence | None") -> bool:
        """True when ``other`` is the same input (so a drawn strip can stay as it is)."""
        if other is None or other.kind != self.kind or len(other) != len(self):
            return False
        if self.kind == "text":
            return other.values == self.values and other.description == self.description
        return bool(np.array_equal(other.values, self.values)) and other.description == self.description

    @property
    def needs_strip(self) -> bool:
        """Signals and frames get a small plot above the heatmaps; text goes into tick labels."""
        return self.kind in ("signal", "frames")


def fill_input_strip(plot: pg.PlotItem, sequence: InputSequence, max_frames: int = 24) -> None:
    """Draw ``sequence`` (signal or frames) into the small ``plot`` above a time axis.

    A signal becomes one line per feature against ``t``; frames become thumbnails, each one
    time step wide, at most ``max_frames`` of them (evenly spaced).
    """
    plot.clear()
    plot.hideAxis("bottom")
    plot.audit_min_height = 30          # a strip under a title: thin on purpose (studio.layout_audit)
    if sequence.kind == "signal":
        values = sequence.values.reshape(len(sequence.values), -1)
        for f in range(min(values.shape[1], len(LINE_COLOURS))):
            plot.plot(np.arange(len(values)), values[:, f], pen=pg.mkPen(line_colour(f), width=1.5))
        plot.setLabel("left", "input x_t")
        plot.enableAutoRange(axis="y")
        # The strip is a few tens of pixels tall: ticks at its lowest and highest value only
        # (pyqtgraph's three or four overlapped there).
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        plot.getAxis("left").setTicks([[(v, f"{v:.3g}") for v in sorted({low, high})], []])
    elif sequence.kind == "frames":
        frames = sequence.values
        step = max(1, int(np.ceil(len(frames) / max_frames)))
        for t in range(0, len(frames), step):
            frame = frames[t]
            low, high = float(np.min(frame)), float(np.max(frame))
            image = pg.ImageItem(frame, axisOrder="row-major", levels=(low, high if high > low else low + 1))
            image.setRect(QRectF(t - 0.5, 0.0, float(step), 1.0))
            plot.addItem(image)
        plot.getViewBox().invertY(True)
        plot.setYRange(0, 1, padding=0.02)
        plot.setLabel("left", "frame")
        plot.getAxis("left").setTicks([[], []])


class _Controls:
    """The panel's control row as subclasses see it: ``addWidget`` puts a control before the
    save buttons. The row is a ``FlowLayout``: in a narrow dock it wraps instead of cutting
    buttons off."""

    def __init__(self, flow: FlowLayout):
        self.flow = flow

    def addWidget(self, widget: QWidget) -> None:  # noqa: N802 - QBoxLayout's name
        self.flow.insertWidget(self.flow.break_index(), widget)


class _Unwrapped(QVBoxLayout):
    """The one-widget layout between a panel's scroll area and its view, telling the scroll area
    that the view's height does not depend on its width. Qt's resizable scroll area gives a view
    whose layout has a height-for-width item (a wrapped caption) the height that item's layout
    asks for at that width, which counts every plot at its size hint: the gradients panel, which
    needs 88 pixels, scrolled at 373 with a 500-pixel view. Inside the view its own layout still
    gives a wrapped caption all the lines it needs."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return False


class InsidePanel(QWidget):
    """Frame of an "inside the network" panel: title, explanation, controls, content or message.

    Subclasses put their controls into ``controls`` (``addWidget``: before the save buttons,
    wrapping onto a second row when the panel is narrow) and their view into
    ``set_content(widget, min_height)`` (or ``set_captioned_content``: a caption line above the
    view, a footer below), and implement ``data_table()``. The view scrolls when
    the panel is shorter than ``min_height`` (its plots keep a readable size rather than being
    squashed). While there is nothing to show, ``show_message(text)`` replaces the view by
    ``text`` (what to do). "Save picture" saves the view alone, not the panel's buttons.

    Signals: ``pictureSaved(path)``, ``dataSaved(path)`` after an export.
    """

    pictureSaved = Signal(str)
    dataSaved = Signal(str)

    def __init__(self, title: str, explanation: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        self.title_label = QLabel(title)
        self.title_label.setObjectName("heading")
        self.explanation_label = QLabel(explanation)
        self.explanation_label.setObjectName("muted")
        self.explanation_label.setWordWrap(True)
        self.explanation_label.setVisible(bool(explanation))
        layout.addWidget(self.title_label)
        layout.addWidget(self.explanation_label)

        self.save_picture_button = QPushButton("Save picture…")
        self.save_picture_button.setToolTip("Save what the panel shows as a PNG image")
        self.save_data_button = QPushButton("Save data…")
        self.save_data_button.setToolTip("Save the numbers behind the panel as a CSV table")
        self.save_picture_button.clicked.connect(self._ask_picture_path)
        self.save_data_button.clicked.connect(self._ask_data_path)
        self.controls_row = QWidget()
        flow = FlowLayout(self.controls_row)
        flow.addStretch()
        flow.addWidget(self.save_picture_button)
        flow.addWidget(self.save_data_button)
        self.controls = _Controls(flow)
        layout.addWidget(self.controls_row)

        self._stack = QStackedWidget()
        self.message_label = QLabel()
        self.message_label.setAlignment(Qt.AlignCenter)
        self.message_label.setWordWrap(True)
        self.message_label.setObjectName("muted")
        self.message_label.setStyleSheet(f"font-size: 14px; color: {theme.MUTED}; padding: 20px;")
        self.message_label.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._stack.addWidget(self.message_label)
        layout.addWidget(self._stack, 1)
        self._content: QWidget | None = None
        self._scroll: QScrollArea | None = None

    # ----------------------------------------------------------------- content / message
    def set_content(self, widget: QWidget, min_height: int = 0) -> None:
        """The view shown while the panel has data; it scrolls in a panel shorter than
        ``min_height`` (see ``set_content_min_height``)."""
        self._content = widget
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        holder = QWidget()
        layout = _Unwrapped(holder)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(widget)
        self._scroll.setWidget(holder)
        self._stack.addWidget(self._scroll)
        self.set_content_min_height(min_height)

    def set_captioned_content(self, view: QWidget, footer: QWidget | None = None, min_height: int = 0) -> None:
        """``set_content`` with the panels' usual column: a wrapped caption line
        (``caption_label``) above ``view``, which takes the room, and an optional ``footer``
        (a hover read-out, a legend, an error line) below it."""
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        self.caption_label = QLabel()
        self.caption_label.setObjectName("muted")
        self.caption_label.setWordWrap(True)
        column.addWidget(self.caption_label)
        column.addWidget(view, 1)
        if footer is not None:
            column.addWidget(footer)
        self.set_content(content, min_height)

    def set_content_min_height(self, pixels: int) -> None:
        """The least height the view needs to stay readable (it scrolls below that)."""
        if self._content is not None:
            self._content.setMinimumHeight(max(0, int(pixels)))

    def show_message(self, text: str) -> None:
        """Replace the view by ``text``, a sentence saying what to do to fill the panel."""
        self.message_label.setText(text)
        self._stack.setCurrentWidget(self.message_label)
        self.save_data_button.setEnabled(False)

    def show_content(self) -> None:
        if self._content is not None:
            self._stack.setCurrentWidget(self._scroll)
        self.save_data_button.setEnabled(True)

    @property
    def is_empty(self) -> bool:
        """True while the panel shows a message instead of data."""
        return self._stack.currentWidget() is self.message_label

    @property
    def message(self) -> str:
        return self.message_label.text() if self.is_empty else ""

    def set_explanation(self, text: str) -> None:
        self.explanation_label.setText(text)
        self.explanation_label.setVisible(bool(text))

    # ----------------------------------------------------------------- export
    def data_table(self) -> tuple[list[str], np.ndarray]:
        """Column names and a 2-D array of what the panel shows (for CSV export)."""
        raise NotImplementedError

    def export_picture(self, path: str | Path) -> Path:
        """Save the panel as drawn now to a PNG at ``path``; OSError if it cannot be written."""
        path = Path(path)
        shown = self._content if self._content is not None and not self.is_empty else self._stack
        if not shown.grab().save(str(path), "PNG"):
            raise OSError(f"cannot write the picture to {path}")
        self.pictureSaved.emit(str(path))
        return path

    def export_data(self, path: str | Path) -> Path:
        """Save ``data_table()`` as CSV at ``path``; ValueError while the panel is empty."""
        if self.is_empty:
            raise ValueError("the panel has no data yet")
        header, rows = self.data_table()
        write_csv(path, header, rows)
        self.dataSaved.emit(str(path))
        return Path(path)

    def _default_name(self) -> str:
        return self.title_label.text().lower().replace(" ", "-").replace("/", "-")

    def _ask_picture_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save picture", f"{self._default_name()}.png",
                                              "PNG image (*.png)")
        if path:
            self.export_picture(path)

    def _ask_data_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save data", f"{self._default_name()}.csv",
                                              "CSV table (*.csv)")
        if path:
            self.export_data(path)


def heatmap_plot(layout: pg.GraphicsLayout, row: int, col: int, title: str) -> tuple[pg.PlotItem, pg.ImageItem]:
    """A plot at ``(row, col)`` of ``layout`` holding one row-major ImageItem (rows down)."""
    plot = layout.addPlot(row=row, col=col, title=title, axisItems=plot_axes(bottom="integer", left="integer"))
    image = pg.ImageItem(axisOrder="row-major")
    plot.addItem(image)
    plot.getViewBox().invertY(True)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    theme.plain_axes(plot)
    return plot, image


def set_heatmap(image: pg.ImageItem, values: np.ndarray, levels: tuple[float, float],
                colormap: pg.ColorMap) -> None:
    """Show 2-D ``values`` (rows down, columns across) with pixel ``(r, c)`` centred on ``(c, r)``."""
    values = np.asarray(values, dtype=np.float32)
    image.setImage(values, levels=levels, autoLevels=False)
    image.setColorMap(colormap)
    image.setRect(QRectF(-0.5, -0.5, float(values.shape[1]), float(values.shape[0])))


class ColourBar(pg.PlotItem):
    """A colour scale: the colour map drawn as a strip with value ticks and a label.

    ``values``: the (low, high) the strip spans; ``set_values`` changes them. Horizontal bars
    run low -> high left to right, vertical ones bottom to top.
    """

    audit_exempt = True     # its strip is thin on purpose (studio.layout_audit)

    def __init__(self, colormap: pg.ColorMap, values: tuple[float, float], label: str,
                 orientation: str = "horizontal"):
        super().__init__()
        self.orientation = orientation
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        theme.plain_axes(self)                 # a filter's weights of +-0.05 read as themselves
        ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)
        self.strip = pg.ImageItem(ramp[None, :] if orientation == "horizontal" else ramp[:, None],
                                  axisOrder="row-major", levels=(0.0, 1.0))
        self.strip.setColorMap(colormap)
        self.addItem(self.strip)
        if orientation == "horizontal":
            self.hideAxis("left")
            self.setMaximumHeight(60)
            self.setLabel("bottom", label)
        else:
            self.hideAxis("bottom")
            self.showAxis("right")
            self.hideAxis("left")
            self.setMaximumWidth(80)
            self.setLabel("right", label)
        self.values = (0.0, 1.0)
        self.set_values(values)

    def set_values(self, values: tuple[float, float]) -> None:
        low, high = float(values[0]), float(values[1])
        self.values = (low, high)
        if self.orientation == "horizontal":
            self.strip.setRect(QRectF(low, 0.0, high - low, 1.0))
            self.setXRange(low, high, padding=0)
            self.setYRange(0, 1, padding=0)
        else:
            self.strip.setRect(QRectF(0.0, low, 1.0, high - low))
            self.setYRange(low, high, padding=0)
            self.setXRange(0, 1, padding=0)
