"""Training curves (loss and accuracy, train and validation, by step or by epoch) and the confusion matrix.

Thin shells around pyqtgraph items, fed plain NumPy arrays and floats:

``CurvesPanel``: ``set_history(epochs)`` with epoch records (dicts with ``epoch``,
``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``; None where unknown),
``add_steps(steps, losses)`` for per-step training losses, ``add_epoch(record)``, ``clear()``,
``set_task("classification" | "regression")`` (a regression has no accuracy to plot: its loss is
the mean squared error), ``set_x_axis("epoch" | "step")``; ``xAxisChanged(str)`` when the person
chooses the other axis.
``ConfusionMatrixView``: ``set_matrix(matrix, class_names)`` for classification; clicking a cell
emits ``cellClicked(true_class, predicted_class)`` (the window shows the samples that landed
there). For regression (``set_task("regression")``) it plots ``set_predictions(predicted, true)``
of the validation set against each other instead, on the line y = x where they would be right.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gatescope.widgets import theme
from gatescope.widgets.axes import plot_axes

MAX_STEP_POINTS = 20000
MIN_PLOT_WIDTH, MIN_PLOT_HEIGHT = 220, 160   # below this a curve's axes crowd out its line


def _plot(title: str, y_label: str, legend_offset: tuple[int, int]) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND, axisItems=plot_axes(bottom="integer"))
    plot.setTitle(title, color=theme.TEXT, size="10pt")
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setLabel("left", y_label, color=theme.MUTED)
    plot.addLegend(offset=legend_offset, labelTextColor=theme.TEXT, brush=pg.mkBrush(37, 41, 49, 200))
    plot.setMenuEnabled(False)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setTextPen(theme.MUTED)
        plot.getAxis(axis).setPen(theme.BORDER)
    theme.plain_axes(plot)
    return plot


AXES = {"epoch": "by epoch", "step": "by step"}


def thinned(*series: np.ndarray, limit: int = MAX_STEP_POINTS) -> tuple[np.ndarray, ...]:
    """Equal-length ``series`` cut back once longer than ``limit``: every other point of their
    older half is dropped, so a long per-step curve keeps its shape at a cost that stops growing."""
    if len(series[0]) <= limit:
        return series
    half = len(series[0]) // 2
    return tuple(np.concatenate([s[:half:2], s[half:]]) for s in series)


class CurvesPanel(QWidget):
    """Loss and accuracy plots; the x axis is the epoch or the training step (a menu chooses)."""

    xAxisChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(QLabel("X axis"))
        self.axis_choice = QComboBox()
        self.axis_choice.addItems(list(AXES.values()))
        self.axis_choice.currentTextChanged.connect(self._redraw)
        self.axis_choice.currentTextChanged.connect(lambda _text: self.xAxisChanged.emit(self.x_axis))
        top.addWidget(self.axis_choice)
        self.summary = QLabel()
        self.summary.setObjectName("muted")
        top.addWidget(self.summary, 1, Qt.AlignRight)
        layout.addLayout(top)
        plots = QHBoxLayout()
        self.loss_plot = _plot("Loss", "loss", (-10, 10))  # loss falls: the top right stays free
        self.accuracy_plot = _plot("Accuracy", "accuracy", (-10, -10))  # accuracy rises: bottom right
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        layout.addLayout(plots, 1)
        train_pen = pg.mkPen(theme.TRAIN_COLOUR, width=2)
        val_pen = pg.mkPen(theme.VALIDATION_COLOUR, width=2, style=Qt.DashLine)
        step_pen = pg.mkPen(QColor(theme.TRAIN_COLOUR).darker(150), width=1)
        symbol = {"symbol": "o", "symbolSize": 5}
        self.items = {
            "train_loss_steps": self.loss_plot.plot([], [], pen=step_pen, name="train (each step)"),
            "train_loss": self.loss_plot.plot([], [], pen=train_pen, name="train", symbolBrush=theme.TRAIN_COLOUR,
                                              symbolPen=None, **symbol),
            "val_loss": self.loss_plot.plot([], [], pen=val_pen, name="validation",
                                            symbolBrush=theme.VALIDATION_COLOUR, symbolPen=None, **symbol),
            "train_accuracy": self.accuracy_plot.plot([], [], pen=train_pen, name="train",
                                                      symbolBrush=theme.TRAIN_COLOUR, symbolPen=None, **symbol),
            "val_accuracy": self.accuracy_plot.plot([], [], pen=val_pen, name="validation",
                                                    symbolBrush=theme.VALIDATION_COLOUR, symbolPen=None, **symbol),
        }
        self.accuracy_plot.setYRange(0, 1.0, padding=0.02)
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setMinimumSize(MIN_PLOT_WIDTH, MIN_PLOT_HEIGHT)
        self._axis_state: dict[str, tuple] = {}
        self.task = "classification"
        self.clear()

    def set_task(self, task: str) -> None:
        """What the model does: a regression shows only its loss (the mean squared error)."""
        if task == self.task:
            return
        self.task = task
        self.accuracy_plot.setVisible(task == "classification")
        self.loss_plot.setLabel("left", "mean squared error" if task == "regression" else "loss", color=theme.MUTED)
        self._redraw()

    @property
    def x_axis(self) -> str:
        """``epoch`` or ``step``."""
        return "step" if self.axis_choice.currentText() == AXES["step"] else "epoch"

    def set_x_axis(self, axis: str) -> None:
        self.axis_choice.setCurrentText(AXES[axis])

    # ----------------------------------------------------------------- data in
    def clear(self) -> None:
        """Forget every point."""
        self.epochs: list[dict] = []
        self.step_x = np.zeros(0)
        self.step_loss = np.zeros(0)
        self.steps_per_epoch = 0
        self._redraw()

    def set_history(self, epochs: list[dict], steps_per_epoch: int = 0) -> None:
        """Show saved epoch records (clears the per-step losses: ``add_steps`` adds saved ones)."""
        self.epochs = [dict(r) for r in epochs]
        self.step_x = np.zeros(0)
        self.step_loss = np.zeros(0)
        self.steps_per_epoch = steps_per_epoch
        self._redraw()

    def set_steps_per_epoch(self, steps: int) -> None:
        """A run's steps per epoch; another number than before drops the per-step losses shown
        (their step numbers were counted with the old one, as the trainer's record was)."""
        if self.steps_per_epoch and int(steps) != self.steps_per_epoch and len(self.step_x):
            self.step_x, self.step_loss = np.zeros(0), np.zeros(0)
            self.items["train_loss_steps"].setData([], [])
        self.steps_per_epoch = int(steps)

    def add_steps(self, steps: np.ndarray, losses: np.ndarray) -> None:
        """Append per-step training losses at global step numbers ``steps``."""
        self.step_x, self.step_loss = thinned(np.concatenate([self.step_x, np.asarray(steps, dtype=float)]),
                                              np.concatenate([self.step_loss, np.asarray(losses, dtype=float)]))
        if self.axis_choice.currentText() == "by step":
            self.items["train_loss_steps"].setData(self.step_x, self.step_loss)

    def add_epoch(self, record: dict, plots: tuple[str, ...] = ("loss", "accuracy")) -> None:
        """Append one epoch record and redraw ``plots`` (``redraw_plots`` draws the others later:
        the main window updates the two plots in separate event-loop passes while training)."""
        self.epochs.append(dict(record))
        self._redraw(plots=plots)

    def redraw_plots(self, plots: tuple[str, ...] = ("loss", "accuracy")) -> None:
        """Draw the epoch curves of ``plots`` (``loss``, ``accuracy``) from the records held."""
        self._redraw(plots=plots)

    # ----------------------------------------------------------------- data out
    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The x and y arrays a curve shows now (``train_loss``, ``val_loss``, ``train_loss_steps``, ...)."""
        x, y = self.items[name].getData()
        return (np.zeros(0) if x is None else np.asarray(x)), (np.zeros(0) if y is None else np.asarray(y))

    # ----------------------------------------------------------------- drawing
    def _series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        by_step = self.axis_choice.currentText() == "by step" and self.steps_per_epoch > 0
        xs, ys = [], []
        for record in self.epochs:
            value = record.get(key)
            if value is None or not np.isfinite(value):
                continue
            xs.append(record["epoch"] * self.steps_per_epoch if by_step else record["epoch"])
            ys.append(float(value))
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def _redraw(self, *_, plots: tuple[str, ...] = ("loss", "accuracy")) -> None:
        by_step = self.axis_choice.currentText() == "by step"
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            if key.split("_", 1)[1] in plots:
                self.items[key].setData(*self._series(key))
        if "loss" in plots:
            legend = self.loss_plot.plotItem.legend
            legend.removeItem(self.items["train_loss_steps"])
            if by_step:
                self.items["train_loss_steps"].setData(self.step_x, self.step_loss)
                legend.addItem(self.items["train_loss_steps"], "train (each step)")
            else:
                self.items["train_loss_steps"].setData([], [])
        label = "training step" if by_step else "epoch"
        # Axis changes re-lay the plots out: only when needed, per plot. (The axes are
        # IntegerAxis: epochs and steps are whole numbers, no 1.5 ticks.)
        for name, plot in (("loss", self.loss_plot), ("accuracy", self.accuracy_plot)):
            if name in plots and label != self._axis_state.get(name):
                self._axis_state[name] = label
                plot.setLabel("bottom", label, color=theme.MUTED)
        if self.epochs:
            last = self.epochs[-1]
            parts = [f"Epoch {last['epoch']}"]
            if last.get("val_accuracy") is not None:
                parts.append(f"validation accuracy {last['val_accuracy']:.1%}")
            if last.get("val_loss") is not None:
                parts.append(f"validation {'MSE' if self.task == 'regression' else 'loss'} {last['val_loss']:.4f}")
            self.summary.setText(" · ".join(parts))
        else:
            self.summary.setText("No training yet: press Train (F5).")


class _CountsItem(pg.GraphicsObject):
    """The numbers in the cells of a matrix, drawn in one paint at a fixed font size (cheap to update)."""

    def __init__(self):
        super().__init__()
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.bright = np.zeros((0, 0), dtype=bool)
        self.font = QFont()
        self.font.setPointSizeF(8.5)

    def set_counts(self, counts: np.ndarray, bright: np.ndarray) -> None:
        """``counts[row, column]`` written at cell centres; dark text where ``bright`` is True."""
        self.prepareGeometryChange()
        self.counts, self.bright = counts, bright
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        rows, columns = self.counts.shape
        return QRectF(0, 0, columns, rows)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.counts.size == 0:
            return
        transform = painter.transform()
        cell = transform.map(QPointF(1, 1)) - transform.map(QPointF(0, 0))
        if abs(cell.x()) < 14:  # cells too small to read a number
            return
        painter.save()
        painter.resetTransform()
        painter.setFont(self.font)
        dark, light = QColor("#101010"), QColor(theme.TEXT)
        half_w, half_h = abs(cell.x()) / 2, abs(cell.y()) / 2
        for (row, column), count in np.ndenumerate(self.counts):
            centre = transform.map(QPointF(column + 0.5, row + 0.5))
            painter.setPen(dark if self.bright[row, column] else light)
            painter.drawText(QRectF(centre.x() - half_w, centre.y() - half_h, 2 * half_w, 2 * half_h),
                             Qt.AlignCenter, str(int(count)))
        painter.restore()


class ConfusionMatrixView(QWidget):
    """Counts of true class (rows) against predicted class (columns), darker = more; or, for a
    regression, predicted against true values (see the module docstring)."""

    cellClicked = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.task = "classification"
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        self.plot = pg.PlotWidget(background=theme.BACKGROUND)
        self.plot.setMenuEnabled(False)
        theme.plain_axes(self.plot)
        self.plot.setMouseEnabled(False, False)
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("left", "true class", color=theme.MUTED)
        self.plot.setLabel("bottom", "predicted class", color=theme.MUTED)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTextPen(theme.MUTED)
            self.plot.getAxis(axis).setPen(theme.BORDER)
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.plot.addItem(self.image)
        self.counts = _CountsItem()
        self.plot.addItem(self.counts)
        self.plot.setMinimumSize(200, 200)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        layout.addWidget(self.plot, 1)
        self.scatter_plot = pg.PlotWidget(background=theme.BACKGROUND)
        self.scatter_plot.setMenuEnabled(False)
        theme.plain_axes(self.scatter_plot)
        self.scatter_plot.showGrid(x=True, y=True, alpha=0.15)
        self.scatter_plot.setLabel("bottom", "true value", color=theme.MUTED)
        self.scatter_plot.setLabel("left", "predicted value", color=theme.MUTED)
        self.scatter_plot.setMinimumSize(200, 200)
        self.diagonal = self.scatter_plot.plot([], [], pen=pg.mkPen(theme.MUTED, width=1, style=Qt.DashLine))
        self.points = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(theme.TRAIN_COLOUR))
        self.scatter_plot.addItem(self.points)
        self.scatter_plot.hide()
        layout.addWidget(self.scatter_plot, 1)
        self.matrix = np.zeros((0, 0), dtype=np.int64)
        self.class_names: list[str] = []
        self._ticks: list = []
        self.set_matrix(None, [])

    def set_task(self, task: str) -> None:
        """``classification`` (a confusion matrix) or ``regression`` (predicted against true)."""
        if task == self.task:
            return
        self.task = task
        self.set_matrix(None, [])
        self.set_predictions(None, None)

    def set_predictions(self, predicted: np.ndarray | None, true: np.ndarray | None) -> None:
        """A regression's validation predictions against the true values (None clears)."""
        if self.task != "regression":
            return
        self.plot.hide()
        if predicted is None or true is None or np.size(predicted) == 0:
            self.points.clear()
            self.diagonal.setData([], [])
            self.scatter_plot.hide()
            self.caption.setText("Regression: after the first epoch the validation set's predictions are "
                                 "drawn here against the true values (right ones lie on the dashed line).")
            return
        p = np.asarray(predicted, dtype=np.float64).reshape(-1)
        t = np.asarray(true, dtype=np.float64).reshape(-1)[:len(p)]
        self.points.setData(t, p)
        low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        self.diagonal.setData([low, high], [low, high])
        self.scatter_plot.show()
        rmse = float(np.sqrt(np.mean((p - t) ** 2)))
        self.caption.setText(f"Validation set: {len(p):,} predictions against the true values; "
                             f"root mean squared error {rmse:.4g}. Right predictions lie on the dashed line.")

    def set_matrix(self, matrix: np.ndarray | None, class_names: list[str]) -> None:
        """Show ``matrix[true, predicted]`` (None clears); counts are written in when it is small."""
        if self.task == "regression":
            return
        self.scatter_plot.hide()
        if matrix is None or np.size(matrix) == 0:
            self.matrix = np.zeros((0, 0), dtype=np.int64)
            self.image.clear()
            self.counts.set_counts(self.matrix, np.zeros((0, 0), dtype=bool))
            self.plot.hide()
            self.caption.setText("The confusion matrix of the validation set appears here when the model is "
                                 "trained (after the first epoch of a run).")
            return
        self.plot.show()
        self.matrix = np.asarray(matrix)
        n = self.matrix.shape[0]
        rows = self.matrix.sum(axis=1, keepdims=True)
        share = self.matrix / np.maximum(rows, 1)  # colour by the share of each true class, so rare classes show
        self.image.setImage(share.T, levels=(0.0, 1.0))  # ImageItem is column-major: x = predicted
        self.image.setRect(0, 0, n, n)
        names = list(class_names) + [str(i) for i in range(len(class_names), n)]
        self.class_names = names
        ticks = [(i + 0.5, names[i]) for i in range(n)]
        if ticks != self._ticks:  # the same classes every epoch: leave the axes (and layout) alone
            self._ticks = ticks
            self.plot.getAxis("bottom").setTicks([ticks])
            self.plot.getAxis("left").setTicks([ticks])
            self.plot.setRange(xRange=(0, n), yRange=(0, n), padding=0.02)
        self.counts.set_counts(self.matrix, share > 0.6)  # viridis is bright above 0.6: dark text there
        total = int(self.matrix.sum())
        correct = int(np.trace(self.matrix))
        self.caption.setText(f"Validation set: {correct:,} of {total:,} right ({correct / max(total, 1):.1%}). "
                             "Rows: true class, columns: predicted. Click a cell to see its samples.")

    def _on_click(self, event) -> None:
        if self.matrix.size == 0 or not self.plot.isVisible():
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        column, row = int(np.floor(point.x())), int(np.floor(point.y()))
        n = self.matrix.shape[0]
        if 0 <= row < n and 0 <= column < n:
            self.cellClicked.emit(row, column)
