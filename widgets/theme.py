"""The dark theme: one palette of colours shared by every widget, and the application style sheet."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleFactory

BACKGROUND = "#1e2127"
PANEL = "#252931"
RAISED = "#2e333d"
BORDER = "#3b4250"
TEXT = "#d8dee9"
MUTED = "#8b95a7"
ACCENT = "#5fa8ff"
ERROR = "#ff5c5c"
WARNING = "#f2b94b"
GOOD = "#6fcf73"



def plain_axes(plot) -> None:
    """Tick labels in the plotted values themselves on every axis of ``plot`` (a pyqtgraph
    PlotItem or PlotWidget). pyqtgraph rescales a labelled axis whose values all lie below 1 by
    an SI prefix and writes "(x0.001)" beside the label, so a loss of 0.05 reads 50 and an
    LSTM's hidden state -500: misleading for the unitless values GateScope plots."""
    for name in ("left", "bottom", "right", "top"):
        plot.getAxis(name).enableAutoSIPrefix(False)


# Block colours by palette category: distinct hues that read on the dark canvas.
CATEGORY_COLOURS = {
    "Input": "#4fb3bf",
    "Convolution": "#7b8cff",
    "Pooling": "#b68cff",
    "Dense": "#5fa8ff",
    "Recurrent": "#ff9f5f",
    "Merge": "#e0d25f",
    "Output": "#6fcf73",
}

# Curves: train solid, validation dashed, one hue per quantity.
TRAIN_COLOUR = "#5fa8ff"
VALIDATION_COLOUR = "#ff9f5f"


def category_colour(category: str) -> QColor:
    """The colour blocks of ``category`` are drawn in (grey for an unknown one)."""
    return QColor(CATEGORY_COLOURS.get(category, "#9aa3b2"))


STYLE_SHEET = f"""
QWidget {{ color: {TEXT}; }}
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{ background: {RAISED}; padding: 4px 8px; }}
QToolTip {{ color: {TEXT}; background: {RAISED}; border: 1px solid {BORDER}; padding: 4px; }}
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    background: {BACKGROUND}; border: 1px solid {BORDER}; border-radius: 3px; padding: 2px 4px;
    min-height: 20px;
}}
QLineEdit[invalid="true"] {{ border: 1px solid {ERROR}; }}
QPushButton {{
    background: {RAISED}; border: 1px solid {BORDER}; border-radius: 4px; padding: 4px 12px;
}}
QPushButton:hover {{ border-color: {ACCENT}; }}
QPushButton:disabled {{ color: {MUTED}; background: {PANEL}; }}
QPushButton#primary {{ background: #2f5d96; border-color: {ACCENT}; }}
QPushButton#primary:disabled {{ background: {PANEL}; border-color: {BORDER}; }}
QProgressBar {{
    background: {BACKGROUND}; border: 1px solid {BORDER}; border-radius: 3px; text-align: center;
    min-height: 18px;
}}
QProgressBar::chunk {{ background: #2f5d96; }}
QTreeWidget, QListWidget {{ background: {PANEL}; border: none; }}
QTreeWidget::item, QListWidget::item {{ padding: 3px 0; }}
QTreeWidget::item:selected {{ background: {RAISED}; }}
QGroupBox {{ border: 1px solid {BORDER}; border-radius: 4px; margin-top: 10px; padding-top: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {MUTED}; }}
QLabel#error {{ color: {ERROR}; }}
QLabel#warning {{ color: {WARNING}; }}
QLabel#muted {{ color: {MUTED}; }}
QLabel#heading {{ font-weight: bold; font-size: 13px; }}
QLabel#result {{ color: {GOOD}; font-weight: bold; }}
QToolBar#workspaces {{ background: {PANEL}; border: none; spacing: 4px; padding: 2px 6px; }}
QToolBar#workspaces QToolButton {{ padding: 4px 14px; border: 1px solid transparent; border-radius: 4px; }}
QToolBar#workspaces QToolButton:checked {{ background: {RAISED}; border-color: {ACCENT}; font-weight: bold; }}
QToolBar#workspaces QToolButton:hover {{ border-color: {BORDER}; }}
QStatusBar {{ background: {PANEL}; }}
QMenuBar {{ background: {PANEL}; }}
QMenuBar::item:selected, QMenu::item:selected {{ background: {RAISED}; }}
QMenu {{ background: {PANEL}; border: 1px solid {BORDER}; }}
QTabBar::tab {{ background: {PANEL}; padding: 4px 10px; border: 1px solid {BORDER}; }}
QTabBar::tab:selected {{ background: {RAISED}; }}
QScrollArea {{ border: none; }}
QCheckBox::indicator, QAbstractItemView::indicator {{
    width: 13px; height: 13px; border: 1px solid {MUTED}; border-radius: 3px; background: {BACKGROUND};
}}
QCheckBox::indicator:hover, QAbstractItemView::indicator:hover {{ border-color: {ACCENT}; }}
QCheckBox::indicator:checked, QAbstractItemView::indicator:checked {{ background: {ACCENT}; border-color: {ACCENT}; }}
QCheckBox::indicator:disabled, QAbstractItemView::indicator:disabled {{ border-color: {BORDER}; }}
"""


class _Style(QProxyStyle):
    """Fusion, with tab names never elided: a dock tab reading "Confusion ma…" or "Gate hea…"
    names nothing; a row of tabs too long for its panel scrolls instead."""

    def styleHint(self, hint, option=None, widget=None, data=None):  # noqa: N802 - Qt override
        if hint == QStyle.SH_TabBar_ElideMode:
            return int(Qt.ElideNone.value) if hasattr(Qt.ElideNone, "value") else int(Qt.ElideNone)
        return super().styleHint(hint, option, widget, data)


def apply_dark_theme(app: QApplication) -> None:
    """Give ``app`` the Fusion style with the dark palette and style sheet, and pyqtgraph matching colours."""
    import pyqtgraph as pg

    app.setStyle(_Style(QStyleFactory.create("Fusion")))
    palette = QPalette()
    roles = {
        QPalette.Window: BACKGROUND, QPalette.WindowText: TEXT, QPalette.Base: BACKGROUND,
        QPalette.AlternateBase: PANEL, QPalette.ToolTipBase: RAISED, QPalette.ToolTipText: TEXT,
        QPalette.Text: TEXT, QPalette.Button: RAISED, QPalette.ButtonText: TEXT,
        QPalette.Highlight: "#2f5d96", QPalette.HighlightedText: "#ffffff", QPalette.Link: ACCENT,
        QPalette.PlaceholderText: MUTED,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.Disabled, QPalette.Text, QColor(MUTED))
    palette.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(MUTED))
    palette.setColor(QPalette.Disabled, QPalette.WindowText, QColor(MUTED))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
    # Antialiased lines cost several times more to paint; plain ones keep redraws short while training.
    pg.setConfigOptions(background=BACKGROUND, foreground=TEXT, antialias=False)
