"""The model canvas: blocks as rounded boxes with ports, wires between them, edited with the mouse.

The canvas holds no model. It is fed plain data and reports what the person does:

``set_graph(blocks, wires)``
    ``blocks``: dicts ``{"id", "type", "category", "detail", "inputs", "has_output", "x", "y"}``
    (``detail`` is a key setting such as ``"8 filters 3x3"``; ``inputs`` the number of input
    ports), optionally ``"port_names"``, what each input port takes (its tooltip; a recurrent
    block's "sequence" and "initial state"). ``wires``: ``(src, dst, port)`` tuples.
``set_status(status)``
    ``{block_id: {"shape": str, "params": str, "error": str | None, "warning": str | None}}``.

Signals (Qt style): ``blockDropped(str type, QPointF scene_pos)``, ``wireRequested(str src,
str dst, int port)``, ``blocksMoved(dict id -> (x, y))``, ``deleteRequested(list block_ids,
list wires)``, ``selectionChanged(list block_ids)``, ``blockActivated(str id)`` (double-click).
"""
from __future__ import annotations

import shiboken6
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (QGraphicsItem, QGraphicsObject, QGraphicsPathItem, QGraphicsScene,
                               QGraphicsView, QStyle)

from gatescope.widgets import theme
from gatescope.widgets.icons import paint_category_icon
from gatescope.widgets.palette import BLOCK_MIME

BLOCK_WIDTH = 200.0
BLOCK_HEIGHT = 86.0
PORT_RADIUS = 6.0
MIN_ZOOM, MAX_ZOOM = 0.2, 3.0
MIN_FIT_ZOOM = 0.5       # "fit to view" never shrinks blocks below this: their titles stay readable
                          # (digits-cnn, five layers a row, fits whole in the Build view at 1280x800)


class PortItem(QGraphicsItem):
    """A round port on a block's edge: an input (``index`` >= 0) or the output (``index`` = -1)."""

    def __init__(self, block: "BlockItem", index: int):
        super().__init__(block)
        self.block, self.index = block, index
        self.highlighted = False
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CrossCursor)
        self.setZValue(2)

    @property
    def is_output(self) -> bool:
        return self.index < 0

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        r = PORT_RADIUS + 3
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        colour = QColor(theme.ACCENT) if self.highlighted else theme.category_colour(self.block.category)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(QPen(QColor(theme.BACKGROUND), 2))
        painter.setBrush(QBrush(colour))
        r = PORT_RADIUS + (2 if self.highlighted else 0)
        painter.drawEllipse(QPointF(0, 0), r, r)

    def hoverEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.highlighted = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.highlighted = False
        self.update()

    def scene_centre(self) -> QPointF:
        return self.mapToScene(QPointF(0, 0))


