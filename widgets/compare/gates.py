"""The gates of every variant side by side: per gate, the share of values saturated near 0 and
near 1 and of units that never move, as the gate-health panel measures them
(``widgets.inside.gate_health.MEASURES``), one small plot per variant on one 0-100 % scale.

``set_variants(labels)`` makes one plot per variant; ``set_health(index, health, family,
caption)`` fills one (``health``: gate name -> the three shares, 0..1); ``set_no_gates(index,
text)`` says why a variant has none to show (a SimpleRNN has no gates).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from gatescope.widgets import theme
from gatescope.widgets.inside.common import InsidePanel, gate_symbol, line_colour
from gatescope.widgets.inside.gate_health import MEASURES

EMPTY = "Compare recurrent variants: the saturation of each variant's gates appears here after its first epoch."
PER_ROW = 3
PLOT_MIN = (200, 170)


class GateSaturationPanel(InsidePanel):
    """One bar plot per variant (see the module docstring)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Gate saturation of every variant",
                         "Share of gate values shut (near 0), wide open (near 1) and of units that never move, "
                         "on the same validation samples for every variant. A gate that is nearly always "
                         "saturated passes almost no gradient.", parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(theme.BACKGROUND)
        legend = "   ".join(f"<span style='color:{colour}'>■</span> {text}" for _, text, colour in MEASURES)
        self.legend_label = QLabel(legend)
        self.legend_label.setObjectName("muted")
        self.set_captioned_content(self.graphics, self.legend_label, min_height=PLOT_MIN[1] + 60)
        self.labels: list[str] = []
        self.plots: list[pg.PlotItem] = []
        self.health: list[dict[str, dict[str, float]]] = []
        self.show_message(EMPTY)

    def set_variants(self, labels: list[str]) -> None:
        """One empty plot per variant, ``PER_ROW`` to a row."""
        self.graphics.clear()
        self.labels, self.plots, self.health = list(labels), [], [{} for _ in labels]
        for index, label in enumerate(labels):
            plot = self.graphics.addPlot(row=index // PER_ROW, col=index % PER_ROW)
            plot.setTitle(label, color=line_colour(index), size="10pt")
            theme.plain_axes(plot)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            plot.setYRange(0, 100, padding=0.02)
            plot.setLabel("left", "share (%)")
            plot.showGrid(y=True, alpha=0.2)
            self.plots.append(plot)
        rows = max(1, -(-len(labels) // PER_ROW))
        self.set_content_min_height(rows * PLOT_MIN[1] + 60)
        self.graphics.setMinimumWidth(min(len(labels), PER_ROW) * PLOT_MIN[0])
        self.show_message(EMPTY)

    def set_health(self, index: int, health: dict[str, dict[str, float]], family: str = "LSTM",
                   caption: str = "") -> None:
        plot = self.plots[index]
        plot.clear()
        self.health[index] = {name: dict(values) for name, values in health.items()}
        names = list(health)
        width = 0.8 / len(MEASURES)
        x = np.arange(len(names), dtype=np.float64)
        for k, (key, _text, colour) in enumerate(MEASURES):
            heights = np.array([100.0 * health[n].get(key, 0.0) for n in names])
            plot.addItem(pg.BarGraphItem(x=x + (k - (len(MEASURES) - 1) / 2) * width, height=heights, width=width,
                                         brush=colour, pen=pg.mkPen(theme.BACKGROUND)))
        plot.getAxis("bottom").setTicks([[(float(i), gate_symbol(n, family)) for i, n in enumerate(names)], []])
        plot.setXRange(-0.6, len(names) - 0.4, padding=0)
        plot.setYRange(0, 100, padding=0.02)
        self.caption_label.setText(caption)
        self.caption_label.setVisible(bool(caption))
        self.show_content()

    def set_no_gates(self, index: int, text: str) -> None:
        """Variant ``index`` has no gates: its plot says ``text`` instead."""
        plot = self.plots[index]
        plot.clear()
        self.health[index] = {}
        note = pg.TextItem(text, color=theme.MUTED, anchor=(0.5, 0.5))
        plot.addItem(note)
        note.setPos(0, 50)
        plot.setXRange(-1, 1, padding=0)
        plot.getAxis("bottom").setTicks([[], []])

    def data_table(self):
        """One row per gate of every variant: variant index, gate index (in the order each
        variant's header lists them), then the three shares (0..1)."""
        rows, orders = [], []
        for index, health in enumerate(self.health):
            orders.append(f"{index} {self.labels[index]}: " + " ".join(health) if health else
                          f"{index} {self.labels[index]}: no gates")
            for g, name in enumerate(health):
                rows.append([index, g] + [health[name].get(key, 0.0) for key, _, _ in MEASURES])
        header = [f"variant and gate ({'; '.join(orders)})", "gate index"] + [key for key, _, _ in MEASURES]
        return header, np.asarray(rows, dtype=np.float64).reshape(-1, len(header))
