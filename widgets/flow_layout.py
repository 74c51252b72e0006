"""A layout that lays its widgets out in rows and wraps to the next row when one is full.

Panel controls live in one: in a narrow dock they take two rows instead of being cut to
"ear pinn" and "ave data" (what a fixed row of buttons did at 500 pixels). ``addStretch()``
marks where the rest of the row is pushed to the right (the save buttons sit at the end).
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QSpacerItem, QWidget, QWidgetItem


class _Break(QSpacerItem):
    """Marks the place after which the rest of a row goes to the right."""

    def __init__(self):
        super().__init__(0, 0, QSizePolicy.Fixed, QSizePolicy.Fixed)


class FlowLayout(QLayout):
    """Widgets left to right, wrapping onto new rows; ``height_for_width`` so a parent gives it
    the rows it needs."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    # ----------------------------------------------------------------- QLayout
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt override
        self._items.append(item)

    def addStretch(self) -> None:  # noqa: N802 - QBoxLayout's name
        """Items added after this sit at the right end of the last row they share with it."""
        self._items.append(_Break())
        self.invalidate()

    def insertWidget(self, index: int, widget: QWidget) -> None:  # noqa: N802 - QBoxLayout's name
        self.addChildWidget(widget)
        self._items.insert(index, QWidgetItem(widget))
        self.invalidate()

    def break_index(self) -> int:
        """Where ``addStretch`` put its mark (the number of items when there is none)."""
        return next((i for i, item in enumerate(self._items) if isinstance(item, _Break)), len(self._items))

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt override
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt override
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt override
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt override
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt override
        size = QSize()
        for item in self._visible():
            size = size.expandedTo(item.minimumSize())
        left, top, right, bottom = self.getContentsMargins()
        return size + QSize(left + right, top + bottom)

    # ----------------------------------------------------------------- placing
    def _visible(self) -> list[QLayoutItem]:
        return [i for i in self._items if isinstance(i, _Break) or (i.widget() is not None and
                                                                    not i.widget().isHidden())]

    def _arrange(self, rect: QRect, move: bool) -> int:
        left, top, right, bottom = self.getContentsMargins()
        area = rect.adjusted(left, top, -right, -bottom)
        spacing = self.spacing()
        rows: list[list[tuple[QLayoutItem, QSize, bool]]] = [[]]
        x, pushed = 0, False
        for item in self._visible():
            if isinstance(item, _Break):
                pushed = True
                continue
            hint = item.sizeHint()
            if rows[-1] and x + hint.width() > area.width():
                rows.append([])
                x = 0
            rows[-1].append((item, hint, pushed))
            x += hint.width() + spacing
        y = area.y()
        for row in rows:
            if not row:
                continue
            height = max(h.height() for _, h, _ in row)
            if move:
                pushed_width = sum(h.width() for _, h, p in row if p) + spacing * max(0, sum(p for *_, p in row) - 1)
                x = area.x()
                right_x = area.right() + 1 - pushed_width
                for item, hint, is_pushed in row:
                    if is_pushed and x < right_x:
                        x = right_x
                    item.setGeometry(QRect(QPoint(x, y + (height - hint.height()) // 2), hint))
                    x += hint.width() + spacing
            y += height + spacing
        return y - spacing - rect.y() + bottom