class BlockItem(QGraphicsObject):
    """One block: category strip and icon, type, key setting, output shape and parameter count."""

    def __init__(self, data: dict):
        super().__init__()
        self.block_id = data["id"]
        self.block_type, self.category, self.detail = data["type"], data["category"], ""
        self.shape_text, self.params_text = "", ""
        self.error: str | None = None
        self.warning: str | None = None
        self.input_ports: list[PortItem] = []
        self.output_port: PortItem | None = None
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.setZValue(1)
        self.update_data(data)

    def update_data(self, data: dict) -> None:
        """Take a new title, detail, port layout and position from ``data``."""
        self.prepareGeometryChange()
        self.block_type, self.category, self.detail = data["type"], data["category"], data.get("detail", "")
        n_inputs, has_output = int(data.get("inputs", 1)), bool(data.get("has_output", True))
        if len(self.input_ports) != n_inputs:
            for port in self.input_ports:
                _discard(port)
            self.input_ports = [PortItem(self, i) for i in range(n_inputs)]
        names = list(data.get("port_names", ()))
        for i, port in enumerate(self.input_ports):
            port.setPos(0, BLOCK_HEIGHT * (i + 1) / (n_inputs + 1))
            port.setToolTip(f"input {i + 1}: {names[i]}" if i < len(names) and names[i] else f"input {i + 1}")
        if has_output and self.output_port is None:
            self.output_port = PortItem(self, -1)
            self.output_port.setPos(BLOCK_WIDTH, BLOCK_HEIGHT / 2)
        elif not has_output and self.output_port is not None:
            _discard(self.output_port)
            self.output_port = None
        position = QPointF(float(data.get("x", 0.0)), float(data.get("y", 0.0)))
        if self.pos() != position:
            self.setPos(position)
        self._refresh_tooltip()
        self.update()

    def set_status(self, shape: str, params: str, error: str | None, warning: str | None) -> None:
        """Show the analysis result: output shape, parameter count, and the problem if any."""
        self.shape_text, self.params_text, self.error, self.warning = shape, params, error, warning
        self._refresh_tooltip()
        self.update()

    def _refresh_tooltip(self) -> None:
        if self.error:
            self.setToolTip(f"<b>{self.block_type} {self.block_id}</b> cannot work: {self.error}")
        elif self.warning:
            self.setToolTip(f"<b>{self.block_type} {self.block_id}</b>: {self.warning}")
        else:
            self.setToolTip(f"<b>{self.block_type}</b> ({self.block_id})")

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(-2, -2, BLOCK_WIDTH + 4, BLOCK_HEIGHT + 4)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        rect = QRectF(0, 0, BLOCK_WIDTH, BLOCK_HEIGHT)
        colour = theme.category_colour(self.category)
        selected = bool(option.state & QStyle.State_Selected)
        fill = QColor("#3a2226") if self.error else QColor(theme.PANEL)
        if self.error:
            border = QPen(QColor(theme.ERROR), 2.5)
        elif self.warning:
            border = QPen(QColor(theme.WARNING), 2)
        else:
            border = QPen(QColor(theme.BORDER), 1.2)
        if selected:
            border = QPen(QColor(theme.ACCENT) if not self.error else QColor(theme.ERROR), 3)
        painter.setPen(border)
        painter.setBrush(QBrush(fill))
        painter.drawRoundedRect(rect, 8, 8)
        strip = QPainterPath()
        strip.addRoundedRect(QRectF(0, 0, 7, BLOCK_HEIGHT), 4, 4)
        painter.fillPath(strip, QBrush(colour))
        paint_category_icon(painter, QRectF(14, 8, 22, 22), self.category)

        title_font = QFont(painter.font())
        title_font.setBold(True)
        title_font.setPointSizeF(10)
        body_font = QFont(painter.font())
        body_font.setPointSizeF(8.5)
        painter.setFont(title_font)
        painter.setPen(QColor(theme.TEXT))
        metrics = QFontMetricsF(title_font)
        title = metrics.elidedText(self.block_type, Qt.ElideRight, BLOCK_WIDTH - 50)
        painter.drawText(QPointF(42, 24), title)
        painter.setFont(body_font)
        body = QFontMetricsF(body_font)
        # The id beside the type: "LSTM b1" is how messages name the block.
        id_left = 42 + metrics.horizontalAdvance(title) + 6
        painter.setPen(QColor(theme.MUTED))
        painter.drawText(QPointF(id_left, 24), body.elidedText(self.block_id, Qt.ElideRight,
                                                               max(0.0, BLOCK_WIDTH - 8 - id_left)))
        painter.setPen(QColor(theme.MUTED))
        if self.detail:
            painter.drawText(QPointF(14, 46), body.elidedText(self.detail, Qt.ElideRight, BLOCK_WIDTH - 24))
        if self.error:
            painter.setPen(QColor(theme.ERROR))
            painter.drawText(QPointF(14, 64), body.elidedText("⚠ " + self.error, Qt.ElideRight, BLOCK_WIDTH - 24))
        else:
            painter.setPen(QColor(theme.TEXT))
            painter.drawText(QPointF(14, 64), body.elidedText("→ " + (self.shape_text or "?"), Qt.ElideRight,
                                                              BLOCK_WIDTH - 24))
        painter.setPen(QColor(theme.WARNING) if self.warning and not self.error else QColor(theme.MUTED))
        painter.drawText(QPointF(14, 80), body.elidedText(self.params_text, Qt.ElideRight, BLOCK_WIDTH - 24))

    def itemChange(self, change, value):  # noqa: N802 - Qt override
        if change == QGraphicsItem.ItemPositionHasChanged and self.scene() is not None:
            canvas = self.scene().property("canvas")
            if canvas is not None:
                canvas.block_moved(self.block_id)
        return super().itemChange(change, value)


def _discard(item: QGraphicsItem) -> None:
    """Take a child item off its block and out of the scene."""
    scene = item.scene()
    item.setParentItem(None)
    if scene is not None:
        scene.removeItem(item)


