"""Block icons drawn with QPainter, one small picture per palette category.

Input: an arrow entering a frame; Convolution: a kernel window over a grid; Pooling: four
cells merging into one; Dense: two layers of fully connected nodes; Recurrent: a cell with
its loop back; Merge: two lines joining; Output: a bar chart of class scores.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from gatescope.widgets.theme import category_colour


def paint_category_icon(painter: QPainter, rect: QRectF, category: str) -> None:
    """Draw the picture of ``category`` inside ``rect`` (any size; line widths scale with it)."""
    colour = category_colour(category)
    s = min(rect.width(), rect.height())
    x0, y0 = rect.center().x() - s / 2, rect.center().y() - s / 2

    def p(fx: float, fy: float) -> QPointF:
        return QPointF(x0 + fx * s, y0 + fy * s)

    pen = QPen(colour, max(1.0, s / 14), Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setPen(pen)
    painter.setBrush(Qt.NoBrush)
    fill = QColor(colour)
    fill.setAlpha(110)
    if category == "Input":
        painter.drawRoundedRect(QRectF(p(0.42, 0.18), p(0.88, 0.82)), s * 0.06, s * 0.06)
        painter.drawLine(p(0.08, 0.5), p(0.56, 0.5))
        painter.drawPolyline([p(0.42, 0.36), p(0.58, 0.5), p(0.42, 0.64)])
    elif category == "Convolution":
        for i in range(5):
            f = 0.12 + i * 0.19
            painter.drawLine(p(f, 0.12), p(f, 0.88))
            painter.drawLine(p(0.12, f), p(0.88, f))
        painter.setBrush(QBrush(fill))
        painter.drawRect(QRectF(p(0.12, 0.12), p(0.69, 0.69)))
    elif category == "Pooling":
        painter.setBrush(QBrush(fill))
        for fx in (0.08, 0.3):
            for fy in (0.22, 0.5):
                painter.drawRect(QRectF(p(fx, fy), p(fx + 0.2, fy + 0.26)))
        painter.drawLine(p(0.56, 0.5), p(0.7, 0.5))
        painter.drawRect(QRectF(p(0.72, 0.36), p(0.92, 0.64)))
    elif category == "Dense":
        left = [p(0.2, fy) for fy in (0.2, 0.5, 0.8)]
        right = [p(0.8, fy) for fy in (0.32, 0.68)]
        thin = QPen(pen)
        thin.setWidthF(max(0.8, s / 24))
        painter.setPen(thin)
        for a in left:
            for b in right:
                painter.drawLine(a, b)
        painter.setPen(pen)
        painter.setBrush(QBrush(colour))
        for c in left + right:
            painter.drawEllipse(c, s * 0.08, s * 0.08)
    elif category == "Recurrent":
        painter.setBrush(QBrush(fill))
        painter.drawRoundedRect(QRectF(p(0.25, 0.38), p(0.75, 0.78)), s * 0.06, s * 0.06)
        painter.setBrush(Qt.NoBrush)
        loop = QPainterPath(p(0.75, 0.5))
        loop.cubicTo(p(1.0, 0.42), p(0.92, 0.05), p(0.5, 0.1))
        loop.cubicTo(p(0.12, 0.12), p(0.05, 0.38), p(0.25, 0.5))
        painter.drawPath(loop)
        painter.drawPolyline([p(0.14, 0.4), p(0.25, 0.5), p(0.12, 0.56)])
    elif category == "Merge":
        painter.drawLine(p(0.1, 0.22), p(0.5, 0.5))
        painter.drawLine(p(0.1, 0.78), p(0.5, 0.5))
        painter.drawLine(p(0.5, 0.5), p(0.9, 0.5))
        painter.setBrush(QBrush(colour))
        painter.drawEllipse(p(0.5, 0.5), s * 0.09, s * 0.09)
    elif category == "Output":
        painter.setBrush(QBrush(fill))
        for i, h in enumerate((0.3, 0.75, 0.45, 0.2)):
            fx = 0.12 + i * 0.2
            painter.drawRect(QRectF(p(fx, 0.88 - h), p(fx + 0.14, 0.88)))
        painter.drawLine(p(0.06, 0.88), p(0.94, 0.88))
    else:
        painter.setBrush(QBrush(fill))
        painter.drawRoundedRect(QRectF(p(0.15, 0.15), p(0.85, 0.85)), s * 0.1, s * 0.1)
    painter.restore()


def category_icon(category: str, size: int = 32) -> QIcon:
    """A QIcon of ``category`` drawn at ``size`` pixels (and twice that for high-DPI screens)."""
    icon = QIcon()
    for scale in (1, 2):
        pixmap = QPixmap(size * scale, size * scale)
        pixmap.fill(Qt.transparent)
        painter = QPainter(pixmap)
        paint_category_icon(painter, QRectF(0, 0, size * scale, size * scale).adjusted(2, 2, -2, -2), category)
        painter.end()
        pixmap.setDevicePixelRatio(scale)
        icon.addPixmap(pixmap)
    return icon
