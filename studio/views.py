"""Views (workspaces): the window arranged around what a person is doing.

**Build** (palette, canvas, inspector), **Train** (curves, training form, data, confusion
matrix), **Inside** (the gates, cell state, gradients through time, gate health, filters and
text generation of the selected block), **Video** and **Compare** (variants trained side by
side, the run history), the way Deep Network Designer and Neural
Network Console separate designing, training and evaluating. Each view is its own
``QMainWindow`` page in a ``QStackedWidget``: its main panels share the central area as tabs
(the tab bar shows only when there are two), the others are docks the person can move, float,
close and restore, and each view keeps its own arrangement.

``ViewHost.add_panel(view, name, widget, area)`` is the one way a panel enters the window;
``arrange()`` puts every dock where ``DEFAULT_ARRANGEMENT`` says (panels it does not name are
tabbed on the right) and remembers that as the view's default; ``reset()`` restores every
view's default, floated panels docked again. ``layouts()`` / ``restore_layouts()`` carry the
arrangement through the project file.
"""
from __future__ import annotations

import base64
import logging

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QMainWindow, QStackedWidget, QTabWidget, QWidget

from gatescope.studio.viewspec import VIEW_KEYS, VIEWS, ViewSpec

log = logging.getLogger(__name__)


CENTRE = "centre"
AREAS = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea,
         "top": Qt.TopDockWidgetArea, "bottom": Qt.BottomDockWidgetArea}

# Per view and dock area: stacks of docks one above the other, each stack a list of tabs.
DEFAULT_ARRANGEMENT: dict[str, dict[str, list[list[str]]]] = {
    "build": {"left": [["Blocks"]], "right": [["Inspector"]]},
    "train": {"left": [["Training", "Data"]], "right": [["Confusion matrix"], ["Samples"]]},
    # One tab group: stacked, neither the cell state's three plots nor the gradients kept a
    # readable height at 1280x800.
    "inside": {"right": [["Cell state", "Gradients through time", "Gate health", "Text generation"]]},
    "video": {},
    "compare": {"left": [["Compare"]], "bottom": [["Final metrics"]]},
}
# Default widths of the dock areas, as shares of the window's width.
DEFAULT_WIDTHS: dict[str, dict[str, float]] = {
    "build": {"left": 0.15, "right": 0.27},
    "train": {"left": 0.27, "right": 0.31},
    "inside": {"right": 0.42},
    "compare": {"left": 0.22},
}
# Default heights of the bottom dock areas, as shares of the window's height.
DEFAULT_HEIGHTS: dict[str, dict[str, float]] = {
    "compare": {"bottom": 0.26},
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


class ViewPage(QMainWindow):
    """One view: central tabs and docks, inside the main window."""

    def __init__(self, spec: ViewSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"view-{spec.key}")
        self.setWindowFlags(Qt.Widget)
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks | QMainWindow.AllowNestedDocks)
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)   # a left dock runs the full height
        self.tabs = QTabWidget()
        self.tabs.setObjectName(f"centre-{spec.key}")
        self.tabs.setDocumentMode(True)
        self.tabs.setTabBarAutoHide(True)
        self.tabs.tabBar().setElideMode(Qt.ElideNone)
        self.setCentralWidget(self.tabs)
        self.docks: dict[str, QDockWidget] = {}