class WireItem(QGraphicsPathItem):
    """A curved wire from a block's output port to another block's input port."""

    def __init__(self, src: BlockItem, dst: BlockItem, port: int):
        super().__init__()
        self.src, self.dst, self.port = src, dst, port
        self.setFlags(QGraphicsItem.ItemIsSelectable)
        self.setZValue(0)
        self.setAcceptHoverEvents(True)
        self.setToolTip(f"{src.block_id} → {dst.block_id} (input {port + 1}); select and press Delete to remove")
        self.hovered = False
        self.refresh()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.src.block_id, self.dst.block_id, self.port)

    def refresh(self) -> None:
        """Re-route the wire after either end moved."""
        start = self.src.output_port.scene_centre() if self.src.output_port else self.src.sceneBoundingRect().center()
        ports = self.dst.input_ports
        end = ports[self.port].scene_centre() if self.port < len(ports) else self.dst.sceneBoundingRect().center()
        self.setPath(wire_path(start, end))

    def shape(self) -> QPainterPath:
        from PySide6.QtGui import QPainterPathStroker
        stroker = QPainterPathStroker()
        stroker.setWidth(10)
        return stroker.createStroke(self.path())

    def hoverEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.hovered = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.hovered = False
        self.update()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        selected = bool(option.state & QStyle.State_Selected)
        colour = QColor(theme.ACCENT) if selected or self.hovered else QColor("#7f8aa0")
        painter.setPen(QPen(colour, 3 if selected else 2))
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(self.path())


def wire_path(start: QPointF, end: QPointF) -> QPainterPath:
    """A horizontal S-curve from ``start`` to ``end``; a wire running backwards (to a block further
    left, as on the next row of a wrapped layout) loops out, across between the rows, and back in."""
    path = QPainterPath(start)
    if end.x() >= start.x() - 20 or abs(end.y() - start.y()) < BLOCK_HEIGHT:
        bend = max(40.0, abs(end.x() - start.x()) * 0.5)
        path.cubicTo(QPointF(start.x() + bend, start.y()), QPointF(end.x() - bend, end.y()), end)
        return path
    middle = (start.y() + end.y()) / 2
    path.cubicTo(QPointF(start.x() + 60, start.y()), QPointF(start.x() + 60, middle), QPointF(start.x(), middle))
    path.lineTo(QPointF(end.x(), middle))
    path.cubicTo(QPointF(end.x() - 60, middle), QPointF(end.x() - 60, end.y()), end)
    return path


