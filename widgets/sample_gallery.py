"""The samples panel: the validation samples behind one cell of the confusion matrix.

Click a cell (true class, predicted class) and this panel shows the samples that landed there,
the way Teachable Machine users asked to see what their model gets wrong: images as tiles,
sequences as small line plots, video clips as strips of frames, characters as text.

Fed plain data: ``set_samples(kind, samples, captions, title, indices)`` with ``kind`` one of
``image`` (each ``(H, W)`` grey or ``(H, W, 3)`` colour), ``sequence`` (each ``(T, F)``),
``clip`` (each ``(T, H, W)`` or ``(T, H, W, 3)``) or ``text`` (each a string).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from gatescope.widgets import theme
from gatescope.widgets.inside.common import InsidePanel, line_colour
from gatescope.widgets.inside.conv_features import mosaic, normalise_each

EMPTY = ("Click a cell of the confusion matrix to see the validation samples that landed there: "
         "the diagonal holds the right answers, the other cells the mistakes.")
MAX_SAMPLES = 24
MAX_FRAMES = 8
COLUMNS = 6
TILE_HEIGHT = 90          # pixels a row of tiles or plots keeps


class SampleGallery(InsidePanel):
    """A grid of samples with a caption each (see the module docstring)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Samples", "The validation samples of one cell of the confusion matrix, "
                         "with their true and predicted classes.", parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.text_label = QLabel()
        self.text_label.setWordWrap(True)
        self.text_label.setStyleSheet("font-family: monospace;")
        self.set_captioned_content(self.graphics, self.text_label, min_height=2 * TILE_HEIGHT + 40)
        self.kind = ""
        self.indices = np.zeros(0, dtype=np.int64)
        self.captions: list[str] = []
        self.samples: list = []
        self.show_message(EMPTY)

    def set_samples(self, kind: str, samples: list, captions: list[str], title: str,
                    indices=None) -> None:
        """Show up to ``MAX_SAMPLES`` ``samples`` of ``kind``; ``indices`` (their numbers in the
        dataset) go into the saved data. An empty list shows ``title`` as the panel's message."""
        if not samples:
            self.show_message(title)
            return
        self.kind = kind
        self.samples = list(samples[:MAX_SAMPLES])
        self.captions = list(captions[:MAX_SAMPLES])
        self.indices = np.asarray(indices if indices is not None else range(len(samples)))[:MAX_SAMPLES]
        self.caption_label.setText(title)
        self.graphics.clear()
        self.text_label.clear()
        self.text_label.setVisible(kind == "text")
        self.graphics.setVisible(kind != "text")
        if kind == "text":
            self.text_label.setText("<br>".join(f"<b>{c}</b>: {s!r}" for s, c in zip(self.samples, self.captions)))
        elif kind == "sequence":
            self._draw_sequences()
        else:
            self._draw_tiles(kind)
        self.show_content()

    def _draw_sequences(self) -> None:
        for i, (sample, caption) in enumerate(zip(self.samples, self.captions)):
            plot = self.graphics.addPlot(row=i // COLUMNS, col=i % COLUMNS, title=caption)
            plot.setMinimumHeight(TILE_HEIGHT)
            theme.plain_axes(plot)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setMouseEnabled(False, False)
            plot.setMenuEnabled(False)
            plot.audit_min_height = 40
            values = np.asarray(sample, dtype=np.float64).reshape(len(sample), -1)
            for f in range(min(values.shape[1], 4)):
                plot.plot(np.arange(len(values)), values[:, f], pen=pg.mkPen(line_colour(f), width=1.2))

    def _draw_tiles(self, kind: str) -> None:
        view = self.graphics.addPlot()
        theme.plain_axes(view)
        view.hideAxis("left")
        view.hideAxis("bottom")
        view.setMouseEnabled(False, False)
        view.setMenuEnabled(False)
        view.invertY(True)
        view.setAspectLocked(True)
        if kind == "clip":
            # One row per clip: up to MAX_FRAMES frames, evenly spaced.
            rows = []
            for clip in self.samples:
                clip = np.asarray(clip, dtype=np.float64)
                picks = np.linspace(0, len(clip) - 1, min(MAX_FRAMES, len(clip))).astype(int)
                rows.append(mosaic(normalise_each(clip[picks]), columns=len(picks)))
            width = max(r.shape[1] for r in rows)
            tiles = np.stack([np.pad(r, ((0, 0), (0, width - r.shape[1])) + ((0, 0),) * (r.ndim - 2),
                                     constant_values=np.nan) for r in rows])
            picture = mosaic(tiles, columns=1, gap=2)
            columns, (h, w) = 1, tiles.shape[1:3]
        else:
            tiles = normalise_each(np.stack([np.asarray(s, dtype=np.float64) for s in self.samples]))
            columns = min(COLUMNS, len(tiles))
            picture = mosaic(tiles, columns=columns)
            h, w = tiles.shape[1:3]
        image = pg.ImageItem(picture, axisOrder="row-major")
        if picture.ndim == 2:
            image.setColorMap(pg.colormap.get("CET-L1"))
        view.addItem(image)
        gap = 2 if kind == "clip" else 1
        for i, caption in enumerate(self.captions):
            r, c = divmod(i, columns)
            label = pg.TextItem(caption, color=theme.ACCENT, anchor=(0.0, 0.0))
            label.setPos(c * (w + gap), r * (h + gap))
            view.addItem(label)
        rows = -(-len(self.samples) // columns)
        self.graphics.setMinimumHeight(min(4, rows) * TILE_HEIGHT)

    def data_table(self):
        """One row per sample shown: its index in the dataset."""
        return ["dataset index"], self.indices.reshape(-1, 1)