class ViewHost(QStackedWidget):
    """The views of the window, one page each (see the module docstring).

    ``viewChanged(key)`` after another view is shown.
    """

    viewChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.pages: dict[str, ViewPage] = {}
        self.panels: dict[str, QWidget] = {}         # name -> the panel's widget
        self.docks: dict[str, QDockWidget] = {}      # name -> its dock (not for centre panels)
        self.view_of: dict[str, str] = {}            # name -> view key
        self._unsized: set[str] = set(VIEW_KEYS)     # views whose docks still need their default sizes
        self._applied: dict[str, dict[str, int]] = {}   # dock widths the last sizing gave
        for spec in VIEWS:
            page = ViewPage(spec, self)
            self.pages[spec.key] = page
            self.addWidget(page)
        self.currentChanged.connect(self._on_current_changed)

    # ----------------------------------------------------------------- panels
    def add_panel(self, view: str, name: str, widget: QWidget, area: str = "right") -> QDockWidget | None:
        """Put ``widget`` into ``view`` as panel ``name``: a tab of the central area with
        ``area="centre"``, else a movable, floatable, closable dock (returned) in that area."""
        if name in self.panels:
            raise ValueError(f"a panel called {name!r} exists already")
        if view not in self.pages:
            raise ValueError(f"no view {view!r}; the views are {', '.join(self.pages)}")
        page = self.pages[view]
        self.panels[name], self.view_of[name] = widget, view
        if area == CENTRE:
            page.tabs.addTab(widget, name)
            return None
        dock = QDockWidget(name, page)
        dock.setObjectName(f"panel-{_slug(name)}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        page.addDockWidget(AREAS[area], dock)
        page.docks[name] = dock
        self.docks[name] = dock
        return dock

    def arrange(self) -> None:
        """Arrange every view's docks as ``DEFAULT_ARRANGEMENT`` says (panels it does not name
        are tabbed on the right), every panel docked and shown."""
        for key, page in self.pages.items():
            self._arrange_page(key, page)
        self._unsized = set(VIEW_KEYS)

    def _arrange_page(self, key: str, page: ViewPage) -> None:
        for dock in page.docks.values():
            dock.setFloating(False)
            page.removeDockWidget(dock)
        placed: set[str] = set()
        # The heads of the stacks first, one above the other (splitting a dock that is already
        # tabbed, before the window is shown, put every dock into one tab group), then the tabs.
        groups: list[list[QDockWidget]] = []
        for area, stacks in DEFAULT_ARRANGEMENT.get(key, {}).items():
            for stack in stacks:
                docks = [page.docks[n] for n in stack if n in page.docks]
                if docks:
                    page.addDockWidget(AREAS[area], docks[0], Qt.Vertical)
                    groups.append(docks)
                    placed.update(n for n in stack if n in page.docks)
        for docks in groups:
            for other in docks[1:]:
                page.tabifyDockWidget(docks[0], other)
        rest = [d for n, d in page.docks.items() if n not in placed]
        for dock in rest:
            page.addDockWidget(Qt.RightDockWidgetArea, dock)
        for dock in rest[1:]:
            page.tabifyDockWidget(rest[0], dock)
        for dock in page.docks.values():
            dock.show()
        for stack in (s for stacks in DEFAULT_ARRANGEMENT.get(key, {}).values() for s in stacks):
            if stack and stack[0] in page.docks:
                page.docks[stack[0]].raise_()      # the first of each tab group in front

    def size_docks(self, key: str | None = None) -> None:
        """Give the dock areas of view ``key`` (default: the one shown) their default share of the
        width, and the docks stacked in one area equal heights. Qt sizes docks only on a page that
        is on screen: the other views are sized when they are first shown."""
        key = key or self.current
        page = self.pages[key]
        if not page.isVisible():
            self._unsized.add(key)
            return
        self._unsized.discard(key)
        for view in (key,):
            width = max(self.width(), 640)
            for area, share in DEFAULT_WIDTHS.get(view, {}).items():
                first = next((page.docks[n] for stack in DEFAULT_ARRANGEMENT.get(view, {}).get(area, [])
                              for n in stack if n in page.docks and not page.docks[n].isFloating()), None)
                if first is not None:
                    page.resizeDocks([first], [int(width * share)], Qt.Horizontal)
            for area, share in DEFAULT_HEIGHTS.get(view, {}).items():
                first = next((page.docks[n] for stack in DEFAULT_ARRANGEMENT.get(view, {}).get(area, [])
                              for n in stack if n in page.docks and not page.docks[n].isFloating()), None)
                if first is not None:
                    page.resizeDocks([first], [int(max(self.height(), 400) * share)], Qt.Vertical)
            for area, stacks in DEFAULT_ARRANGEMENT.get(view, {}).items():
                heads = [page.docks[s[0]] for s in stacks if s and s[0] in page.docks]
                if len(heads) > 1:
                    height = max(self.height(), 400)
                    page.resizeDocks(heads, [height // len(heads)] * len(heads), Qt.Vertical)
        QTimer.singleShot(0, self, lambda: self._remember_sizes(key))

    def _dock_sizes(self, key: str) -> dict[str, int]:
        """The widths of view ``key``'s docked panels (heights follow the window by themselves)."""
        return {n: d.width() for n, d in self.pages[key].docks.items() if d.isVisible() and not d.isFloating()}

    def _remember_sizes(self, key: str) -> None:
        self._applied[key] = self._dock_sizes(key)

    def _untouched(self, key: str) -> bool:
        """True when the person has not resized view ``key``'s docks since they were sized."""
        applied, now = self._applied.get(key), self._dock_sizes(key)
        if applied is None or set(applied) != set(now):
            return False
        return all(abs(applied[n] - now[n]) <= 2 for n in now)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """A layout the person has not changed follows the window: its docks keep their shares."""
        super().resizeEvent(event)
        key = self.current
        if key in self._unsized or self._untouched(key):
            self._unsized.add(key)
            self.size_when_shown()
        for other in VIEW_KEYS:
            if other != key and other in self._applied:
                self._unsized.add(other)    # sized again when shown, if still untouched then

    def reset(self) -> None:
        """View > Reset layout: every view as arranged by default, floated and closed panels
        docked and shown, the docks sized to the window."""
        self.arrange()
        self.size_docks()

    def size_when_shown(self) -> None:
        """Size the shown view's docks if they still have Qt's first guess (after the window
        is shown or resized for the first time, and when another view comes up)."""
        if self.current in self._unsized:
            QTimer.singleShot(0, self, lambda: self.current in self._unsized and self.size_docks())

    def _on_current_changed(self, index: int) -> None:
        key = self.current
        if key in self._unsized and key in self._applied:
            # Resized while hidden: sized again only if the person had not changed it.
            QTimer.singleShot(0, self, lambda: self._resize_if_untouched(key))
        else:
            self.size_when_shown()
        self.viewChanged.emit(key)

    def _resize_if_untouched(self, key: str) -> None:
        if self.current != key:
            return
        if self._untouched(key):
            self.size_docks(key)
        else:
            self._unsized.discard(key)

    def raise_panel(self, name: str) -> None:
        """Bring panel ``name`` to the front of its tabs (it stays in its own view)."""
        page = self.pages[self.view_of[name]]
        widget = self.panels[name]
        if name in page.docks:
            page.docks[name].raise_()
        else:
            page.tabs.setCurrentWidget(widget)

    # ----------------------------------------------------------------- views
    @property
    def current(self) -> str:
        page = self.currentWidget()
        return page.spec.key if isinstance(page, ViewPage) else VIEW_KEYS[0]

    def show_view(self, key: str) -> None:
        if key not in self.pages:
            raise ValueError(f"no view {key!r}; the views are {', '.join(self.pages)}")
        self.setCurrentWidget(self.pages[key])

    # ----------------------------------------------------------------- the project file
    def layouts(self) -> dict[str, str]:
        """Every view's dock arrangement, base64 text for the project file."""
        return {key: base64.b64encode(bytes(page.saveState())).decode("ascii") for key, page in self.pages.items()}

    def restore_layouts(self, layouts) -> bool:
        """Arrange the views as ``layouts`` (from ``layouts()``) says; views it lacks keep their
        default. False (and the defaults) when it cannot be read."""
        if not isinstance(layouts, dict):
            return False
        ok = True
        for key, text in layouts.items():
            page = self.pages.get(key)
            if page is None or not isinstance(text, str):
                continue
            try:
                state = QByteArray(base64.b64decode(text.encode("ascii"), validate=True))
            except (ValueError, UnicodeEncodeError):
                ok = False
                continue
            if page.restoreState(state):
                self._unsized.discard(key)
            else:
                ok = False
        if not ok:
            log.warning("the project's panel layout could not be read; using the default layout")
        return ok
