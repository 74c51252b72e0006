"""The video panel: a live frame with the predicted class, class probabilities, a timeline of
predictions, capture and inference rates, source controls and labelled-clip recording.

Plain data in:
  ``show_frame(image)``            an (H, W) grey or (H, W, 3) RGB uint8 picture.
  ``set_class_names(names)``      the model's classes: the probability bars and the timeline are
                                   labelled with them before the first window is classified.
  ``show_prediction(probabilities, class_names, position)``  one window's class
                                   probabilities (floats summing to 1) and where it ends
                                   (a frame number); updates the overlay, bars and timeline.
  ``clear_predictions()``
  ``set_rates(capture_fps, inference_fps, draw_fps, dropped)``
  ``set_cameras(indices)``         camera indices that opened when probed.
  ``set_playback(position, frame_count, playing, seekable)``
  ``set_record_counts(counts)``    class name -> clips recorded in the dataset folder.
  ``set_recording(recording, path)``
  ``show_message(text, error)``    one line under the picture (red when ``error``).
  ``set_model_status(text)``       what the model sees (its frames, size, colour, stride), or why
                                   it sees nothing; a line of its own, above the messages.
  ``show_model_input(picture)``    the window the model was given: its T frames side by side,
                                   (H, W') or (H, W', 3) floats in 0..1 (NaN between frames).
  ``show_gates(gates, family, block)``  a recurrent block's gates over that window, gate name ->
                                   (T, H) values, one heatmap each under the frames, time steps
                                   aligned with them; None hides them.

Qt signals out (Qt naming, as the other panels):
  ``cameraRequested(int)``, ``findCamerasRequested()``, ``fileRequested(str)``,
  ``imageFolderRequested(str)``, ``playRequested(bool)``, ``seekRequested(int)``,
  ``loopChanged(bool)``, ``speedChanged(float)``, ``stopRequested()``,
  ``recordRequested(str class_name, str dataset_folder)``, ``recordStopRequested()``,
  ``datasetFolderChanged(str)``.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget)

from gatescope.widgets import theme
from gatescope.widgets.inside.common import (diverging_colormap, gate_label, gate_range, heatmap_plot,
                                             sequential_colormap, set_heatmap)

TIMELINE_LENGTH = 300
PLOT_INTERVAL_MS = 80  # the timeline redraws at most ~12 times a second; overlay and bars every time
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
CLASS_COLOURS = ("#5fa8ff", "#ff9f5f", "#6fcf73", "#e0d25f", "#b68cff", "#4fb3bf", "#ff5c5c", "#f27fc2",
                 "#9aa3b2", "#c8a06a")


def class_colour(index: int) -> str:
    """The colour of class ``index`` in the bars and the timeline."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def _default_path_chooser(parent: QWidget, what: str) -> str | None:
    if what == "file":
        path, _ = QFileDialog.getOpenFileName(parent, "Choose a video file", "",
                                              "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;"
                                              "All files (*)")
    else:
        title = ("Choose a folder of images, played in name order" if what == "images"
                 else "Choose the dataset folder clips are recorded into (one subfolder per class)")
        path = QFileDialog.getExistingDirectory(parent, title)
    return path or None


def _styled_plot(title: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND)
    plot.setTitle(title, color=theme.TEXT, size="9pt")
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    theme.plain_axes(plot)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setTextPen(theme.MUTED)
        plot.getAxis(axis).setPen(theme.BORDER)
    return plot


