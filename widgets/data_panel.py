"""The data panel: choose a bundled dataset or one's own file, and see what it holds.

Fed plain data: ``set_sources(sources)`` with dicts ``{"name", "description", "params":
{param: default}}``; ``set_reference(ref)``; ``show_dataset(summary, samples, labels)`` where
``summary`` is ``{"title", "lines": [str, ...], "class_names": [...], "class_counts": [...]}``
and ``samples`` a list of 2-D arrays (images are shown as pictures, ``(T, F)`` sequences as
lines when ``summary["kind"] == "sequence"``); ``show_error(message)``; ``set_busy(bool)``.

Emits ``datasetRequested(dict)`` with a dataset reference: ``{"kind": "builtin", "name",
"params"}`` or ``{"kind": "file", "path"}``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from gatescope.widgets import theme

FILE_SOURCE = "Your own file…"
N_SAMPLES = 12


def _default_file_chooser(parent: QWidget, folder: bool) -> str | None:
    if folder:
        path = QFileDialog.getExistingDirectory(parent, "Choose a folder of images, one subfolder per class")
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Choose a dataset file", "",
                                              "Datasets (*.npz *.csv);;All files (*)")
    return path or None


class DataPanel(QWidget):
    """Dataset choice on top; summary, class counts and sample pictures below."""

    datasetRequested = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choose_file: Callable[[QWidget, bool], str | None] = _default_file_chooser
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.currentTextChanged.connect(self._on_source_changed)
        row.addWidget(QLabel("Dataset"))
        row.addWidget(self.source, 1)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._request)
        row.addWidget(self.load_button)
        layout.addLayout(row)
        self.params_form = QFormLayout()
        layout.addLayout(self.params_form)
        files = QHBoxLayout()
        self.file_button = QPushButton("Choose file (.npz, .csv)…")
        self.folder_button = QPushButton("Choose image folder…")
        self.file_button.clicked.connect(lambda: self._choose(folder=False))
        self.folder_button.clicked.connect(lambda: self._choose(folder=True))
        files.addWidget(self.file_button)
        files.addWidget(self.folder_button)
        layout.addLayout(files)
        self.description = QLabel()
        self.description.setObjectName("muted")
        self.description.setWordWrap(True)
        layout.addWidget(self.description)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.samples = pg.GraphicsLayoutWidget()
        self.samples.setBackground(theme.BACKGROUND)
        self.samples.setMinimumHeight(120)
        layout.addWidget(self.samples, 1)
        self.counts = pg.PlotWidget(background=theme.BACKGROUND)
        self.counts.setMenuEnabled(False)
        theme.plain_axes(self.counts)
        self.counts.setMouseEnabled(False, False)
        self.counts.setTitle("samples per class", color=theme.MUTED, size="9pt")
        self.counts.setMaximumHeight(130)
        for axis in ("left", "bottom"):
            self.counts.getAxis(axis).setTextPen(theme.MUTED)
            self.counts.getAxis(axis).setPen(theme.BORDER)
        layout.addWidget(self.counts)
        self._sources: dict[str, dict] = {}
        self._param_editors: dict[str, QComboBox] = {}
        self._file_path: str | None = None
        self.shown_samples: list[np.ndarray] = []

    # ----------------------------------------------------------------- choosing
    def set_sources(self, sources: list[dict]) -> None:
        """The bundled datasets to offer, in order; the own-file choice is added last."""
        self._sources = {s["name"]: s for s in sources}
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItems([s["name"] for s in sources] + [FILE_SOURCE])
        self.source.blockSignals(False)
        self._on_source_changed(self.source.currentText())

    def set_reference(self, ref: dict) -> None:
        """Show ``ref`` as the current choice (without requesting it)."""
        self.source.blockSignals(True)
        if ref.get("kind") == "file":
            self._file_path = ref.get("path")
            self.source.setCurrentText(FILE_SOURCE)
        else:
            self.source.setCurrentText(ref.get("name", ""))
        self.source.blockSignals(False)
        self._on_source_changed(self.source.currentText())
        for name, value in (ref.get("params") or {}).items():
            if name in self._param_editors:
                self._param_editors[name].setCurrentText(str(value))

    def _on_source_changed(self, name: str) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self._param_editors = {}
        is_file = name == FILE_SOURCE
        self.file_button.setVisible(is_file)
        self.folder_button.setVisible(is_file)
        self.load_button.setVisible(not is_file)
        source = self._sources.get(name)
        if source is None:
            self.description.setText(f"File: {self._file_path}" if is_file and self._file_path else
                                     "A .npz with arrays x and y, a .csv with a label column, "
                                     "or a folder with one subfolder of images per class.")
            return
        self.description.setText(source.get("description", ""))
        for param, default in source.get("params", {}).items():
            editor = QComboBox()
            editor.setEditable(True)
            editor.addItems([str(c) for c in source.get("choices", {}).get(param, [default])])
            editor.setCurrentText(str(default))
            self.params_form.addRow(param, editor)
            self._param_editors[param] = editor

    def _request(self) -> None:
        name = self.source.currentText()
        if name == FILE_SOURCE:
            if self._file_path:
                self.datasetRequested.emit({"kind": "file", "path": self._file_path})
            return
        params = {}
        defaults = self._sources.get(name, {}).get("params", {})
        for param, editor in self._param_editors.items():
            text = editor.currentText().strip()
            default = defaults.get(param)
            params[param] = _typed(text, default)
        self.datasetRequested.emit({"kind": "builtin", "name": name, "params": params})

    def _choose(self, folder: bool) -> None:
        path = self.choose_file(self, folder)
        if path:
            self._file_path = path
            self.description.setText(f"File: {path}")
            self.datasetRequested.emit({"kind": "file", "path": path})

    # ----------------------------------------------------------------- showing
    def _draw_samples(self, samples: list[np.ndarray], labels: list[str], as_lines: bool) -> None:
        """One plot for all samples (a tiled picture, or stacked lines), so showing them is quick."""
        self.samples.clear()
        if not samples:
            return
        view = self.samples.addPlot()
        theme.plain_axes(view)
        view.hideAxis("left")
        view.hideAxis("bottom")
        view.setMouseEnabled(False, False)
        view.setMenuEnabled(False)
        columns = 6
        if as_lines:
            for i, (sample, label) in enumerate(zip(samples, labels)):
                r, c = divmod(i, columns)
                t = np.arange(sample.shape[0]) / max(sample.shape[0] - 1, 1)
                for feature in range(min(sample.shape[1], 4)):
                    values = sample[:, feature]
                    spread = float(np.ptp(values)) or 1.0
                    view.plot(c * 1.2 + t, -r * 1.4 + (values - values.min()) / spread,
                              pen=pg.mkPen(pg.intColor(feature, 4), width=1))
                self._label(view, label, c * 1.2 + 0.5, -r * 1.4 + 1.25)
            return
        picture, h, w = _mosaic(samples, columns)
        image = pg.ImageItem(picture.T)  # ImageItem is column-major
        image.setColorMap(pg.colormap.get("CET-L1"))
        view.addItem(image)
        view.invertY(True)
        view.setAspectLocked(True)
        for i, label in enumerate(labels):
            r, c = divmod(i, columns)
            self._label(view, label, c * (w + 1) + w / 2, r * (h + 1) + 0.5)

    @staticmethod
    def _label(view, text: str, x: float, y: float) -> None:
        if text:
            item = pg.TextItem(str(text), color=theme.ACCENT, anchor=(0.5, 0.0))
            item.setPos(x, y)
            view.addItem(item)

    def set_busy(self, busy: bool) -> None:
        """While a dataset loads: controls disabled and a note."""
        for w in (self.source, self.load_button, self.file_button, self.folder_button):
            w.setEnabled(not busy)
        if busy:
            self.error.hide()
            self.summary.setText("Loading…")

    def show_error(self, message: str) -> None:
        """A dataset could not be loaded: say why; what was shown before stays."""
        self.error.setText(message)
        self.error.show()
        if self.summary.text() == "Loading…":
            self.summary.setText("")

    def show_dataset(self, summary: dict, samples: list[np.ndarray], labels: list[str]) -> None:
        """Show a loaded dataset: summary lines, sample pictures or lines, class counts."""
        self.error.hide()
        lines = "".join(f"<br>{line}" for line in summary.get("lines", []))
        self.summary.setText(f"<b>{summary.get('title', '')}</b>{lines}")
        self.shown_samples = [np.asarray(s, dtype=np.float32) for s in samples[:N_SAMPLES]]
        self._draw_samples(self.shown_samples, list(labels)[:N_SAMPLES], summary.get("kind") == "sequence")
        self.counts.clear()
        counts = summary.get("class_counts") or []
        if counts:
            bars = pg.BarGraphItem(x=np.arange(len(counts)), height=np.asarray(counts, dtype=float), width=0.7,
                                   brush=theme.ACCENT, pen=None)
            self.counts.addItem(bars)
            names = summary.get("class_names") or [str(i) for i in range(len(counts))]
            step = max(1, len(counts) // 20)
            self.counts.getAxis("bottom").setTicks([[(i, names[i]) for i in range(0, len(counts), step)]])
            self.counts.show()
        else:
            self.counts.hide()


def _mosaic(samples: list[np.ndarray], columns: int) -> tuple[np.ndarray, int, int]:
    """Samples (each scaled to 0..1) tiled into one picture with a 1-pixel gap: (picture, tile h, tile w)."""
    h = max(s.shape[0] for s in samples)
    w = max(s.shape[1] for s in samples)
    rows = -(-len(samples) // columns)
    picture = np.full((rows * (h + 1), columns * (w + 1)), np.nan, dtype=np.float32)
    for i, sample in enumerate(samples):
        low, high = float(sample.min()), float(sample.max())
        scaled = (sample - low) / (high - low) if high > low else np.zeros_like(sample)
        r, c = divmod(i, columns)
        picture[r * (h + 1):r * (h + 1) + sample.shape[0], c * (w + 1):c * (w + 1) + sample.shape[1]] = scaled
    return picture, h, w


def _typed(text: str, default):
    """Text from a parameter editor as the type of the parameter's default."""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            return text
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            return text
    return text
