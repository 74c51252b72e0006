"""The gradients-through-time panel: ||dL/dh_t|| and ||dL/dC_t|| against t on a log axis.

It shows the lectures' vanishing gradient: in a plain RNN the gradient reaching early time
steps shrinks by orders of magnitude, while an LSTM's cell state (the "gradient highway")
carries it back almost unchanged. Curves come from any number of blocks or projects; "Pin as
reference" keeps the current curves (dashed) so the next model can be compared with them,
e.g. an RNN against an LSTM on the adding problem.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QPushButton, QWidget

from gatescope.widgets import theme
from gatescope.widgets.axes import plot_axes
from gatescope.widgets.inside.common import InsidePanel, line_colour

EMPTY = ("Train the model, or choose a probe sample: the size of the gradient that reaches each time step "
         "of its recurrent blocks appears here.")


@dataclass
class Curve:
    """One gradient curve: ``values[k]`` at time step ``t[k]``; ``reference`` curves are pinned."""

    key: str
    label: str
    t: np.ndarray
    values: np.ndarray
    reference: bool = False


class GradientsPanel(InsidePanel):
    """Gradient norms per time step, log y axis, several curves with a legend.

    Signals: ``referencePinned()`` after "Pin as reference", ``referencesCleared()``.
    """

    referencePinned = Signal()
    referencesCleared = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Gradients through time", "How much of the loss gradient reaches each time step "
                         "(backpropagation through time). A line falling to the left is a vanishing "
                         "gradient; the LSTM's cell state C_t is a highway that keeps it alive.", parent)
        self.pin_button = QPushButton("Pin as reference")
        self.pin_button.setToolTip("Keep the current curves (dashed) to compare the next model against them")
        self.pin_button.clicked.connect(self.pin_current_as_reference)
        self.clear_button = QPushButton("Clear pinned")
        self.clear_button.clicked.connect(self.clear_references)
        self.controls.addWidget(self.pin_button)
        self.controls.addWidget(self.clear_button)

        self.plot_widget = pg.PlotWidget(axisItems=plot_axes(bottom="integer", left="log"))
        self.set_captioned_content(self.plot_widget, min_height=260)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLogMode(x=False, y=True)
        theme.plain_axes(self.plot)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "time step t")
        # Short: the legend names the curves (‖∂L/∂h_t‖, ‖∂L/∂C_t‖); the long label was cut to "(log".
        self.plot.setLabel("left", "gradient norm (log scale)")
        self.plot.setMenuEnabled(False)
        self.legend = self.plot.addLegend(offset=(-10, -10), labelTextSize="8pt")

        self.curves: dict[str, Curve] = {}
        self.items: dict[str, pg.PlotDataItem] = {}
        self._colours: dict[str, str] = {}
        self.show_message(EMPTY)

    # ----------------------------------------------------------------- curves
    def set_curve(self, key: str, label: str, t, values, dashed: bool = False, colour: str | None = None) -> None:
        """Add or replace the curve ``key``: ``values`` (gradient norms) at time steps ``t``.

        Values of 0 (a gradient that vanished entirely, or a pinned gate) cannot be drawn on a
        log axis and leave a gap. ``dashed`` draws a second quantity of the same block
        (||dL/dC_t|| beside ||dL/dh_t||) in the block's colour. ``colour``: this one instead of
        the next free one (the Compare view gives each variant its colour in every panel).
        """
        self._put(Curve(key, label, np.asarray(t, dtype=np.float64), np.asarray(values, dtype=np.float64)),
                  style=Qt.DashLine if dashed else Qt.SolidLine, colour=colour)
        self.show_content()

    def remove_curve(self, key: str) -> None:
        if key in self.items:
            self.plot.removeItem(self.items.pop(key))
            self.legend.removeItem(self.curves[key].label)
            del self.curves[key]
        if not self.curves:
            self.show_message(EMPTY)

    def current_keys(self) -> list[str]:
        """Keys of the live (not pinned) curves."""
        return [k for k, c in self.curves.items() if not c.reference]

    def pin_current_as_reference(self) -> None:
        """Keep a copy of every live curve as a pinned reference, drawn thin and dotted."""
        for key in self.current_keys():
            curve = self.curves[key]
            ref_key = f"pinned:{key}"
            self.remove_curve(ref_key)
            self._put(Curve(ref_key, f"{curve.label} (pinned)", curve.t.copy(), curve.values.copy(), True),
                      style=Qt.DotLine, colour=self._colours.get(key))
        self.show_content()
        self.referencePinned.emit()

    def clear_references(self) -> None:
        for key in [k for k, c in self.curves.items() if c.reference]:
            self.remove_curve(key)
        self.referencesCleared.emit()

    def clear_current(self) -> None:
        """Remove the live curves, keeping pinned ones."""
        for key in self.current_keys():
            self.remove_curve(key)

    def set_caption(self, text: str) -> None:
        self.caption_label.setText(text)
        self.caption_label.setVisible(bool(text))

    def _put(self, curve: Curve, style=Qt.SolidLine, colour: str | None = None) -> None:
        if colour is None:
            base = curve.key.rsplit("/", 1)[0] if "/" in curve.key else curve.key
            colour = self._colours.get(base) or line_colour(len({c for c in self._colours.values()}))
            self._colours.setdefault(base, colour)
        self._colours[curve.key] = colour
        values = np.where(curve.values > 0, curve.values, np.nan)
        pen = pg.mkPen(colour, width=1.5 if curve.reference else 2.2, style=style)
        if curve.key in self.items:
            item = self.items[curve.key]
            item.setData(curve.t, values, connect="finite")
            item.setPen(pen)
            if self.curves[curve.key].label != curve.label:
                self.legend.removeItem(self.curves[curve.key].label)
                self.legend.addItem(item, curve.label)
        else:
            item = self.plot.plot(curve.t, values, pen=pen, name=curve.label, connect="finite")
            self.items[curve.key] = item
        self.curves[curve.key] = curve

    # ----------------------------------------------------------------- export
    def data_table(self):
        """Column ``t``, then one column per curve (``nan`` where a curve has no value at t)."""
        steps = np.unique(np.concatenate([c.t for c in self.curves.values()]))
        header, columns = ["t"], [steps]
        for curve in self.curves.values():
            column = np.full(len(steps), np.nan)
            column[np.searchsorted(steps, curve.t)] = curve.values
            header.append(curve.label)
            columns.append(column)
        return header, np.column_stack(columns)