class VideoPanel(QWidget):
    """Picture and plots above, source and recording controls below (see the module docstring)."""

    cameraRequested = Signal(int)
    findCamerasRequested = Signal()
    fileRequested = Signal(str)
    imageFolderRequested = Signal(str)
    playRequested = Signal(bool)
    seekRequested = Signal(int)
    loopChanged = Signal(bool)
    speedChanged = Signal(float)
    stopRequested = Signal()
    recordRequested = Signal(str, str)
    recordStopRequested = Signal()
    datasetFolderChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choose_path: Callable[[QWidget, str], str | None] = _default_path_chooser
        self.class_names: list[str] = []
        self._timeline: deque[tuple[float, int, float]] = deque(maxlen=TIMELINE_LENGTH)
        self._playing = False
        self._slider_held = False
        self._plot_timer = QTimer(self)
        self._plot_timer.setSingleShot(True)
        self._plot_timer.setInterval(PLOT_INTERVAL_MS)
        self._plot_timer.timeout.connect(self._redraw_timeline)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._build_views(), 1)
        self.model_status = QLabel()
        self.model_status.setWordWrap(True)
        self.model_status.setObjectName("muted")
        layout.addWidget(self.model_status)
        self.message = QLabel("Choose a camera, a video file or a folder of images.")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addWidget(self._build_source_controls())
        layout.addWidget(self._build_record_controls())

    # ----------------------------------------------------------------- building
    def _build_views(self) -> QWidget:
        splitter = QSplitter(Qt.Horizontal)
        self.frame_view = pg.GraphicsLayoutWidget()
        self.frame_view.setBackground(theme.BACKGROUND)
        self.frame_box = self.frame_view.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.frame_box.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.frame_box.addItem(self.image_item)
        self.overlay = pg.TextItem("", color=theme.TEXT, fill=pg.mkBrush(30, 33, 39, 200), anchor=(0, 0))
        self.overlay.setZValue(10)
        overlay_font = QFont()
        overlay_font.setPointSize(13)
        overlay_font.setBold(True)
        self.overlay.setFont(overlay_font)
        self.frame_box.addItem(self.overlay)
        splitter.addWidget(self.frame_view)

        # What the model sees: the window it was given, and a recurrent block's gates under it.
        self.sees_view = pg.GraphicsLayoutWidget()
        self.sees_view.setBackground(theme.BACKGROUND)
        self.sees_view.setMinimumSize(220, 300)
        self.input_plot = self.sees_view.addPlot(row=0, col=0, title="What the model is given")
        self.input_plot.setMenuEnabled(False)
        self.input_plot.hideButtons()
        theme.plain_axes(self.input_plot)
        self.input_plot.hideAxis("left")
        self.input_plot.hideAxis("bottom")
        self.input_plot.setMouseEnabled(False, False)
        self.input_plot.getViewBox().invertY(True)
        self.input_plot.getViewBox().setAspectLocked(True)
        self.input_image = pg.ImageItem(axisOrder="row-major")
        self.input_plot.addItem(self.input_image)
        self.gate_plots: dict[str, tuple[pg.PlotItem, pg.ImageItem]] = {}
        self._gate_key: tuple = ()
        self._pending_input: np.ndarray | None = None
        self._pending_gates: tuple | None = None
        splitter.addWidget(self.sees_view)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.bar_plot = _styled_plot("Class probabilities")
        self.bar_plot.setYRange(0, 1.0, padding=0.02)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brushes=[])
        self.bar_plot.addItem(self.bars)
        right_layout.addWidget(self.bar_plot, 1)
        self.timeline_plot = _styled_plot("Predictions over time")
        self.timeline_plot.setLabel("bottom", "frame", color=theme.MUTED)
        self.timeline_points: list[pg.ScatterPlotItem] = []  # one per class: uniform styles draw fast
        right_layout.addWidget(self.timeline_plot, 1)
        self._set_class_names([])         # no classes yet: no fractional ticks on the class axes
        self.rates = QLabel("capture – fps · inference – fps · drawn – fps")
        self.rates.setObjectName("muted")
        right_layout.addWidget(self.rates)
        splitter.addWidget(right)
        splitter.setSizes([420, 260, 300])
        return splitter

    def _build_source_controls(self) -> QWidget:
        box = QGroupBox("Source")
        grid = QGridLayout(box)
        grid.setContentsMargins(6, 6, 6, 6)
        self.camera_choice = QComboBox()
        self.camera_choice.setPlaceholderText("no camera found yet")
        self.camera_choice.setMinimumWidth(110)
        self.find_cameras_button = QPushButton("Find cameras")
        self.find_cameras_button.clicked.connect(self.findCamerasRequested.emit)
        self.camera_button = QPushButton("Open camera")
        self.camera_button.setEnabled(False)
        self.camera_button.clicked.connect(self._request_camera)
        self.file_button = QPushButton("Open video file…")
        self.file_button.clicked.connect(lambda: self._choose_and_emit("file", self.fileRequested))
        self.images_button = QPushButton("Open image folder…")
        self.images_button.clicked.connect(lambda: self._choose_and_emit("images", self.imageFolderRequested))
        grid.addWidget(self.camera_choice, 0, 0)
        grid.addWidget(self.find_cameras_button, 0, 1)
        grid.addWidget(self.camera_button, 0, 2)
        grid.addWidget(self.file_button, 0, 3)
        grid.addWidget(self.images_button, 0, 4)

        playback = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setEnabled(False)
        self.play_button.clicked.connect(self._toggle_play)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stopRequested.emit)
        self.seek_slider = QSlider(Qt.Horizontal)
        self.seek_slider.setEnabled(False)
        self.seek_slider.sliderPressed.connect(self._hold_slider)
        self.seek_slider.sliderReleased.connect(self._release_slider)
        self.position_label = QLabel("–")
        self.position_label.setMinimumWidth(90)
        self.loop_check = QCheckBox("Loop")
        self.loop_check.setChecked(True)
        self.loop_check.toggled.connect(self.loopChanged.emit)
        self.speed_choice = QComboBox()
        for speed in SPEEDS:
            self.speed_choice.addItem(f"{speed:g}x", speed)
        self.speed_choice.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_choice.currentIndexChanged.connect(lambda i: self.speedChanged.emit(float(SPEEDS[i])))
        playback.addWidget(self.play_button)
        playback.addWidget(self.stop_button)
        playback.addWidget(self.seek_slider, 1)
        playback.addWidget(self.position_label)
        playback.addWidget(self.loop_check)
        playback.addWidget(QLabel("Speed"))
        playback.addWidget(self.speed_choice)
        grid.addLayout(playback, 1, 0, 1, 5)
        return box

    def _build_record_controls(self) -> QWidget:
        box = QGroupBox("Record labelled clips")
        row = QHBoxLayout(box)
        row.setContentsMargins(6, 6, 6, 6)
        self.dataset_folder = QLineEdit()
        self.dataset_folder.setPlaceholderText("dataset folder (one subfolder per class)")
        self.dataset_folder.editingFinished.connect(lambda: self.datasetFolderChanged.emit(self.dataset_folder.text()))
        self.folder_button = QPushButton("…")
        self.folder_button.setToolTip("Choose the dataset folder")
        self.folder_button.clicked.connect(self._choose_dataset_folder)
        self.class_name = QLineEdit()
        self.class_name.setPlaceholderText("class name, e.g. wave")
        self.record_button = QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.setObjectName("primary")
        self.record_button.clicked.connect(self._toggle_record)
        self.counts_label = QLabel("no clips recorded")
        self.counts_label.setObjectName("muted")
        row.addWidget(self.dataset_folder, 2)
        row.addWidget(self.folder_button)
        row.addWidget(self.class_name, 1)
        row.addWidget(self.record_button)
        row.addWidget(self.counts_label, 2)
        return box

    # ----------------------------------------------------------------- data in
    def show_frame(self, image: np.ndarray) -> None:
        """Show ``image``: (H, W) grey or (H, W, 3) RGB, uint8."""
        first = self.image_item.image is None or self.image_item.image.shape[:2] != image.shape[:2]
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))
        if first:
            self.frame_box.autoRange(padding=0)
            self.overlay.setPos(0, 0)

    def set_class_names(self, names: Sequence[str]) -> None:
        """Label the probability bars and the timeline with the model's classes (their order)."""
        if list(names) != self.class_names:
            self._set_class_names(list(names))

    def show_prediction(self, probabilities: Sequence[float], class_names: Sequence[str],
                        position: float) -> None:
        """One window's class probabilities, the window ending at frame ``position``."""
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        names = list(class_names) if len(class_names) == len(probs) else [str(i) for i in range(len(probs))]
        if names != self.class_names:
            self._set_class_names(names)
        best = int(np.argmax(probs))
        self.overlay.setText(f"{names[best]}  {probs[best]:.0%}")
        self.overlay.setColor(class_colour(best))
        self.bars.setOpts(x=np.arange(len(probs)), height=probs, width=0.7,
                          brushes=[pg.mkBrush(class_colour(i)) for i in range(len(probs))])
        self._timeline.append((float(position), best, float(probs[best])))
        if not self._plot_timer.isActive():  # the timeline redraws at most PLOT_INTERVAL_MS apart
            self._plot_timer.start()

    def _redraw_timeline(self) -> None:
        if self._pending_input is not None:
            first = self.input_image.image is None or self.input_image.image.shape != self._pending_input.shape
            if first:
                self.input_image.setImage(self._pending_input, levels=(0.0, 1.0), autoLevels=False)
                self.input_plot.getViewBox().autoRange(padding=0.02)
            else:
                self.input_image.updateImage(self._pending_input)
            self._pending_input = None
        if self._pending_gates is not None:
            self._draw_gates(*self._pending_gates)
            self._pending_gates = None
        points = np.array(self._timeline).reshape(-1, 3)
        for index, item in enumerate(self.timeline_points):
            chosen = points[points[:, 1] == index]
            item.setData(x=chosen[:, 0], y=chosen[:, 1])

    def clear_predictions(self) -> None:
        """Forget the overlay, bars, timeline, the model's input and its gates' values."""
        self.input_image.clear()
        self._pending_input = None
        self._pending_gates = None
        for _, image in self.gate_plots.values():
            image.clear()                # the heatmaps stay laid out (show_gates(None) removes them)
        self._timeline.clear()
        self._plot_timer.stop()
        self.overlay.setText("")
        self.bars.setOpts(x=[], height=[], brushes=[])
        for item in self.timeline_points:
            item.clear()

    def set_rates(self, capture_fps: float, inference_fps: float, draw_fps: float, dropped: int = 0) -> None:
        """The measured rates; ``dropped``: windows skipped because the model was busy."""
        text = f"capture {capture_fps:.1f} fps · inference {inference_fps:.1f}/s · drawn {draw_fps:.1f} fps"
        if dropped:
            text += f" · {dropped} windows skipped (model busy)"
        self.rates.setText(text)

    def set_cameras(self, indices: Sequence[int]) -> None:
        """The camera indices that opened; an empty list says no camera was found."""
        self.camera_choice.clear()
        for index in indices:
            self.camera_choice.addItem(f"Camera {index}", int(index))
        self.camera_button.setEnabled(bool(indices))
        if indices:
            self.camera_choice.setCurrentIndex(0)
        else:
            self.camera_choice.setPlaceholderText("no camera found")

    def set_playback(self, position: int, frame_count: int, playing: bool, seekable: bool) -> None:
        """Where playback is: frame ``position`` of ``frame_count`` (0 when live or unknown)."""
        self._playing = playing
        self.play_button.setEnabled(True)
        self.stop_button.setEnabled(True)
        self.play_button.setText("Pause" if playing else "Play")
        self.seek_slider.setEnabled(seekable and frame_count > 0)
        if frame_count > 0 and not self._slider_held:
            self.seek_slider.setRange(0, max(0, frame_count - 1))
            self.seek_slider.setValue(min(position, frame_count - 1))
        self.position_label.setText(f"{position} / {frame_count}" if frame_count > 0 else f"frame {position}")

    def set_stopped(self) -> None:
        """No source is open."""
        self._playing = False
        self.play_button.setText("Play")
        self.play_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.seek_slider.setEnabled(False)
        self.position_label.setText("–")

    def set_record_counts(self, counts: dict[str, int]) -> None:
        """Clips per class in the dataset folder."""
        if not counts:
            self.counts_label.setText("no clips recorded")
            return
        self.counts_label.setText(" · ".join(f"{name}: {n}" for name, n in sorted(counts.items())))

    def set_recording(self, recording: bool, path: str = "") -> None:
        """Whether a clip is being recorded now (``path``: the file being written)."""
        self.record_button.setChecked(recording)
        self.record_button.setText("Stop recording" if recording else "Record")
        self.class_name.setEnabled(not recording)
        self.dataset_folder.setEnabled(not recording)
        if recording and path:
            self.show_message(f"recording {path}")

    def set_model_status(self, text: str) -> None:
        """What the model sees, or why it sees nothing (replaces the line before)."""
        self.model_status.setText(text)

    def show_model_input(self, picture: np.ndarray) -> None:
        """The window the model was given, its frames side by side, values 0..1 (drawn with the
        timeline, at most every ``PLOT_INTERVAL_MS``: a newer window replaces one not yet drawn)."""
        self._pending_input = np.asarray(picture, np.float32)
        if not self._plot_timer.isActive():
            self._plot_timer.start()

    def show_gates(self, gates: dict[str, np.ndarray] | None, family: str = "LSTM", block: str = "") -> None:
        """Heatmaps of ``gates`` (name -> (T, H)), one row each under the model's input; None hides
        them (drawn with the model's input, at most every ``PLOT_INTERVAL_MS``)."""
        if gates is None:
            self._pending_gates = None
            self._draw_gates(None, family, block)
            return
        self._pending_gates = (gates, family, block)
        if not self._plot_timer.isActive():
            self._plot_timer.start()

    def _draw_gates(self, gates: dict[str, np.ndarray] | None, family: str, block: str) -> None:
        key = (tuple(gates), family, block) if gates else ()
        if key != self._gate_key:
            for plot, _ in self.gate_plots.values():
                self.sees_view.removeItem(plot)
            self.gate_plots = {}
            layout = self.sees_view.ci.layout
            layout.setRowStretchFactor(0, 1)
            for row, name in enumerate(gates or {}, start=1):
                units = np.asarray(gates[name]).shape[1]
                title = f"{gate_label(name, family)}, {units} units" + (f" ({block})" if row == 1 else "")
                plot, image = heatmap_plot(self.sees_view.ci, row, 0, title)
                plot.setMouseEnabled(False, False)
                plot.hideAxis("left")       # units down: the title says how many
                if row == len(gates):
                    plot.getAxis("bottom").setLabel("frame of the window")
                else:
                    plot.hideAxis("bottom")
                layout.setRowStretchFactor(row, 2)
                self.gate_plots[name] = (plot, image)
            self._gate_key = key
        for name, values in (gates or {}).items():
            plot, image = self.gate_plots[name]
            values = np.asarray(values, np.float32).T
            if image.image is not None and image.image.shape == values.shape:
                image.updateImage(values)          # same layout: new values only (no new colour table)
                continue
            cmap = diverging_colormap() if name == "candidate" else sequential_colormap()
            set_heatmap(image, values, gate_range(name), cmap)
            plot.setXRange(-0.5, values.shape[1] - 0.5, padding=0)
            plot.setYRange(-0.5, values.shape[0] - 0.5, padding=0)

    def show_message(self, text: str, error: bool = False) -> None:
        """One line of news under the picture; errors in red."""
        self.message.setText(text)
        self.message.setStyleSheet(f"color: {theme.ERROR};" if error else f"color: {theme.MUTED};")

    # ----------------------------------------------------------------- internals
    def _set_class_names(self, names: list[str]) -> None:
        self.class_names = names
        self._timeline.clear()
        for item in self.timeline_points:
            self.timeline_plot.removeItem(item)
        self.timeline_points = [pg.ScatterPlotItem(pen=None, size=7, brush=pg.mkBrush(class_colour(i)))
                                for i in range(len(names))]
        for item in self.timeline_points:
            self.timeline_plot.addItem(item)
        ticks = [list(enumerate(names))]
        self.bar_plot.getAxis("bottom").setTicks(ticks)
        self.bar_plot.setXRange(-0.6, max(len(names), 1) - 0.4, padding=0)
        self.timeline_plot.getAxis("left").setTicks(ticks)
        self.timeline_plot.setYRange(-0.5, max(len(names), 1) - 0.5, padding=0)

    def _request_camera(self) -> None:
        index = self.camera_choice.currentData()
        if index is not None:
            self.cameraRequested.emit(int(index))

    def _choose_and_emit(self, what: str, signal) -> None:
        path = self.choose_path(self, what)
        if path:
            signal.emit(path)

    def _choose_dataset_folder(self) -> None:
        path = self.choose_path(self, "dataset")
        if path:
            self.dataset_folder.setText(path)
            self.datasetFolderChanged.emit(path)

    def _toggle_play(self) -> None:
        self.playRequested.emit(not self._playing)

    def _hold_slider(self) -> None:
        self._slider_held = True

    def _release_slider(self) -> None:
        self._slider_held = False
        self.seekRequested.emit(int(self.seek_slider.value()))

    def _toggle_record(self, checked: bool) -> None:
        if checked:
            name, folder = self.class_name.text().strip(), self.dataset_folder.text().strip()
            self.record_button.setChecked(False)  # the controller confirms with set_recording
            if not name:
                self.show_message("name the class before recording, e.g. wave", error=True)
                return
            if not folder:
                self.show_message("choose the dataset folder clips are saved into", error=True)
                return
            self.recordRequested.emit(name, folder)
        else:
            self.recordStopRequested.emit()
