"""Every question and message the window puts to the person, in one replaceable place.

Tests and the offscreen screenshot pass ``QuietDialogs`` (or their own object with the same
methods), so nothing ever blocks on a modal dialog.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QMessageBox, QTextBrowser, QVBoxLayout,
                               QWidget)

from gatescope.studio.project import SUFFIX

log = logging.getLogger(__name__)


class Dialogs:
    """Every question and message the window puts to the person, in one replaceable place.

    Tests (and the offscreen screenshot) pass their own object with the same methods, so
    nothing ever blocks on a modal dialog.
    """

    def __init__(self, parent: QWidget):
        self.parent = parent

    def error(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def info(self, title: str, text: str) -> None:
        QMessageBox.information(self.parent, title, text)

    def ask_save(self, text: str) -> str:
        """``'save'``, ``'discard'`` or ``'cancel'``."""
        answer = QMessageBox.question(self.parent, "Unsaved changes", text,
                                      QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def ask_stop_training(self, text: str) -> bool:
        """True to stop the run and go on, False to cancel."""
        box = QMessageBox(QMessageBox.Question, "Training is running", text, parent=self.parent)
        stop = box.addButton("Stop and continue", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        return box.clickedButton() is stop

    def open_path(self) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open project", "", f"GateScope projects (*{SUFFIX})")
        return path or None

    def save_path(self, suggested: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save project", suggested,
                                              f"GateScope projects (*{SUFFIX})")
        if path and not path.endswith(SUFFIX):
            path += SUFFIX
        return path or None

    def export_path(self, suggested: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export to ONNX", suggested, "ONNX models (*.onnx)")
        if path and not path.endswith(".onnx"):
            path += ".onnx"
        return path or None

    def offer_recovery(self, paths: list[Path]) -> Path | None:
        """Autosaved copies from a session that did not end cleanly: which to open, or None."""
        newest = max(paths, key=lambda p: p.stat().st_mtime)
        answer = QMessageBox.question(
            self.parent, "Recover unsaved work?",
            f"GateScope did not close cleanly last time. An autosaved copy was found:\n\n{newest}\n\n"
            "Open it? (No deletes the autosaved copies.)", QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        return newest if answer == QMessageBox.Yes else None

    def show_help(self, title: str, html: str) -> None:
        """A page of help (HTML) in a window of its own that can stay open beside the main one."""
        dialog = QDialog(self.parent)
        dialog.setWindowTitle(title)
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        layout = QVBoxLayout(dialog)
        browser = QTextBrowser()
        browser.setOpenExternalLinks(False)
        browser.setHtml(html)
        layout.addWidget(browser)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.close)
        layout.addWidget(buttons)
        dialog.resize(640, 560)
        dialog.show()

    def show_exception(self, summary: str, details: str) -> None:
        box = QMessageBox(QMessageBox.Critical, "Unexpected error",
                          f"Something went wrong inside GateScope: {summary}\n\n"
                          "Your project is still open; save it under a new name to be safe.", parent=self.parent)
        box.setDetailedText(details)
        box.exec()


class QuietDialogs(Dialogs):
    """For the offscreen screenshot: messages go to the log, questions take the safe answer, and
    no file dialog opens."""

    def error(self, title: str, text: str) -> None:
        log.warning("%s: %s", title, text)

    def info(self, title: str, text: str) -> None:
        log.info("%s: %s", title, text)

    def ask_save(self, text: str) -> str:
        return "discard"

    def ask_stop_training(self, text: str) -> bool:
        return True

    def offer_recovery(self, paths: list[Path]) -> Path | None:
        return None

    def open_path(self) -> str | None:
        return None             # no file dialog offscreen: nothing is chosen

    def save_path(self, suggested: str) -> str | None:
        return None

    def export_path(self, suggested: str) -> str | None:
        return None

    def show_help(self, title: str, html: str) -> None:
        log.info("%s (help page not shown offscreen)", title)

    def show_exception(self, summary: str, details: str) -> None:
        log.error("unexpected error: %s\n%s", summary, details)
