"""What a person would see go wrong in the window at its current size, found by measuring it.

``audit(window)`` looks at the view on screen and returns one sentence per problem:

* a plot whose view box (the area the data is drawn in) is below its readable minimum:
  ``MIN_PLOT`` for ordinary plots, ``MIN_HEATMAP_HEIGHT`` for a gate heatmap row (a plot with
  an ``audit_min_height`` attribute says what it needs itself; colour bars, marked
  ``audit_exempt``, are thin on purpose);
* a label cut short: a single-line label narrower than its text, a wrapped one shorter than
  its lines, or one that sticks out of the widget that holds it;
* a control (button, box, field, slider) partly outside the panel that holds it;
* a row of tabs too long for its bar (a tab hidden behind scroll arrows), and tool-bar
  entries pushed into its overflow menu.

A scroll area is where cutting off is allowed: what lies inside one is measured against the
scrolled content, not against the visible part. The test ``tests/studio/test_layout.py`` runs
it for every bundled example, view and common window size; ``tools/screenshots.py`` prints
what it finds beside each README picture.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRect
from PySide6.QtWidgets import (QAbstractButton, QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox,
                               QComboBox, QDockWidget, QLabel, QLineEdit, QTabBar, QToolBar, QWidget)

MIN_PLOT = (120, 80)          # width, height of a plot's drawing area that still reads as a plot
MIN_HEATMAP_HEIGHT = 36       # a gate heatmap row (the issue asks for about 40 px)
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractSlider)
SLACK = 1                     # pixels of rounding allowed


def _name(widget: QWidget) -> str:
    """Where a widget is, as a person would point at it: its panel and what it says."""
    parts = []
    text = ""
    if isinstance(widget, (QLabel, QAbstractButton)):
        text = widget.text()
    elif isinstance(widget, QLineEdit):
        text = widget.placeholderText() or widget.text()
    elif isinstance(widget, QComboBox):
        text = widget.currentText()
    w: QWidget | None = widget
    while w is not None:
        title = w.windowTitle() if w.objectName().startswith("panel-") else ""
        if title:
            parts.append(title)
            break
        if w.objectName().startswith("view-"):
            parts.append(w.objectName()[5:] + " view")
            break
        w = w.parentWidget()
    where = parts[0] if parts else "the window"
    what = type(widget).__name__ + (f" {text[:40]!r}" if text else "")
    return f"{what} in {where}"


def _shown(widget: QWidget) -> bool:
    """On screen: visible (pages of other views are hidden) and not in a dock behind another
    dock's tab (Qt keeps those "visible" but moves them off screen). A widget scrolled out of
    sight counts as shown."""
    if not widget.isVisible() or widget.width() <= 0 or widget.height() <= 0:
        return False
    w: QWidget | None = widget
    while w is not None:
        if isinstance(w, QDockWidget) and w.visibleRegion().isEmpty():
            return False
        w = w.parentWidget()
    return True


def _scrolled(widget: QWidget) -> bool:
    """True when ``widget`` sits inside a scroll area's viewport (it may lie out of sight)."""
    w = widget.parentWidget()
    while w is not None:
        if isinstance(w.parentWidget(), QAbstractScrollArea) and w is w.parentWidget().viewport():
            return True
        w = w.parentWidget()
    return False


def _outside_parent(widget: QWidget) -> QWidget | None:
    """The first ancestor (up to a scroll area's viewport or the window) that ``widget`` sticks
    out of, or None."""
    rect = QRect(widget.mapTo(widget.window(), widget.rect().topLeft()), widget.size())
    w = widget.parentWidget()
    while w is not None and not w.isWindow():
        if isinstance(w.parentWidget(), QAbstractScrollArea) and w is w.parentWidget().viewport():
            return None
        area = QRect(w.mapTo(w.window(), w.rect().topLeft()), w.size()).adjusted(-SLACK, -SLACK, SLACK, SLACK)
        if not area.contains(rect):
            return w
        w = w.parentWidget()
    return None


def _label_problem(label: QLabel) -> str | None:
    if not label.text() or label.pixmap() is not None and not label.pixmap().isNull():
        return None
    if label.wordWrap():
        needed = label.heightForWidth(label.width())
        if needed > label.height() + SLACK:
            return f"{_name(label)} is cut: {label.height()} px tall for {needed} px of text"
    else:
        needed = label.sizeHint().width()
        if needed > label.width() + SLACK:
            return f"{_name(label)} is cut: {label.width()} px wide for {needed} px of text"
    return None


def _plot_problems(view: pg.GraphicsView) -> list[str]:
    problems = []
    for item in view.scene().items():
        if not isinstance(item, pg.ViewBox) or not item.isVisible():
            continue
        plot = item.parentItem()
        if getattr(plot, "audit_exempt", False):
            continue           # a colour bar's strip: thin on purpose
        rect = item.sceneBoundingRect()
        width, height = rect.width(), rect.height()
        title = ""
        if isinstance(plot, pg.PlotItem) and plot.titleLabel is not None:
            title = plot.titleLabel.text
        heatmap = isinstance(plot, pg.PlotItem) and any(isinstance(i, pg.ImageItem) for i in item.addedItems)
        min_width, min_height = MIN_PLOT
        if heatmap:
            min_height = MIN_HEATMAP_HEIGHT
        min_height = getattr(plot, "audit_min_height", min_height)   # a plot that says what it needs
        if width + SLACK < min_width or height + SLACK < min_height:
            where = _name(view)
            problems.append(f"the plot {title!r} in {where.split(' in ', 1)[-1]} is {width:.0f}x{height:.0f} px, "
                            f"below its readable {min_width}x{min_height}")
    return problems


def audit(window: QWidget) -> list[str]:
    """Every problem a person would see in ``window`` as it is now (see the module docstring)."""
    problems: list[str] = []
    for widget in window.findChildren(QWidget):
        if not _shown(widget):
            continue
        if isinstance(widget, pg.GraphicsView):
            problems += _plot_problems(widget)
        elif isinstance(widget, QLabel):
            problem = _label_problem(widget)
            if problem and not _scrolled(widget):
                problems.append(problem)
            elif _outside_parent(widget) is not None:
                problems.append(f"{_name(widget)} sticks out of its panel")
        elif isinstance(widget, CONTROLS) and not isinstance(widget.parentWidget(), (QTabBar, QToolBar,
                                                                                     QAbstractSpinBox, QComboBox)):
            if _outside_parent(widget) is not None:
                problems.append(f"{_name(widget)} lies partly outside its panel")
        if isinstance(widget, QTabBar) and widget.count() > 1:
            needed = sum(widget.tabSizeHint(i).width() for i in range(widget.count()))
            if needed > widget.width() + SLACK and widget.shape() in (QTabBar.RoundedNorth, QTabBar.RoundedSouth,
                                                                       QTabBar.TriangularNorth,
                                                                       QTabBar.TriangularSouth):
                names = ", ".join(widget.tabText(i) for i in range(widget.count()))
                problems.append(f"the tabs {names} need {needed} px but have {widget.width()}: some are hidden")
        if isinstance(widget, QToolBar):
            for action in widget.actions():
                shown = widget.widgetForAction(action)
                if action.isVisible() and shown is not None and not shown.isVisible():
                    problems.append(f"the tool bar has no room for {action.text() or 'an entry'}")
    return problems
