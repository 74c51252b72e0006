"""The data panel: choose a bundled dataset or one's own data with its loader options, and see what it holds.

Fed plain data: ``set_sources(sources)`` with dicts ``{"name", "description", "params":
{param: default}}``; ``set_formats(options, detect)``: which loader options each own-data
format takes (``{"csv": ["task", "label_column"], ...}``) and a function naming the format of a
path (or raising ValueError with the reason); ``set_reference(ref)``; ``show_dataset(summary,
samples, labels)`` where ``summary`` is ``{"title", "lines": [str, ...], "warnings": [str, ...],
"class_names": [...], "class_counts": [...]}`` and ``samples`` a list of 2-D arrays (images are
shown as pictures, ``(T, F)`` sequences as lines when ``summary["kind"] == "sequence"``);
``show_error(message)``; ``set_busy(bool)``.

Own data is chosen with a button per kind: a file (.npz, or a table .csv, .tsv, .txt), a folder
of images, a folder of videos (one subfolder per class). The options its format takes appear
under it: task and label column for tables, task for .npz, resize and grey for images, frames,
stride, size and grey for videos. Options are kept per path, so picking the same file again
brings back what was set for it.

Emits ``datasetRequested(dict)`` with a dataset reference: ``{"kind": "builtin", "name",
"params"}`` or ``{"kind": "file", "path", "format", "params"}``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from gatescope.widgets import theme
from gatescope.widgets.flow_layout import FlowLayout

FILE_SOURCE = "Your own data…"
N_SAMPLES = 12
OWN_DATA_HELP = ("A .npz with arrays x and y; a table (.csv, .tsv or .txt) of numbers with a label column; "
                 "or a folder with one subfolder per class holding images or videos.")
TABLE_FILTER = "Datasets (*.npz *.csv *.tsv *.txt);;All files (*)"
# The option controls: label, tooltip.
OPTION_TEXT = {
    "task": ("Task", "Classification: the labels are classes. Regression: they are numbers to predict."),
    "label_column": ("Label column", "Which column holds the label: 0 is the first, -1 the last."),
    "resize": ("Resize to", "Resize every image to this height x width (needed when their sizes differ)."),
    "grey": ("Grey", "Read every image or frame as one grey channel (off: three colour channels)."),
    "frames": ("Frames per clip", "How many frames make one clip: the model's T."),
    "stride": ("Stride", "Frames between the starts of two clips; 0: as many as a clip has (no overlap)."),
    "size": ("Frame size", "Every frame is resized to this height x width."),
}
# The options' values when nothing was chosen (the loaders' own defaults).
OPTION_DEFAULTS = {"task": "classification", "label_column": -1, "resize": None, "grey": False,
                   "frames": 8, "stride": 0, "size": [16, 16]}
FORMAT_DEFAULTS = {"videos": {"grey": True}}
OLD_VIDEO_SOURCE = "video-folder"   # how projects named a video folder before it was own data


def _video_folder_as_file(ref: dict) -> dict:
    """A ``video-folder`` reference of an older project as own data of format ``videos``."""
    params = dict(ref.get("params") or {})
    options = {k: params[k] for k in ("frames", "stride", "size") if k in params}
    options["grey"] = int(params.get("channels", 1)) == 1
    return {"kind": "file", "path": params.get("folder", ""), "format": "videos", "params": options}


def _default_file_chooser(parent: QWidget, what: str) -> str | None:
    """``what``: ``file``, ``images`` or ``videos``."""
    if what == "file":
        path, _ = QFileDialog.getOpenFileName(parent, "Choose a dataset file", "", TABLE_FILTER)
    else:
        title = ("Choose a folder of images, one subfolder per class" if what == "images" else
                 "Choose a folder of videos, one subfolder per class")
        path = QFileDialog.getExistingDirectory(parent, title)
    return path or None


def _label(name: str) -> str:
    """A parameter's name as a label: ``layout`` -> ``Layout``, ``max_windows`` -> ``Max windows``."""
    return name.replace("_", " ").capitalize()