class ModelCanvas(QGraphicsView):
    """The editable picture of the model graph (see the module docstring for data and signals)."""

    blockDropped = Signal(str, QPointF)
    wireRequested = Signal(str, str, int)
    blocksMoved = Signal(dict)
    deleteRequested = Signal(list, list)
    selectionChanged = Signal(list)
    blockActivated = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._scene.setProperty("canvas", self)
        self._scene.setBackgroundBrush(QColor(theme.BACKGROUND))
        self.blocks: dict[str, BlockItem] = {}
        self.wires: dict[tuple[str, str, int], WireItem] = {}
        self._syncing = False
        self._drag_wire: QGraphicsPathItem | None = None
        self._drag_from: PortItem | None = None
        self._drop_target: PortItem | None = None
        self._press_positions: dict[str, QPointF] = {}
        self._pan_from: QPointF | None = None
        self._space_down = False
        self._follow_size = False   # refit when the view is resized, until the person zooms or pans
        self._fitting = False
        self.locked_message = ""
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.FullViewportUpdate)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self._scene.selectionChanged.connect(self._on_selection_changed)
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.actionTriggered.connect(self._stop_following_size)   # the person's own scrolling only
        self._update_scene_rect()

    # ----------------------------------------------------------------- feeding
    def set_graph(self, blocks: list[dict], wires: list[tuple[str, str, int]]) -> None:
        """Show exactly ``blocks`` and ``wires``, keeping the items (and selection) of blocks that stay."""
        self._syncing = True
        try:
            wanted = {b["id"] for b in blocks}
            for bid in list(self.blocks):
                if bid not in wanted:
                    self._scene.removeItem(self.blocks.pop(bid))
            for data in blocks:
                item = self.blocks.get(data["id"])
                if item is None:
                    item = BlockItem(data)
                    item.setFlag(QGraphicsItem.ItemIsMovable, not self.locked)
                    self.blocks[data["id"]] = item
                    self._scene.addItem(item)
                else:
                    item.update_data(data)
            for wire in self.wires.values():
                self._scene.removeItem(wire)
            self.wires = {}
            for src, dst, port in wires:
                if src in self.blocks and dst in self.blocks:
                    wire = WireItem(self.blocks[src], self.blocks[dst], port)
                    self.wires[wire.key] = wire
                    self._scene.addItem(wire)
        finally:
            self._syncing = False
        self._update_scene_rect()
        self._on_selection_changed()
        self.viewport().update()

    def set_locked(self, message: str) -> None:
        """With a ``message``, the graph cannot be edited (blocks stay selectable, the view can
        pan and zoom) and the message is shown across the top; an empty message unlocks."""
        self.locked_message = message
        for item in self.blocks.values():
            item.setFlag(QGraphicsItem.ItemIsMovable, not message)
        self.viewport().update()

    @property
    def locked(self) -> bool:
        return bool(self.locked_message)

    def set_status(self, status: dict[str, dict]) -> None:
        """Per-block analysis results (see the module docstring)."""
        for bid, item in self.blocks.items():
            s = status.get(bid, {})
            item.set_status(s.get("shape", ""), s.get("params", ""), s.get("error"), s.get("warning"))

    # ----------------------------------------------------------------- selection and view
    def selected_ids(self) -> list[str]:
        """Ids of the selected blocks, in the order the blocks were given."""
        return [bid for bid, item in self.blocks.items() if item.isSelected()]

    def selected_wires(self) -> list[tuple[str, str, int]]:
        return [key for key, wire in self.wires.items() if wire.isSelected()]

    def select(self, block_ids: list[str]) -> None:
        """Select exactly ``block_ids``."""
        self._scene.blockSignals(True)
        try:
            self._scene.clearSelection()
            for bid in block_ids:
                if bid in self.blocks:
                    self.blocks[bid].setSelected(True)
        finally:
            self._scene.blockSignals(False)
        self._on_selection_changed()

    def select_all(self) -> None:
        self.select(list(self.blocks))

    def request_delete(self) -> None:
        """Ask to delete what is selected: emits ``deleteRequested(blocks, wires)`` if anything is."""
        blocks, wires = self.selected_ids(), self.selected_wires()
        if blocks or wires:
            self.deleteRequested.emit(blocks, wires)

    def fit_to_view(self) -> None:
        """Zoom and scroll so every block is visible, between ``MIN_FIT_ZOOM`` and 1.25x.

        A model too large to fit at ``MIN_FIT_ZOOM`` (where block text is still readable) is
        shown from its top-left corner; the rest is a scroll away. The fit holds while the view
        changes size (a project is opened before the window and its docks take their final
        size) until the person zooms or scrolls.
        """
        self._follow_size = True
        if not self.blocks:
            self.resetTransform()
            self.centerOn(0, 0)
            return
        rect = QRectF()
        for item in self.blocks.values():
            rect = rect.united(item.sceneBoundingRect())
        rect = rect.adjusted(-40, -40, 40, 40)
        self.fitInView(rect, Qt.KeepAspectRatio)
        self.set_zoom(min(1.25, max(MIN_FIT_ZOOM, self.zoom())))
        seen = self.mapToScene(self.viewport().rect()).boundingRect()
        x = rect.center().x() if seen.width() >= rect.width() else rect.left() + seen.width() / 2
        y = rect.center().y() if seen.height() >= rect.height() else rect.top() + seen.height() / 2
        self.centerOn(x, y)

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        """Set the magnification to ``factor`` (clamped), keeping the view's centre."""
        factor = min(MAX_ZOOM, max(MIN_ZOOM, factor))
        self.scale(factor / self.zoom(), factor / self.zoom())

    def _stop_following_size(self, *_args) -> None:
        self._follow_size = False

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._follow_size and not self._fitting:
            self._fitting = True     # a scroll bar the fit shows or hides resizes the view again
            try:
                self.fit_to_view()
            finally:
                self._fitting = False

    def zoom_by(self, factor: float) -> None:
        """Zoom in (``factor`` > 1) or out about the view's centre (Ctrl+plus, Ctrl+minus)."""
        self._follow_size = False
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.AnchorViewCenter)
        self.set_zoom(self.zoom() * factor)
        self.setTransformationAnchor(anchor)

    def ensure_visible(self, block_ids: list[str]) -> None:
        """Scroll so the blocks ``block_ids`` are on screen (pasted ones, say)."""
        rect = QRectF()
        for bid in block_ids:
            if bid in self.blocks:
                rect = rect.united(self.blocks[bid].sceneBoundingRect())
        if not rect.isNull():
            self.ensureVisible(rect, 30, 30)

    def visible_block_position(self, scene_pos: QPointF) -> QPointF:
        """Where a block dropped with its centre at ``scene_pos`` goes: moved inside the visible
        part of the canvas, so a drop at an edge never leaves it half outside."""
        seen = self.mapToScene(self.viewport().rect()).boundingRect().adjusted(8, 8, -8, -8)
        x = scene_pos.x() - BLOCK_WIDTH / 2
        y = scene_pos.y() - BLOCK_HEIGHT / 2
        if seen.width() > BLOCK_WIDTH:
            x = min(max(x, seen.left()), seen.right() - BLOCK_WIDTH)
        if seen.height() > BLOCK_HEIGHT:
            y = min(max(y, seen.top()), seen.bottom() - BLOCK_HEIGHT)
        return QPointF(x, y)

    def view_centre(self) -> QPointF:
        """The scene point at the middle of the view: where new blocks appear."""
        return self.mapToScene(self.viewport().rect().center())

    def block_moved(self, block_id: str) -> None:
        """Called by a block item while it moves: re-route its wires."""
        if self._syncing:
            return
        for (src, dst, _), wire in self.wires.items():
            if block_id in (src, dst):
                wire.refresh()

    def _update_scene_rect(self) -> None:
        rect = QRectF(-1500, -1000, 3000, 2000)
        for item in self.blocks.values():
            rect = rect.united(item.sceneBoundingRect().adjusted(-1500, -1000, 1500, 1000))
        self._scene.setSceneRect(rect)

    def _on_selection_changed(self) -> None:
        if not self._syncing and all(shiboken6.isValid(item) for item in self.blocks.values()):
            self.selectionChanged.emit(self.selected_ids())

    # ----------------------------------------------------------------- drawing
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt override
        painter.fillRect(rect, QColor(theme.BACKGROUND))
        if self.zoom() < 0.4:
            return
        step = 25
        painter.setPen(QPen(QColor("#2b3038"), 1.5))
        left, top = int(rect.left()) - int(rect.left()) % step, int(rect.top()) - int(rect.top()) % step
        points = [QPointF(x, y) for x in range(left, int(rect.right()) + step, step)
                  for y in range(top, int(rect.bottom()) + step, step)]
        if len(points) < 40000:
            painter.drawPoints(points)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt override
        if self.locked_message:
            self._draw_banner(painter, self.locked_message)
        if self.blocks:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(theme.MUTED))
        font = QFont(painter.font())
        font.setPointSizeF(12)
        painter.setFont(font)
        painter.drawText(self.viewport().rect(), Qt.AlignCenter,
                         "Drag blocks here from the palette,\nthen wire an output port (right) to an input port (left).")
        painter.restore()

    def _draw_banner(self, painter: QPainter, text: str) -> None:
        painter.save()
        painter.resetTransform()
        font = QFont(painter.font())
        font.setPointSizeF(10)
        painter.setFont(font)
        metrics = QFontMetricsF(font)
        width = min(self.viewport().width() - 20.0, metrics.horizontalAdvance(text) + 28)
        box = QRectF((self.viewport().width() - width) / 2, 10, width, metrics.height() * 2 + 10)
        painter.setPen(QPen(QColor(theme.WARNING), 1.2))
        painter.setBrush(QBrush(QColor(37, 41, 49, 235)))
        painter.drawRoundedRect(box, 6, 6)
        painter.setPen(QColor(theme.WARNING))
        painter.drawText(box.adjusted(10, 4, -10, -4), Qt.AlignCenter | Qt.TextWordWrap, text)
        painter.restore()

    # ----------------------------------------------------------------- drops from the palette
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.locked:
            event.ignore()
            return
        if event.mimeData().hasFormat(BLOCK_MIME):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasFormat(BLOCK_MIME):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not event.mimeData().hasFormat(BLOCK_MIME):
            super().dropEvent(event)
            return
        block_type = bytes(event.mimeData().data(BLOCK_MIME)).decode("utf-8")
        scene_pos = self.mapToScene(event.position().toPoint())
        event.acceptProposedAction()
        self.blockDropped.emit(block_type, self.visible_block_position(scene_pos))

    # ----------------------------------------------------------------- mouse: wires, moves, pan
    def _port_at(self, view_pos) -> PortItem | None:
        for item in self.items(view_pos):
            if isinstance(item, PortItem):
                return item
        scene_pos = self.mapToScene(view_pos)
        for block in self.blocks.values():  # a little tolerance around ports
            ports = block.input_ports + ([block.output_port] if block.output_port else [])
            for port in ports:
                if QLineF(port.scene_centre(), scene_pos).length() <= PORT_RADIUS + 5:
                    return port
        return None

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space_down):
            self._follow_size = False
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            event.accept()
            return
        if event.button() == Qt.LeftButton and not self.locked:
            port = self._port_at(event.position().toPoint())
            if port is not None:
                self._drag_from = port
                self._drag_wire = QGraphicsPathItem()
                self._drag_wire.setPen(QPen(QColor(theme.ACCENT), 2, Qt.DashLine))
                self._drag_wire.setZValue(3)
                self._scene.addItem(self._drag_wire)
                event.accept()
                return
        super().mousePressEvent(event)
        self._press_positions = {bid: QPointF(item.pos()) for bid, item in self.blocks.items() if item.isSelected()}

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            event.accept()
            return
        if self._drag_wire is not None:
            here = self.mapToScene(event.position().toPoint())
            start = self._drag_from.scene_centre()
            self._drag_wire.setPath(wire_path(start, here) if self._drag_from.is_output else wire_path(here, start))
            target = self._port_at(event.position().toPoint())
            if self._drop_target is not None and self._drop_target is not target:
                self._drop_target.highlighted = False
                self._drop_target.update()
            self._drop_target = target if self._compatible(target) else None
            if self._drop_target is not None:
                self._drop_target.highlighted = True
                self._drop_target.update()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space_down else Qt.ArrowCursor)
            event.accept()
            return
        if self._drag_wire is not None:
            self._scene.removeItem(self._drag_wire)
            self._drag_wire = None
            source, target = self._drag_from, self._port_at(event.position().toPoint())
            self._drag_from = None
            if self._drop_target is not None:
                self._drop_target.highlighted = False
                self._drop_target.update()
                self._drop_target = None
            if self._compatible_pair(source, target):
                out, into = (source, target) if source.is_output else (target, source)
                self.wireRequested.emit(out.block.block_id, into.block.block_id, into.index)
            event.accept()
            return
        super().mouseReleaseEvent(event)
        moved = {bid: (item.pos().x(), item.pos().y()) for bid, item in self.blocks.items()
                 if bid in self._press_positions and item.pos() != self._press_positions[bid]}
        self._press_positions = {}
        if moved:
            self._update_scene_rect()
            self.blocksMoved.emit(moved)

    def _compatible(self, target: PortItem | None) -> bool:
        return self._compatible_pair(self._drag_from, target)

    @staticmethod
    def _compatible_pair(source: PortItem | None, target: PortItem | None) -> bool:
        return (source is not None and target is not None and source.is_output != target.is_output
                and source.block is not target.block)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt override
        for item in self.items(event.position().toPoint()):
            if isinstance(item, BlockItem):
                self.blockActivated.emit(item.block_id)
                event.accept()
                return
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120.0
        if steps:
            self._follow_size = False
            self.set_zoom(self.zoom() * (1.15 ** steps))
            event.accept()
        else:
            super().wheelEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.viewport().setCursor(Qt.ArrowCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    # ----------------------------------------------------------------- geometry for tests and tools
    def port_position(self, block_id: str, index: int) -> QPointF:
        """Viewport coordinates of a port: input ``index`` >= 0, or the output port for -1."""
        item = self.blocks[block_id]
        port = item.output_port if index < 0 else item.input_ports[index]
        return self.mapFromScene(port.scene_centre())

    def block_position(self, block_id: str) -> QPointF:
        """Viewport coordinates of the middle of a block's title (a good place to grab it)."""
        return self.mapFromScene(self.blocks[block_id].mapToScene(QPointF(BLOCK_WIDTH / 2, 20)))
