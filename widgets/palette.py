"""The block palette: blocks grouped by category, dragged onto the model canvas.

Fed plain dicts ``{"type": "Conv2D", "category": "Convolution", "summary": "..."}``; a drag
carries the block type as ``BLOCK_MIME`` data, which the canvas accepts.
"""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem

from gatescope.widgets.icons import category_icon

BLOCK_MIME = "application/x-gatescope-block"
TYPE_ROLE = Qt.UserRole + 1


class BlockPalette(QTreeWidget):
    """A tree of categories and block types. Drag a type out, or double-click it to add it.

    Signals: ``blockActivated(str)`` with the block type when a person double-clicks it.
    """

    blockActivated = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragOnly)
        self.setIndentation(10)
        self.setIconSize(QSize(18, 18))
        self.setStyleSheet("QTreeWidget::item { padding: 0px; }")
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.itemDoubleClicked.connect(self._on_double_click)

    def set_blocks(self, blocks: list[dict], categories: list[str]) -> None:
        """Show ``blocks`` (dicts with type, category, summary) grouped in the order of ``categories``."""
        self.clear()
        for category in categories:
            members = [b for b in blocks if b["category"] == category]
            if not members:
                continue
            group = QTreeWidgetItem(self, [category])
            group.setFlags(Qt.ItemIsEnabled)
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            icon = category_icon(category)
            for block in members:
                item = QTreeWidgetItem(group, [block["type"]])
                item.setIcon(0, icon)
                item.setToolTip(0, f"<b>{block['type']}</b><br>{block['summary']}")
                item.setData(0, TYPE_ROLE, block["type"])
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
            group.setExpanded(True)

    def block_types(self) -> list[str]:
        """Every block type shown, top to bottom."""
        out = []
        for i in range(self.topLevelItemCount()):
            group = self.topLevelItem(i)
            out += [group.child(j).data(0, TYPE_ROLE) for j in range(group.childCount())]
        return out

    def item_for(self, block_type: str) -> QTreeWidgetItem | None:
        """The tree item of ``block_type``, or None."""
        for i in range(self.topLevelItemCount()):
            group = self.topLevelItem(i)
            for j in range(group.childCount()):
                if group.child(j).data(0, TYPE_ROLE) == block_type:
                    return group.child(j)
        return None

    def mime_data_for(self, block_type: str) -> QMimeData:
        """The drag payload for ``block_type`` (what a drop on the canvas reads)."""
        mime = QMimeData()
        mime.setData(BLOCK_MIME, QByteArray(block_type.encode("utf-8")))
        mime.setText(block_type)
        return mime

    def startDrag(self, supported_actions) -> None:  # noqa: N802 - Qt override
        item = self.currentItem()
        block_type = item.data(0, TYPE_ROLE) if item is not None else None
        if not block_type:
            return
        drag = QDrag(self)
        drag.setMimeData(self.mime_data_for(block_type))
        drag.setPixmap(item.icon(0).pixmap(32, 32))
        drag.exec(Qt.CopyAction)

    def _on_double_click(self, item: QTreeWidgetItem, column: int) -> None:
        block_type = item.data(0, TYPE_ROLE)
        if block_type:
            self.blockActivated.emit(block_type)