class _PairEditor(QWidget):
    """Two sizes, height x width, in pixels; optionally switched off (``None``)."""

    def __init__(self, optional: bool, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.enabled = QCheckBox()
        self.enabled.setVisible(optional)
        self.height_spin, self.width_spin = QSpinBox(), QSpinBox()
        for spin in (self.height_spin, self.width_spin):
            spin.setRange(1, 1024)
            spin.setValue(32)
        row.addWidget(self.enabled)
        row.addWidget(self.height_spin)
        row.addWidget(QLabel("x"))
        row.addWidget(self.width_spin)
        row.addStretch(1)
        self.enabled.toggled.connect(self._sync)
        self.enabled.setChecked(not optional)
        self._sync(self.enabled.isChecked())

    def _sync(self, on: bool) -> None:
        self.height_spin.setEnabled(on)
        self.width_spin.setEnabled(on)

    def value(self):
        return [self.height_spin.value(), self.width_spin.value()] if self.enabled.isChecked() else None

    def set_value(self, value) -> None:
        if value is None:
            self.enabled.setChecked(False)
            return
        pair = [int(value), int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
        self.enabled.setChecked(True)
        self.height_spin.setValue(pair[0])
        self.width_spin.setValue(pair[-1])


class DataPanel(QWidget):
    """Dataset choice and loader options on top; summary, warnings, class counts and sample pictures below."""

    datasetRequested = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choose_file: Callable[[QWidget, str], str | None] = _default_file_chooser
        self.detect_format: Callable[[str], str] | None = None
        self._format_options: dict[str, list[str]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.currentTextChanged.connect(self._on_source_changed)
        self.source_label = QLabel("Dataset")
        row.addWidget(self.source_label)
        row.addWidget(self.source, 1)
        self.load_button = QPushButton("Load")
        self.load_button.setToolTip("Load the dataset with the settings below")
        self.load_button.clicked.connect(self._request)
        row.addWidget(self.load_button)
        layout.addLayout(row)
        files = FlowLayout()
        self.file_button = QPushButton("Choose file (.npz, .csv, .tsv, .txt)…")
        self.folder_button = QPushButton("Choose image folder…")
        self.video_button = QPushButton("Choose video folder…")
        self.file_button.clicked.connect(lambda: self._choose("file"))
        self.folder_button.clicked.connect(lambda: self._choose("images"))
        self.video_button.clicked.connect(lambda: self._choose("videos"))
        for button in (self.file_button, self.folder_button, self.video_button):
            files.addWidget(button)
        layout.addLayout(files)
        self.description = QLabel()
        self.description.setObjectName("muted")
        self.description.setWordWrap(True)
        layout.addWidget(self.description)
        self.params_form = QFormLayout()
        layout.addLayout(self.params_form)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        self.warnings = QLabel()
        self.warnings.setObjectName("warning")
        self.warnings.setWordWrap(True)
        self.warnings.hide()
        layout.addWidget(self.warnings)
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
        self.option_editors: dict[str, QWidget] = {}
        self._file_path: str | None = None
        self._file_format: str | None = None
        self._options_by_path: dict[str, dict] = {}
        self.shown_samples: list[np.ndarray] = []

    # ----------------------------------------------------------------- choosing
    def set_sources(self, sources: list[dict]) -> None:
        """The bundled datasets to offer, in order; the own-data choice is added last."""
        self._sources = {s["name"]: s for s in sources}
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItems([s["name"] for s in sources] + [FILE_SOURCE])
        self.source.blockSignals(False)
        self._on_source_changed(self.source.currentText())

    def set_formats(self, options: dict[str, list[str]], detect: Callable[[str], str]) -> None:
        """Which loader options each own-data format takes, and how a path's format is found."""
        self._format_options = {k: list(v) for k, v in options.items()}
        self.detect_format = detect

    def set_reference(self, ref: dict) -> None:
        """Show ``ref`` as the current choice, its options in the controls (without requesting it)."""
        if ref.get("kind") == "builtin" and ref.get("name") == OLD_VIDEO_SOURCE:
            ref = _video_folder_as_file(ref)
        self.source.blockSignals(True)
        if ref.get("kind") == "file":
            self._file_path = ref.get("path")
            self._file_format = ref.get("format") or self._detect(self._file_path)
            if self._file_path:
                self._options_by_path[self._file_path] = dict(ref.get("params") or {})
            self.source.setCurrentText(FILE_SOURCE)
        else:
            self.source.setCurrentText(ref.get("name", ""))
        self.source.blockSignals(False)
        self._on_source_changed(self.source.currentText())
        for name, value in (ref.get("params") or {}).items():
            if name in self._param_editors:
                self._param_editors[name].setCurrentText(str(value))

    def _detect(self, path: str | None) -> str | None:
        if not path or self.detect_format is None:
            return None
        try:
            return self.detect_format(path)
        except ValueError:
            return None

    def _clear_form(self) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self._param_editors = {}
        self.option_editors = {}

    def _on_source_changed(self, name: str) -> None:
        self._clear_form()
        is_file = name == FILE_SOURCE
        for button in (self.file_button, self.folder_button, self.video_button):
            button.setVisible(is_file)
        if is_file:
            self._show_file_options()
            return
        self.load_button.setVisible(True)
        source = self._sources.get(name)
        if source is None:
            return
        self.description.setText(source.get("description", ""))
        for param, default in source.get("params", {}).items():
            editor = QComboBox()
            editor.setEditable(True)
            editor.addItems([str(c) for c in source.get("choices", {}).get(param, [default])])
            editor.setCurrentText(str(default))
            self.params_form.addRow(_label(param), editor)
            self._param_editors[param] = editor

    def _show_file_options(self) -> None:
        """The chosen path and the controls of the options its format takes."""
        self.load_button.setVisible(bool(self._file_path))
        if not self._file_path:
            self.description.setText(OWN_DATA_HELP)
            return
        kind = {"npz": "arrays", "csv": "table", "images": "image folder", "videos": "video folder"}.get(
            self._file_format or "", "file")
        self.description.setText(f"{kind.capitalize()}: {self._file_path}")
        values = {**OPTION_DEFAULTS, **FORMAT_DEFAULTS.get(self._file_format or "", {}),
                  **self._options_by_path.get(self._file_path, {})}
        for option in self._format_options.get(self._file_format or "", []):
            editor = self._option_editor(option, values.get(option))
            label, tip = OPTION_TEXT.get(option, (_label(option), ""))
            editor.setToolTip(tip)
            self.params_form.addRow(label, editor)
            self.option_editors[option] = editor

    @staticmethod
    def _option_editor(option: str, value) -> QWidget:
        if option == "task":
            editor = QComboBox()
            editor.addItem("Classification", "classification")
            editor.addItem("Regression", "regression")
            editor.setCurrentIndex(max(0, editor.findData(value)))
        elif option == "grey":
            editor = QCheckBox("one channel")
            editor.setChecked(bool(value))
        elif option in ("resize", "size"):
            editor = _PairEditor(optional=option == "resize")
            editor.set_value(value)
        else:
            editor = QSpinBox()
            low = {"label_column": -1, "frames": 1, "stride": 0}[option]
            editor.setRange(low, 100000 if option != "frames" else 1024)
            editor.setSpecialValueText({"label_column": "last", "stride": "no overlap"}.get(option, ""))
            editor.setValue(int(value))
        return editor

    def file_options(self) -> dict:
        """The own-data options as the controls show them now (only those the format takes)."""
        out = {}
        for option, editor in self.option_editors.items():
            if isinstance(editor, QComboBox):
                out[option] = editor.currentData()
            elif isinstance(editor, QCheckBox):
                out[option] = editor.isChecked()
            elif isinstance(editor, _PairEditor):
                out[option] = editor.value()
            else:
                out[option] = editor.value()
        return {k: v for k, v in out.items() if v is not None}

    def _file_reference(self) -> dict:
        params = self.file_options()
        self._options_by_path[self._file_path] = dict(params)
        ref = {"kind": "file", "path": self._file_path, "params": params}
        if self._file_format:
            ref["format"] = self._file_format
        return ref

    def _request(self) -> None:
        name = self.source.currentText()
        if name == FILE_SOURCE:
            if self._file_path:
                self.datasetRequested.emit(self._file_reference())
            return
        params = {}
        defaults = self._sources.get(name, {}).get("params", {})
        for param, editor in self._param_editors.items():
            text = editor.currentText().strip()
            default = defaults.get(param)
            params[param] = _typed(text, default)
        self.datasetRequested.emit({"kind": "builtin", "name": name, "params": params})

    def _choose(self, what: str) -> None:
        path = self.choose_file(self, what)
        if not path:
            return
        if self._file_path and self._file_path != path and self.option_editors:
            self._options_by_path[self._file_path] = self.file_options()
        self._file_path = path
        self._file_format = what if what != "file" else self._detect(path)
        if what != "file" and self.detect_format is not None:
            found = self._detect(path)
            if found in ("images", "videos") and found != what:
                self._file_format = found   # the folder says what it holds; the loader is told
        self._clear_form()
        self._show_file_options()
        self.datasetRequested.emit(self._file_reference())

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
        for w in (self.source, self.load_button, self.file_button, self.folder_button, self.video_button):
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
        warnings = summary.get("warnings") or []
        self.warnings.setText("\n".join(warnings))
        self.warnings.setVisible(bool(warnings))
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
