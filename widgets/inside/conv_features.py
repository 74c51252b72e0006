"""The convolution panel: a conv block's filters as an image grid, and its feature maps.

Each filter is scaled to its own min..max (so a small filter is as visible as a large one);
a 3-channel filter is drawn in colour, others one input channel at a time. The feature maps
are the block's output for the probe sample, one tile per filter, all on one scale so that
strong and weak responses can be compared. A Conv1D's maps are drawn as one heatmap
(filters down, positions across); for a video clip a time-step spin box picks the frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QWidget

from gatescope.widgets.inside.common import (ColourBar, InsidePanel, diverging_colormap, heatmap_plot, sequential_colormap,
                                   set_heatmap, write_csv)

EMPTY_NO_BLOCK = ("This model has no convolution block (Conv2D or Conv1D): add one in the Build view "
                  "to see its filters.")
EMPTY_NO_DATA = "Train the model, or choose a probe sample, to see this block's filters and feature maps."


def normalise_each(tiles: np.ndarray) -> np.ndarray:
    """Every tile (first axis) scaled to 0..1 by its own min and max; a flat tile becomes 0.5."""
    tiles = np.asarray(tiles, dtype=np.float64)
    flat = tiles.reshape(len(tiles), -1)
    low = flat.min(axis=1).reshape((-1,) + (1,) * (tiles.ndim - 1))
    span = (flat.max(axis=1) - flat.min(axis=1)).reshape(low.shape)
    return np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1.0), 0.5)


def mosaic(tiles: np.ndarray, columns: int | None = None, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """Tiles ``(F, h, w)`` or ``(F, h, w, 3)`` laid out in a grid, ``gap`` pixels of ``fill`` between.

    Returns ``(rows * (h + gap) - gap, columns * (w + gap) - gap[, 3])``; tile ``k`` sits at
    grid row ``k // columns``, column ``k % columns``.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    count, h, w = tiles.shape[:3]
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap) + tiles.shape[3:], fill)
    for k in range(count):
        r, c = divmod(k, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[k]
    return out


class ConvFeaturesPanel(InsidePanel):
    """Filter grid (left) and feature-map grid (right) of one convolution block.

    Signals: ``frameChanged(t)`` when the person picks another time step of a video clip;
    ``blockChosen(block_id)`` when they pick another convolution block in the list.
    """

    frameChanged = Signal(int)
    blockChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Convolution: filters and feature maps",
                         "Left: what each filter looks for (each scaled to its own range; bright = "
                         "large weight). Right: where in the probe sample each filter responds.", parent)
        self.channel_spin = QSpinBox()
        self.channel_spin.setPrefix("input channel ")
        self.channel_spin.setToolTip("Which input channel of the filters to draw")
        self.channel_spin.valueChanged.connect(lambda _: self._draw_filters())
        self.frame_spin = QSpinBox()
        self.frame_spin.setPrefix("frame t = ")
        self.frame_spin.setToolTip("Which time step of the video clip to show the feature maps of")
        self.frame_spin.valueChanged.connect(self._on_frame)
        self.block_combo = QComboBox()
        self.block_combo.setToolTip("The convolution block whose filters are shown")
        self.block_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.block_combo.currentIndexChanged.connect(self._on_block_index)
        self.controls.addWidget(QLabel("Block:"))
        self.controls.addWidget(self.block_combo)
        self.controls.addWidget(self.channel_spin)
        self.controls.addWidget(self.frame_spin)

        self.graphics = pg.GraphicsLayoutWidget()
        self.hover_label = QLabel("Move the mouse over a tile to read its filter number and value.")
        self.hover_label.setObjectName("muted")
        self.set_captioned_content(self.graphics, self.hover_label)
        self.filter_plot, self.filter_image = heatmap_plot(self.graphics, 0, 0, "filters")
        self.map_plot, self.map_image = heatmap_plot(self.graphics, 0, 1, "feature maps")
        for plot in (self.filter_plot, self.map_plot):
            plot.setAspectLocked(True)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
        self.map_bar = ColourBar(sequential_colormap(), (0.0, 1.0), "activation", orientation="vertical")
        self.graphics.addItem(self.map_bar, row=0, col=2)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

        self.filters: np.ndarray | None = None
        self.maps: np.ndarray | None = None
        self.filter_picture: np.ndarray | None = None
        self.map_picture: np.ndarray | None = None
        self._filter_grid = (1, 1, 1)    # tile height, width, columns
        self._map_grid = (1, 1, 1)
        self.show_message(EMPTY_NO_BLOCK)

    # ----------------------------------------------------------------- data
    def set_blocks(self, blocks: list[tuple[str, str]], current: str | None = None) -> None:
        """The convolution blocks to choose from, as ``(block_id, label)``; ``current`` selected."""
        self.block_combo.blockSignals(True)
        self.block_combo.clear()
        for block_id, label in blocks:
            self.block_combo.addItem(label, block_id)
        index = self.block_combo.findData(current) if current is not None else -1
        self.block_combo.setCurrentIndex(index if index >= 0 else (0 if blocks else -1))
        self.block_combo.blockSignals(False)

    def _on_block_index(self, index: int) -> None:
        if index >= 0:
            self.blockChosen.emit(self.block_combo.itemData(index))

    def set_filters(self, filters: np.ndarray, caption: str = "") -> None:
        """Filters ``(F, C, kh, kw)`` (Conv2D) or ``(F, C, k)`` (Conv1D), as the block stores them."""
        self.filters = np.asarray(filters, dtype=np.float32)
        channels = self.filters.shape[1]
        self.channel_spin.blockSignals(True)
        self.channel_spin.setRange(0, max(0, channels - 1))
        self.channel_spin.blockSignals(False)
        self.channel_spin.setVisible(channels not in (1, 3) or self.filters.ndim == 3)
        self.caption_label.setText(caption)
        self.caption_label.setVisible(bool(caption))
        self._draw_filters()
        self.show_content()

    def set_feature_maps(self, maps: np.ndarray | None, title: str = "feature maps") -> None:
        """Maps of one sample: ``(F, H, W)``, ``(T, F, H, W)`` for a clip, or ``(F, L)`` for Conv1D."""
        self.maps = None if maps is None else np.asarray(maps, dtype=np.float32)
        self._map_title = title
        clip = self.maps is not None and self.maps.ndim == 4
        self.frame_spin.blockSignals(True)
        self.frame_spin.setRange(0, self.maps.shape[0] - 1 if clip else 0)
        self.frame_spin.blockSignals(False)
        self.frame_spin.setVisible(clip)
        self._draw_maps()

    def _on_frame(self, t: int) -> None:
        self._draw_maps()
        self.frameChanged.emit(t)

    def _draw_filters(self) -> None:
        filters = self.filters
        if filters is None:
            return
        if filters.ndim == 3:                                   # Conv1D: each filter a C x k tile
            tiles = normalise_each(filters)
            title = "filters (rows: input channels, columns: kernel positions)"
        elif filters.shape[1] == 3:                             # colour: channels last for RGB
            tiles = normalise_each(np.transpose(filters, (0, 2, 3, 1)))
            title = "filters (colour: red, green, blue channels)"
        else:
            channel = min(self.channel_spin.value(), filters.shape[1] - 1)
            tiles = normalise_each(filters[:, channel])
            title = "filters" + (f" (input channel {channel})" if filters.shape[1] > 1 else "")
        columns = int(np.ceil(np.sqrt(len(tiles))))
        self._filter_grid = (tiles.shape[1], tiles.shape[2], columns)
        self.filter_picture = mosaic(tiles, columns, fill=np.nan if tiles.ndim == 3 else 0.0)
        if tiles.ndim == 4:
            self.filter_image.setLookupTable(None)
            self.filter_image.setImage(self.filter_picture, levels=(0.0, 1.0), autoLevels=False)
            self.filter_image.setRect(QRectF(-0.5, -0.5, self.filter_picture.shape[1], self.filter_picture.shape[0]))
        else:
            set_heatmap(self.filter_image, self.filter_picture, (0.0, 1.0), diverging_colormap())
        self.filter_plot.setTitle(f"{len(tiles)} {title}")
        self.filter_plot.autoRange(padding=0.02)

    def _draw_maps(self) -> None:
        maps = self.maps
        if maps is None:
            self.map_image.clear()
            self.map_plot.setTitle("feature maps: run the model once to see them")
            return
        if maps.ndim == 4:
            maps = maps[min(self.frame_spin.value(), len(maps) - 1)]
        if maps.ndim == 2:                                      # Conv1D: filters down, positions across
            picture = maps.astype(np.float64)
            self._map_grid = (1, maps.shape[1], 1)
            self.map_plot.setAspectLocked(False)
        else:
            columns = int(np.ceil(np.sqrt(len(maps))))
            self._map_grid = (maps.shape[1], maps.shape[2], columns)
            picture = mosaic(maps, columns)
            self.map_plot.setAspectLocked(True)
        self.map_picture = picture
        finite = picture[np.isfinite(picture)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        high = high if high > low else low + 1.0
        set_heatmap(self.map_image, picture, (low, high), sequential_colormap())
        self.map_bar.set_values((low, high))
        self.map_plot.setTitle(self._map_title)
        self.map_plot.autoRange(padding=0.02)

    # ----------------------------------------------------------------- hover
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        for plot, picture, grid, what in ((self.filter_plot, self.filter_picture, self._filter_grid, "filter"),
                                          (self.map_plot, self.map_picture, self._map_grid, "feature map")):
            if picture is None or not plot.sceneBoundingRect().contains(scene_pos):
                continue
            point = plot.getViewBox().mapSceneToView(scene_pos)
            col, row = int(round(point.x())), int(round(point.y()))
            if not (0 <= row < picture.shape[0] and 0 <= col < picture.shape[1]):
                return
            h, w, columns = grid
            if h == 1 and columns == 1 and what == "feature map":   # Conv1D heatmap
                self.hover_label.setText(f"filter {row}, position {col}: {float(picture[row, col]):.3f}")
                return
            tile_row, y = divmod(row, h + 1)
            tile_col, x = divmod(col, w + 1)
            if y == h or x == w:
                return
            value = picture[row, col]
            shown = f"{float(value):.3f}" if np.ndim(value) == 0 else ", ".join(f"{v:.2f}" for v in value)
            self.hover_label.setText(f"{what} {tile_row * columns + tile_col}, row {y}, column {x}: {shown}"
                                     + (" (scaled 0..1)" if what == "filter" else ""))
            return

    # ----------------------------------------------------------------- export
    def data_table(self):
        """The raw filter weights, one row per (filter, channel, row, column) with its value."""
        filters = self.filters
        index = np.indices(filters.shape).reshape(filters.ndim, -1).T
        header = ["filter", "channel"] + (["row", "column"] if filters.ndim == 4 else ["position"]) + ["weight"]
        return header, np.column_stack([index, filters.reshape(-1)])

    def export_data(self, path: str | Path) -> Path:
        """Filters as CSV at ``path``; the feature maps beside it as ``NAME-feature-maps.csv``."""
        path = super().export_data(path)
        if self.maps is not None:
            write_csv(self.feature_map_path(path), *self.feature_map_table())
        return path

    @staticmethod
    def feature_map_path(path: str | Path) -> Path:
        path = Path(path)
        return path.with_name(path.stem + "-feature-maps" + (path.suffix or ".csv"))

    def feature_map_table(self):
        """The feature maps shown, one row per (filter, row, column) with its activation."""
        maps = self.maps if self.maps.ndim != 4 else self.maps[self.frame_spin.value()]
        index = np.indices(maps.shape).reshape(maps.ndim, -1).T
        header = ["filter"] + (["row", "column"] if maps.ndim == 3 else ["position"]) + ["activation"]
        return header, np.column_stack([index, maps.reshape(-1)])
