"""Every variant's loss, accuracy and gradient norm side by side, by training step or by epoch.

By step: each step's training batch (thin), the same batch for every variant when they share
their batches, so the lines differ only by what the variants are; the epoch values sit at the
step each epoch ends on. By epoch: training (solid, dots) and validation (dashed) per epoch, and
the steps at their fraction of an epoch. The third plot is each step's gradient norm (before any
clipping) on a log axis, where an exploding gradient shows as a climb of orders of magnitude.
One colour per variant, the same in every Compare panel (``widgets.inside.common.line_colour``).

``start(labels, steps_per_epoch, task)`` clears the plots for new variants; ``add_steps(index,
steps, losses, accuracies, grad_norms)`` and ``add_epoch(index, record)`` add points (records as
the trainer writes them: ``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``,
``val_accuracy``).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from gatescope.widgets import theme
from gatescope.widgets.curves import MIN_PLOT_HEIGHT, MIN_PLOT_WIDTH, thinned
from gatescope.widgets.inside.common import InsidePanel, line_colour

EMPTY = "Choose what to compare in the Compare panel and press Compare: every variant's curves grow here together."
AXES = {"step": "by step", "epoch": "by epoch"}
EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _plot(title: str, y_label: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND)
    plot.setTitle(title, color=theme.TEXT, size="10pt")
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setLabel("left", y_label, color=theme.MUTED)
    plot.setMenuEnabled(False)
    plot.setMinimumSize(MIN_PLOT_WIDTH, MIN_PLOT_HEIGHT)
    theme.plain_axes(plot)
    return plot


class ComparedCurvesPanel(InsidePanel):
    """Loss, accuracy and gradient norm of every variant (see the module docstring)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Loss, accuracy and gradient norm of every variant",
                         "By step: each step's training batch (thin). By epoch: training (solid) and validation "
                         "(dashed). The gradient norm is each step's, before clipping. One colour per variant.",
                         parent)
        self.controls.addWidget(QLabel("X axis"))
        self.axis_choice = QComboBox()
        self.axis_choice.addItems(list(AXES.values()))
        self.axis_choice.currentTextChanged.connect(lambda _text: self._redraw_all())
        self.controls.addWidget(self.axis_choice)
        content = QWidget()
        row = QHBoxLayout(content)
        row.setContentsMargins(0, 0, 0, 0)
        self.loss_plot = _plot("Loss", "loss")
        self.accuracy_plot = _plot("Accuracy", "accuracy")
        self.accuracy_plot.setYRange(0, 1.0, padding=0.02)
        self.norm_plot = _plot("Gradient norm", "‖gradient‖ (log scale)")
        self.norm_plot.setLogMode(x=False, y=True)
        self.legend = self.loss_plot.addLegend(offset=(-10, 10), labelTextColor=theme.TEXT,
                                               brush=pg.mkBrush(37, 41, 49, 200))
        for plot in (self.loss_plot, self.accuracy_plot, self.norm_plot):
            row.addWidget(plot)
        self.set_content(content, min_height=MIN_PLOT_HEIGHT + 20)
        self.labels: list[str] = []
        self.task = "classification"
        self.steps_per_epoch: list[int] = []
        self.steps: list[np.ndarray] = []
        self.step_losses: list[np.ndarray] = []
        self.step_accuracies: list[np.ndarray] = []
        self.grad_norms: list[np.ndarray] = []
        self.epochs: list[list[dict]] = []
        self.items: list[dict[str, pg.PlotDataItem]] = []
        self.show_message(EMPTY)

    @property
    def plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.loss_plot, self.accuracy_plot, self.norm_plot

    @property
    def x_axis(self) -> str:
        """``step`` or ``epoch``."""
        return "step" if self.axis_choice.currentText() == AXES["step"] else "epoch"

    def set_x_axis(self, axis: str) -> None:
        self.axis_choice.setCurrentText(AXES[axis])

    # ----------------------------------------------------------------- data in
    def start(self, labels: list[str], steps_per_epoch: list[int], task: str = "classification") -> None:
        """New variants ``labels`` (their steps per epoch place the epoch values on the step axis)."""
        for plot in self.plots:
            plot.clear()
        self.legend.clear()
        self.labels, self.task = list(labels), task
        self.steps_per_epoch = [int(s) for s in steps_per_epoch]
        self.steps = [np.zeros(0) for _ in labels]
        self.step_losses = [np.zeros(0) for _ in labels]
        self.step_accuracies = [np.zeros(0) for _ in labels]
        self.grad_norms = [np.zeros(0) for _ in labels]
        self.epochs = [[] for _ in labels]
        self.items = []
        self.accuracy_plot.setVisible(task == "classification")
        self.loss_plot.setLabel("left", "mean squared error" if task == "regression" else "loss", color=theme.MUTED)
        for index, label in enumerate(labels):
            colour = line_colour(index)
            faint = QColor(colour)
            faint.setAlpha(110)
            thin = pg.mkPen(faint, width=1)
            solid = pg.mkPen(colour, width=2)
            dashed = pg.mkPen(colour, width=2, style=Qt.DashLine)
            dots = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour, "symbolPen": None}
            self.items.append({
                "loss_steps": self.loss_plot.plot([], [], pen=thin),
                "train_loss": self.loss_plot.plot([], [], pen=solid, name=label, **dots),
                "val_loss": self.loss_plot.plot([], [], pen=dashed),
                "accuracy_steps": self.accuracy_plot.plot([], [], pen=thin),
                "train_accuracy": self.accuracy_plot.plot([], [], pen=solid, **dots),
                "val_accuracy": self.accuracy_plot.plot([], [], pen=dashed),
                "grad_norms": self.norm_plot.plot([], [], pen=pg.mkPen(colour, width=1.5)),
            })
        self._label_axes()
        self.show_content()

    def add_steps(self, index: int, steps, losses, accuracies, grad_norms) -> None:
        """Per-step values of variant ``index`` at global steps ``steps`` (accuracies NaN when none)."""
        self.steps[index], self.step_losses[index], self.step_accuracies[index], self.grad_norms[index] = thinned(
            np.concatenate([self.steps[index], np.asarray(steps, dtype=float)]),
            np.concatenate([self.step_losses[index], np.asarray(losses, dtype=float)]),
            np.concatenate([self.step_accuracies[index], np.asarray(accuracies, dtype=float)]),
            np.concatenate([self.grad_norms[index], np.asarray(grad_norms, dtype=float)]))
        self._redraw_steps(index)

    def add_epoch(self, index: int, record: dict) -> None:
        self.epochs[index].append({k: record.get(k) for k in ("epoch",) + EPOCH_KEYS})
        self._redraw_epochs(index)

    # ----------------------------------------------------------------- drawing
    def _label_axes(self) -> None:
        text = "training step" if self.x_axis == "step" else "epoch"
        for plot in self.plots:
            plot.setLabel("bottom", text, color=theme.MUTED)

    def _redraw_all(self) -> None:
        self._label_axes()
        for index in range(len(self.labels)):
            self._redraw_steps(index)
            self._redraw_epochs(index)

    def _redraw_steps(self, index: int) -> None:
        items, by_step = self.items[index], self.x_axis == "step"
        x = self.steps[index] if by_step else (self.steps[index] + 1) / max(self.steps_per_epoch[index], 1)
        items["loss_steps"].setData(x if by_step else [], self.step_losses[index] if by_step else [])
        finite = np.isfinite(self.step_accuracies[index])
        items["accuracy_steps"].setData(x[finite] if by_step else [], self.step_accuracies[index][finite] if by_step
                                        else [])
        drawable = np.isfinite(self.grad_norms[index]) & (self.grad_norms[index] > 0)   # a log axis
        items["grad_norms"].setData(x[drawable], self.grad_norms[index][drawable])

    def _redraw_epochs(self, index: int) -> None:
        scale = self.steps_per_epoch[index] if self.x_axis == "step" else 1
        for key in EPOCH_KEYS:
            points = [(r["epoch"] * scale, r[key]) for r in self.epochs[index]
                      if r.get(key) is not None and np.isfinite(r[key])]
            x, y = (np.asarray(v, dtype=float) for v in zip(*points)) if points else ([], [])
            self.items[index][key].setData(x, y)

    # ----------------------------------------------------------------- export
    def data_table(self):
        """One row per step and per epoch of every variant: variant index, whether the row is an
        epoch (1) or a step (0), the global step (epoch rows: the step the epoch ends on), the
        epoch, the losses and accuracies and the step's gradient norm (nan where a row has none)."""
        rows = []
        for index in range(len(self.labels)):
            per_epoch = max(self.steps_per_epoch[index], 1)
            for step, loss, accuracy, norm in zip(self.steps[index], self.step_losses[index],
                                                  self.step_accuracies[index], self.grad_norms[index]):
                rows.append([index, 0, step, step // per_epoch + 1, loss, accuracy, np.nan, np.nan, norm])
            for r in self.epochs[index]:
                rows.append([index, 1, r["epoch"] * per_epoch, r["epoch"]] +
                            [np.nan if r.get(k) is None else r[k] for k in EPOCH_KEYS] + [np.nan])
        variants = "; ".join(f"{i} {label}" for i, label in enumerate(self.labels))
        header = [f"variant ({variants})", "epoch row", "global step", "epoch", "train loss (step: the batch's)",
                  "train accuracy (step: the batch's)", "validation loss", "validation accuracy",
                  "gradient norm (step, before clipping)"]
        return header, np.asarray(rows, dtype=np.float64).reshape(-1, len(header))
