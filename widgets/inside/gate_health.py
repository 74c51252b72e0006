"""The gate-health panel: are the gates of a recurrent block saturated or stuck?

For each gate it draws the share of values saturated near 0 (gate shut, below 0.05), near 1
(gate wide open, above 0.95), and the share of units whose value never moves over time. A
gate that is almost always saturated passes almost no gradient to its weights (the sigmoid is
flat there), so it has stopped learning; the panel lists such findings in words.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from gatescope.widgets import theme
from gatescope.widgets.inside.common import InsidePanel, gate_symbol

EMPTY = "Select an LSTM or GRU block, then train the model (or choose a probe sample) to check its gates."

# Bars drawn per gate: key in the health dict, legend text, colour.
MEASURES = (
    ("saturated_low", "values near 0 (&lt; 0.05): shut", "#5fa8ff"),
    ("saturated_high", "values near 1 (&gt; 0.95): wide open", "#ff9f5f"),
    ("frozen_units", "units that never move over time", "#ff5c5c"),
)


class GateHealthPanel(InsidePanel):
    """Grouped bars (percent) per gate, and the findings as sentences."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Gate health", "Share of gate values saturated (stuck shut or wide open) and of "
                         "units that never change. Saturated gates pass almost no gradient: they stop learning.",
                         parent)
        self.plot_widget = pg.PlotWidget()
        self.findings_label = QLabel()
        self.findings_label.setWordWrap(True)
        self.plot_widget.setMinimumHeight(160)
        self.set_captioned_content(self.plot_widget, self.findings_label, min_height=240)
        self.plot = self.plot_widget.getPlotItem()
        theme.plain_axes(self.plot)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("left", "share (%)")
        self.plot.setLabel("bottom", "gate")
        self.plot.setYRange(0, 100, padding=0.02)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(y=True, alpha=0.2)
        self.legend = self.plot.addLegend(offset=(-10, 5), labelTextSize="8pt")
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.health: dict[str, dict[str, float]] = {}
        self.findings: list[str] = []
        self._drawn_names: list[str] = []
        self.show_message(EMPTY)

    def set_health(self, health: dict[str, dict[str, float]], findings: list[str] | None = None,
                   family: str = "LSTM", caption: str = "", notes: list[str] | None = None) -> None:
        """Show ``health``: gate name -> {"saturated_low", "saturated_high", "frozen_units"} as
        fractions 0..1, in drawing order; ``findings``: sentences about problems found;
        ``notes``: sentences about gates pinned on purpose (shown, never as a problem)."""
        if not health:
            self.show_message(EMPTY)
            return
        self.health = {name: dict(values) for name, values in health.items()}
        self.findings = list(findings or [])
        names = list(self.health)
        width = 0.8 / len(MEASURES)
        x = np.arange(len(names), dtype=np.float64)
        rebuild = names != self._drawn_names
        if rebuild:
            for item in self.bars.values():
                self.plot.removeItem(item)
            self.legend.clear()
            self.bars = {}
        for k, (key, text, colour) in enumerate(MEASURES):
            heights = np.array([100.0 * self.health[n].get(key, 0.0) for n in names])
            positions = x + (k - (len(MEASURES) - 1) / 2) * width
            if rebuild:
                item = pg.BarGraphItem(x=positions, height=heights, width=width, brush=colour,
                                       pen=pg.mkPen(theme.BACKGROUND))
                self.plot.addItem(item)
                self.legend.addItem(item, text)
                self.bars[key] = item
            else:
                self.bars[key].setOpts(height=heights)
        self._drawn_names = names
        # The lectures' symbols on the axis (i_t, f_t, ...): the full names overlapped in a narrow panel.
        self.plot.getAxis("bottom").setTicks([[(float(i), gate_symbol(n, family)) for i, n in enumerate(names)], []])
        self.plot.setXRange(-0.6, len(names) - 0.4, padding=0)
        self.plot.setYRange(0, 100, padding=0.02)
        notes = list(notes or [])
        pinned = "\n".join("📌 " + n for n in notes)
        if self.findings:
            self.findings_label.setText("\n".join(["⚠ " + f for f in self.findings] + ([pinned] if pinned else [])))
            style = f"color: {theme.WARNING};"
        elif notes:
            self.findings_label.setText("✓ No learned gate is stuck.\n" + pinned)
            style = f"color: {theme.TEXT};"
        else:
            self.findings_label.setText("✓ No gate is stuck: every gate still moves with its input.")
            style = f"color: {theme.GOOD};"
        if self.findings_label.styleSheet() != style:     # a new style sheet re-polishes the label
            self.findings_label.setStyleSheet(style)
        self.caption_label.setText(caption)
        self.caption_label.setVisible(bool(caption))
        self.show_content()

    def data_table(self):
        """One row per gate (numbered in drawing order): gate index, then the three shares (0..1)."""
        names = list(self.health)
        rows = [[i] + [self.health[n].get(key, 0.0) for key, _, _ in MEASURES] for i, n in enumerate(names)]
        return ["gate index (" + " ".join(names) + ")"] + [key for key, _, _ in MEASURES], np.array(rows)
