"""The main window and the GUI entry point ``run_app``.

The window wires the document (``studio.document``) to the widgets: palette on the left,
canvas in the centre, inspector on the right, and dock panels for data, training, curves and
the confusion matrix. The inside-the-network panels (``studio.inside``) and the live video
panel (``studio.video``) are installed into every window through the same hooks colleagues
use: ``MainWindow.add_panel``, ``add_model_hook`` and the window's signals (see the class
docstring).
"""
from __future__ import annotations

import atexit

import base64
import copy
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QByteArray, QMimeData, QObject, QPointF, QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow, QMenu,
                               QMessageBox, QScrollArea, QWidget)

from gatescope.compute.backend import DeviceError, select_device
from gatescope.compute.datasets import Dataset, DataError, load
from gatescope.compute.graph import Model
from gatescope.compute.train import TrainSettings, dataset_split, evaluate
from gatescope.studio import __version__, palette_data
from gatescope.studio.document import Document
from gatescope.studio.inside import InsideController, install_inside_panels
from gatescope.studio.project import SUFFIX, Project, ProjectError, load_project
from gatescope.studio.session import dataset_reference
from gatescope.studio.training_worker import TrainingJob, TrainingRun
from gatescope.studio.video import VideoController, install_video_panel
from gatescope.widgets.canvas import ModelCanvas
from gatescope.widgets.curves import ConfusionMatrixView, CurvesPanel
from gatescope.widgets.data_panel import DataPanel
from gatescope.widgets.inspector import Inspector
from gatescope.widgets.palette import BlockPalette
from gatescope.widgets.theme import ERROR, apply_dark_theme
from gatescope.widgets.training_panel import TrainingPanel, format_duration

log = logging.getLogger(__name__)

AUTOSAVE_INTERVAL_MS = 3 * 60 * 1000
AUTOSAVE_SUFFIX = ".autosave"
MAX_RECENT = 8
CLIPBOARD_MIME = "application/x-gatescope-blocks"
SCREENSHOT_SIZE = (1500, 950)
DEFAULT_EXAMPLE = "digits-cnn"
DOCK_STATE_KEY = "dock_state"
# The default places of the installed panels: tabs behind Curves, and behind the confusion matrix.
# Staged view updates (see MainWindow._stage) run this far apart: a real timer, so the paint the
# previous update asked for (posted events) happens in a pass of its own before the next update.
STAGE_GAP_MS = 10
TABS_WITH_CURVES = ("Gates", "Cell state", "Gradients through time", "Filters and feature maps", "Video")
TABS_WITH_CONFUSION = ("Gate health", "Text generation")


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

    def show_exception(self, summary: str, details: str) -> None:
        box = QMessageBox(QMessageBox.Critical, "Unexpected error",
                          f"Something went wrong inside GateScope: {summary}\n\n"
                          "Your project is still open; save it under a new name to be safe.", parent=self.parent)
        box.setDetailedText(details)
        box.exec()


class _DatasetLoader(QObject):
    """Loads a dataset on a plain thread; ``done(token, dataset or None, error)`` arrives queued.

    ``confusion(token, matrix)`` brings the validation confusion matrix of a trained model
    (computed by ``evaluate_saved`` on a thread too), so a reopened project shows it; ``matrix``
    is None when there is none to show (a per-step output, or an evaluation that failed).
    """

    done = Signal(int, object, str)
    confusion = Signal(int, object)

    def evaluate_saved(self, token: int, project: Project, dataset: Dataset) -> None:
        """Compute the validation confusion matrix of ``project``'s weights on ``dataset``."""
        def work() -> None:
            try:
                model = project.build_model()
                s = project.training
                split = dataset_split(dataset, s.val_fraction, s.test_fraction, s.seed)
                metrics = evaluate(model, dataset.x[split.val], dataset.y[split.val])
            except Exception:  # noqa: BLE001 - only a picture is missing; the log says why
                log.warning("no confusion matrix for the saved weights:\n%s", traceback.format_exc())
                self.confusion.emit(token, None)
                return
            self.confusion.emit(token, metrics.confusion)

        threading.Thread(target=work, name="saved-model-evaluation", daemon=True).start()

    def load(self, token: int, ref: dict) -> None:
        def work() -> None:
            try:
                dataset = load(ref)
            except DataError as exc:
                self.done.emit(token, None, str(exc))
            except Exception as exc:  # noqa: BLE001 - a reader's surprise is a message, not a crash
                log.error("dataset failed to load:\n%s", traceback.format_exc())
                self.done.emit(token, None, f"the dataset could not be read: {type(exc).__name__}: {exc}")
            else:
                self.done.emit(token, dataset, "")

        threading.Thread(target=work, name="dataset-loader", daemon=True).start()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


class MainWindow(QMainWindow):
    """GateScope's main window.

    Hooks for panels written elsewhere:
      ``add_panel(name, widget, area)`` adds a dock with a View menu entry (its layout is saved
      in the project with the others).
      ``add_model_hook(fn)``: ``fn(model)`` runs on the training thread after the model is built
      and before the first step (turn on probes, pin gates there; keep it quick).
      ``selected_block()``, ``current_dataset()``, ``trained_model()``, ``document.project``.
      ``set_block_flag(block_id, message)`` marks a block on the canvas with a warning from a
      panel (the gate health's stuck gates, say); an empty message clears it.

    With ``extra_panels`` (the default) the window installs the inside-the-network panels
    (``self.inside``, a ``studio.inside.InsideController``) and the video panel (``self.video``,
    a ``studio.video.VideoController``) as docks in the bottom area.

    Signals:
      ``projectChanged(object)``: a project was opened or created (the Project).
      ``graphAnalysed(object)``: after every edit, the fresh ``compute.graph.Analysis``.
      ``selectionChanged(list)``: selected block ids; ``blockSelected(str)``: the one selected
      block id, or '' when none or several are selected.
      ``datasetLoaded(object)``: the Dataset now in use.
      ``trainingStarted(dict)``, ``trainingStep(dict)`` (coalesced steps, at most 25/s, with
      ``probes`` as host NumPy arrays when recorded), ``trainingEpoch(dict)``,
      ``trainingEnded(str kind, str message)``.
    """

    projectChanged = Signal(object)
    graphAnalysed = Signal(object)
    selectionChanged = Signal(list)
    blockSelected = Signal(str)
    datasetLoaded = Signal(object)
    trainingStarted = Signal(dict)
    trainingStep = Signal(dict)
    trainingEpoch = Signal(dict)
    trainingEnded = Signal(str, str)

    def __init__(self, settings: QSettings | None = None, dialogs: Any = None, autosave_dir: Path | None = None,
                 extra_panels: bool = True):
        super().__init__()
        self.settings = settings or QSettings("GateScope", "GateScope")
        self.dialogs = dialogs or Dialogs(self)
        self.autosave_dir = Path(autosave_dir) if autosave_dir else Path(
            QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "autosave"
        self._untitled_autosave = self.autosave_dir / f"untitled-{os.getpid()}-{int(time.time())}{SUFFIX}"
        self.document = Document(parent=self)
        self.panels: dict[str, QDockWidget] = {}
        self.model_hooks: list[Callable[[Model], None]] = []
        self.run: TrainingRun | None = None
        self._dataset: Dataset | None = None
        self._dataset_ref: dict | None = None
        self._load_token = 0
        self._paste_count = 0
        self._run_started = 0.0
        self._run_info: dict = {}
        self._last_step_payload: dict = {}
        self._block_flags: dict[str, str] = {}
        # Epoch-end view updates, each run in its own event-loop pass (see _stage).
        self._staged: dict[Any, Callable[[], None]] = {}
        self._staged_scheduled = False
        self.evaluating_saved = False      # the saved weights' confusion matrix is being computed
        self.inside: InsideController | None = None
        self.video: VideoController | None = None
        self.setWindowTitle("GateScope")
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks | QMainWindow.AllowNestedDocks)

        self.canvas = ModelCanvas()
        self.setCentralWidget(self.canvas)
        self.palette = BlockPalette()
        self.palette.set_blocks(palette_data.palette_blocks(), palette_data.categories())
        self.inspector = Inspector()
        self.data_panel = DataPanel()
        self.data_panel.set_sources(palette_data.dataset_sources())
        self.training_panel = TrainingPanel(palette_data.training_fields())
        self.curves = CurvesPanel()
        self.confusion = ConfusionMatrixView()

        self._build_menus()
        self.add_panel("Blocks", self.palette, Qt.LeftDockWidgetArea)
        self.add_panel("Inspector", self.inspector, Qt.RightDockWidgetArea)
        self.add_panel("Training", self.training_panel, Qt.RightDockWidgetArea)
        data_scroll = QScrollArea()  # the sample pictures need room; the dock may be shorter
        data_scroll.setWidgetResizable(True)
        data_scroll.setFrameShape(QFrame.NoFrame)
        data_scroll.setWidget(self.data_panel)
        self.add_panel("Data", data_scroll, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(self.panels["Training"], self.panels["Data"])
        self.panels["Training"].raise_()
        self.add_panel("Curves", self.curves, Qt.BottomDockWidgetArea)
        self.add_panel("Confusion matrix", self.confusion, Qt.BottomDockWidgetArea)
        self.splitDockWidget(self.panels["Curves"], self.panels["Confusion matrix"], Qt.Horizontal)
        if extra_panels:
            self.inside = install_inside_panels(self)
            self.video = install_video_panel(self)
        for anchor, names in (("Curves", TABS_WITH_CURVES), ("Confusion matrix", TABS_WITH_CONFUSION)):
            for name in names:
                if name in self.panels:
                    self.tabifyDockWidget(self.panels[anchor], self.panels[name])
            self.panels[anchor].raise_()
        self._size_default_docks()
        self._default_dock_state = self.saveState()
        self._shown_once = False

        self.device_label = QLabel()
        self.params_label = QLabel()
        self.statusBar().addPermanentWidget(self.params_label)
        self.statusBar().addPermanentWidget(self.device_label)

        self.loader = _DatasetLoader(self)
        self.loader.done.connect(self._on_dataset_loaded)
        self.loader.confusion.connect(self._on_saved_confusion)
        self._connect()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_INTERVAL_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self._show_device()
        self._apply_project()

    # ----------------------------------------------------------------- panels
    def add_panel(self, name: str, widget: QWidget, area: Qt.DockWidgetArea = Qt.BottomDockWidgetArea
                  ) -> QDockWidget:
        """Put ``widget`` in a movable, closable dock called ``name`` with an entry in the View menu.

        The dock's place is saved in the project's panel layout with the others. Returns the dock
        (tabify it with ``tabifyDockWidget`` if it should share a place).
        """
        if name in self.panels:
            raise ValueError(f"a panel called {name!r} exists already")
        dock = QDockWidget(name, self)
        dock.setObjectName(f"panel-{_slug(name)}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        self.panels[name] = dock
        return dock

    def add_model_hook(self, hook: Callable[[Model], None]) -> None:
        """Call ``hook(model)`` on the training thread before each run's first step."""
        self.model_hooks.append(hook)

    def set_block_flag(self, block_id: str, message: str) -> None:
        """Mark ``block_id`` on the canvas (and in the inspector) with the warning ``message``;
        an empty ``message`` removes the mark. Flags last until the project is replaced."""
        if message:
            self._block_flags[block_id] = message
        else:
            self._block_flags.pop(block_id, None)
        self.canvas.set_status(self.block_status())
        if self.selected_block() == block_id:
            self._refresh_inspector()

    def block_status(self) -> dict[str, dict]:
        """Per-block status as the canvas shows it: the analysis, with panel flags as warnings."""
        status = palette_data.block_status(self.document.analysis)
        for bid, message in self._block_flags.items():
            if bid in status and not status[bid]["error"]:
                warning = status[bid]["warning"]
                status[bid]["warning"] = f"{warning}; {message}" if warning else message
        return status

    def selected_block(self) -> str | None:
        """The id of the one selected block, or None."""
        ids = self.canvas.selected_ids()
        return ids[0] if len(ids) == 1 else None

    def current_dataset(self) -> Dataset | None:
        """The loaded dataset of the project (host arrays), or None while none is loaded."""
        return self._dataset

    def trained_model(self) -> Model | None:
        """A CPU model with the project's trained weights, or None when it has none that fit."""
        if not self.document.project.weights or not self.document.weights_fit():
            return None
        return self.document.project.build_model()

    @property
    def project(self) -> Project:
        return self.document.project

    # ----------------------------------------------------------------- menus
    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_action = self._action(file_menu, "&New", self.new_project, QKeySequence.New)
        self.open_action = self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.Open)
        self.examples_menu = file_menu.addMenu("Open &Example")
        self.examples_menu.aboutToShow.connect(self._fill_examples)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        self.save_action = self._action(file_menu, "&Save", self.save, QKeySequence.Save)
        self.save_as_action = self._action(file_menu, "Save &As…", self.save_as, QKeySequence.SaveAs)
        self.export_action = self._action(file_menu, "Export to &ONNX…", self.export_onnx)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence("Ctrl+Q"))

        edit = bar.addMenu("&Edit")
        self.undo_action = self.document.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.Undo)
        self.redo_action = self.document.undo_stack.createRedoAction(self, "&Redo")
        redo_keys = QKeySequence.keyBindings(QKeySequence.Redo)
        redo_keys += [k for k in (QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")) if k not in redo_keys]
        self.redo_action.setShortcuts(redo_keys)
        edit.addAction(self.undo_action)
        edit.addAction(self.redo_action)
        edit.addSeparator()
        self.cut_action = self._action(edit, "Cu&t", self.cut, QKeySequence.Cut)
        self.copy_action = self._action(edit, "&Copy", self.copy, QKeySequence.Copy)
        self.paste_action = self._action(edit, "&Paste", self.paste, QKeySequence.Paste)
        self.delete_action = self._action(edit, "&Delete", self.canvas.request_delete)
        self.delete_action.setShortcuts([QKeySequence(QKeySequence.Delete), QKeySequence(Qt.Key_Backspace)])
        self.select_all_action = self._action(edit, "Select &All", self.canvas.select_all, QKeySequence.SelectAll)
        edit.addSeparator()
        self.layout_action = self._action(edit, "Auto &Layout", self.document.auto_layout, QKeySequence("Ctrl+L"))
        self.fit_action = self._action(edit, "&Fit to View", self.canvas.fit_to_view, QKeySequence("Ctrl+0"))
        for action in (self.cut_action, self.copy_action, self.paste_action, self.delete_action,
                       self.select_all_action):
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.canvas.addAction(action)

        self.view_menu = bar.addMenu("&View")
        self._action(self.view_menu, "Restore Default Layout", self.restore_default_layout)
        self.view_menu.addSeparator()
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About GateScope", self.about)

    def _action(self, menu: QMenu, text: str, slot: Callable, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        return action

    def _fill_examples(self) -> None:
        from gatescope.assets import example_names, example_path
        self.examples_menu.clear()
        names = example_names()
        if not names:
            self.examples_menu.addAction("(no examples installed)").setEnabled(False)
        for name in names:
            self.examples_menu.addAction(name, lambda n=name: self.open_path(example_path(n), as_example=True))

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember_recent(self, path: Path) -> None:
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("recent_files", recent[:MAX_RECENT])

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = [p for p in self.recent_files() if Path(p).exists()]
        if not recent:
            self.recent_menu.addAction("(none yet)").setEnabled(False)
        for path in recent:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_path(p)).setToolTip(path)

    # ----------------------------------------------------------------- signal wiring
    def _connect(self) -> None:
        doc = self.document
        doc.changed.connect(self._on_graph_changed)
        doc.modifiedChanged.connect(self._on_modified_changed)
        self.canvas.blockDropped.connect(self._on_block_dropped)
        self.canvas.wireRequested.connect(doc.connect_blocks)
        self.canvas.blocksMoved.connect(doc.move)
        self.canvas.deleteRequested.connect(doc.remove)
        self.canvas.selectionChanged.connect(self._on_selection_changed)
        self.palette.blockActivated.connect(self._on_palette_activated)
        self.inspector.settingEdited.connect(doc.set_setting)
        self.training_panel.settingEdited.connect(self._on_training_setting)
        self.training_panel.trainRequested.connect(self.start_training)
        self.training_panel.pauseRequested.connect(self.pause_training)
        self.training_panel.resumeRequested.connect(self.resume_training)
        self.training_panel.stopRequested.connect(self.stop_training)
        self.data_panel.datasetRequested.connect(self.choose_dataset)

    # ----------------------------------------------------------------- the project
    def _apply_project(self) -> None:
        """Show the document's project everywhere: graph, settings, history, layout, dataset."""
        project = self.project
        self._block_flags = {}
        self.canvas.select([])
        self._on_graph_changed()
        self.training_panel.set_settings(project.training.to_dict())
        self.training_panel.set_state("idle")
        done = project.trainer.get("epochs_done", 0) if project.weights else 0
        self.training_panel.set_progress(1 if done else 0, 1, f"Trained for {done} epochs." if done else "Ready.")
        self.curves.set_history(project.history, project.steps_per_epoch)
        if len(project.step_numbers):
            self.curves.add_steps(project.step_numbers, project.step_losses)
        self.confusion.set_matrix(None, [])
        state = project.panels.get(DOCK_STATE_KEY)
        if isinstance(state, str):
            try:
                self.restoreState(QByteArray(base64.b64decode(state.encode("ascii"))))
            except (ValueError, UnicodeEncodeError):
                log.warning("the project's panel layout could not be read; using the default layout")
        self._dataset = None
        self._dataset_ref = None
        self.data_panel.set_reference(project.dataset)
        self.choose_dataset(project.dataset, from_project=True)
        QTimer.singleShot(0, self.canvas.fit_to_view)
        self._update_title()
        self.projectChanged.emit(project)

    def _on_modified_changed(self, modified: bool) -> None:
        self._update_title()

    def _update_title(self) -> None:
        project = self.project
        name = project.path.name if project.path else (project.name or "untitled")
        self.setWindowTitle(f"{name}[*] — GateScope")  # Qt shows [*] as a star while modified
        self.setWindowModified(self.document.modified)

    def set_project(self, project: Project) -> None:
        """Replace the open project with ``project`` (no questions asked; see ``may_close_project``)."""
        self.document.set_project(project)
        self._paste_count = 0
        self._apply_project()

    def may_close_project(self) -> bool:
        """Ask before the open project goes: stop a run, save changes. False if the person cancels."""
        if self.run is not None:
            if not self.dialogs.ask_stop_training("Training is running. Stop it and keep the weights so far?"):
                return False
            self.stop_training_and_wait()
        if self.document.modified:
            name = self.project.path.name if self.project.path else "this untitled project"
            answer = self.dialogs.ask_save(f"Save the changes to {name}?")
            if answer == "cancel":
                return False
            if answer == "save" and not self.save():
                return False
        return True

    def new_project(self) -> None:
        """An empty project (digits as its dataset)."""
        if self.may_close_project():
            self._remove_autosave()
            self.set_project(Project())

    def open_dialog(self) -> None:
        path = self.dialogs.open_path()
        if path:
            self.open_path(path)

    def open_path(self, path, as_example: bool = False) -> bool:
        """Open the project at ``path``; a file that cannot be opened leaves the current project as it was.

        ``as_example``: opened as an untitled copy, so saving never overwrites the bundled example.
        """
        if not self.may_close_project():
            return False
        try:
            project = load_project(path)
        except ProjectError as exc:
            self.dialogs.error("Cannot open the project", str(exc))
            return False
        self._remove_autosave()
        if as_example:
            project.path = None
        else:
            self._remember_recent(Path(path))
        self.set_project(project)
        self.statusBar().showMessage(f"Opened {Path(path).name}", 5000)
        return True

    def save(self) -> bool:
        """Save to the project's file (asking for one if it has none). True when saved."""
        if self.project.path is None:
            return self.save_as()
        return self._save_to(self.project.path)

    def save_as(self) -> bool:
        suggested = str(self.project.path or Path.home() / f"{self.project.name or 'untitled'}{SUFFIX}")
        path = self.dialogs.save_path(suggested)
        return bool(path) and self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        self.project.panels[DOCK_STATE_KEY] = base64.b64encode(bytes(self.saveState())).decode("ascii")
        old_autosave = self.autosave_path()
        try:
            weights_kept = self.document.save(path)
        except ProjectError as exc:
            self.dialogs.error("Cannot save", str(exc))
            return False
        old_autosave.unlink(missing_ok=True)
        self._remove_autosave()
        self._remember_recent(Path(path))
        self._update_title()
        note = "" if weights_kept else " (without weights: the model changed since it was trained)"
        self.statusBar().showMessage(f"Saved {Path(path).name}{note}", 5000)
        return True

    # ----------------------------------------------------------------- autosave and recovery
    def autosave_path(self) -> Path:
        """Where this project is autosaved: beside its file, or in the app data folder when untitled."""
        if self.project.path is not None:
            return self.project.path.with_name(self.project.path.name + AUTOSAVE_SUFFIX)
        return self._untitled_autosave

    def autosave(self) -> Path | None:
        """Write the project to its autosave file when it has unsaved changes; the path written, or None."""
        if not self.document.modified:
            return None
        path = self.autosave_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.document.write_copy(path)
        except (ProjectError, OSError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 8000)
            return None
        self.statusBar().showMessage("Autosaved", 2000)
        return path

    def _remove_autosave(self) -> None:
        self.autosave_path().unlink(missing_ok=True)

    def recovery_candidates(self, opened: Path | None) -> list[Path]:
        """Autosaved copies left by a session that did not end cleanly."""
        found = sorted(self.autosave_dir.glob(f"*{SUFFIX}")) if self.autosave_dir.is_dir() else []
        if opened is not None:
            side = opened.with_name(opened.name + AUTOSAVE_SUFFIX)
            if side.exists() and (not opened.exists() or side.stat().st_mtime >= opened.stat().st_mtime):
                found.append(side)
        return found

    def offer_recovery(self, opened: Path | None = None) -> bool:
        """Offer autosaved copies; open the chosen one (marked unsaved). True if one was recovered."""
        candidates = self.recovery_candidates(opened)
        if not candidates:
            return False
        chosen = self.dialogs.offer_recovery(candidates)
        recovered = False
        if chosen is not None:
            try:
                project = load_project(chosen)
            except ProjectError as exc:
                self.dialogs.error("Cannot recover", str(exc))
            else:
                if chosen.name.endswith(AUTOSAVE_SUFFIX):
                    project.path = chosen.with_name(chosen.name[:-len(AUTOSAVE_SUFFIX)])
                else:
                    project.path = None
                    self._untitled_autosave = chosen
                self.set_project(project)
                self.document.mark_modified()
                recovered = True
        for path in candidates:
            if path != chosen:
                path.unlink(missing_ok=True)
        return recovered

    # ----------------------------------------------------------------- graph edits and selection
    def _on_block_dropped(self, block_type: str, pos: QPointF) -> None:
        block_id = self.document.add_block(block_type, pos.x(), pos.y())
        self.canvas.select([block_id])
        self.canvas.setFocus()

    def _on_palette_activated(self, block_type: str) -> None:
        centre = self.canvas.view_centre()
        n = len(self.project.graph.blocks)
        block_id = self.document.add_block(block_type, centre.x() - 100 + 20 * (n % 5), centre.y() - 40 + 20 * (n % 5))
        self.canvas.select([block_id])

    def _on_graph_changed(self) -> None:
        project, analysis = self.project, self.document.analysis
        self.canvas.set_graph(palette_data.canvas_blocks(project.graph, project.positions),
                              palette_data.canvas_wires(project.graph))
        self.canvas.set_status(self.block_status())
        self._refresh_inspector()
        errors = analysis.errors()
        self.params_label.setText(f"{analysis.total_params:,} parameters" +
                                  (f" · {len(errors)} problem{'s' if len(errors) > 1 else ''}" if errors else ""))
        self._refresh_train_blocker()
        self.graphAnalysed.emit(analysis)

    def _on_selection_changed(self, ids: list) -> None:
        self._refresh_inspector()
        self.selectionChanged.emit(list(ids))
        self.blockSelected.emit(ids[0] if len(ids) == 1 else "")

    def _refresh_inspector(self) -> None:
        ids = self.canvas.selected_ids()
        analysis = self.document.analysis
        if len(ids) != 1:
            text = palette_data.model_summary(analysis)
            if len(ids) > 1:
                text = f"{len(ids)} blocks selected.\n\n" + text
            self.inspector.show_nothing(text)
            return
        block = self.project.graph.block(ids[0])
        self.inspector.show_block(block.id, block.type, palette_data.block_summary(block.type),
                                  palette_data.block_fields(block.type), block.settings)
        status = self.block_status().get(block.id, {})
        self.inspector.show_result(status.get("shape", ""), status.get("params", ""), status.get("formula", ""),
                                   status.get("error"), status.get("warning"))

    def _refresh_train_blocker(self) -> None:
        if self.run is None:
            self.training_panel.set_blocked(self.train_blocker())

    def train_blocker(self) -> str | None:
        """Why Train cannot be pressed now (the first problem), or None."""
        analysis = self.document.analysis
        first = analysis.first_error()
        if first:
            return first
        if self._dataset is None:
            return None if self._dataset_ref is not None else "no dataset is loaded; choose one in the Data panel"
        shape = tuple(self._dataset.sample_shape)
        wanted = analysis.info[analysis.input_id].out_shape
        if tuple(wanted) != shape:
            return (f"the dataset's samples have shape {list(shape)} but the Input block expects {list(wanted)}; "
                    f"set the Input shape to {', '.join(map(str, shape))}")
        if analysis.task != self._dataset.task:
            return (f"the dataset is for {self._dataset.task} but the model ends in a {analysis.task} block")
        return None

    # ----------------------------------------------------------------- clipboard
    def copy(self) -> None:
        payload = self.document.copy_payload(self.canvas.selected_ids())
        if not payload:
            return
        mime = QMimeData()
        mime.setData(CLIPBOARD_MIME, QByteArray(payload.encode("utf-8")))
        mime.setText(payload)
        QApplication.clipboard().setMimeData(mime)
        _release_clipboard_at_exit()
        self._paste_count = 0

    def cut(self) -> None:
        ids = self.canvas.selected_ids()
        if ids:
            self.copy()
            self.document.remove(ids)

    def paste(self) -> None:
        mime = QApplication.clipboard().mimeData()
        if mime is None or not mime.hasFormat(CLIPBOARD_MIME):
            return
        self._paste_count += 1
        offset = 40.0 * self._paste_count
        ids = self.document.paste(bytes(mime.data(CLIPBOARD_MIME)).decode("utf-8"), (offset, offset))
        if ids:
            self.canvas.select(ids)

    # ----------------------------------------------------------------- data
    def choose_dataset(self, ref: dict, from_project: bool = False) -> None:
        """Load the dataset ``ref`` on a worker thread; the panel shows it or says why it cannot."""
        resolved = dataset_reference(replace(self.project, dataset=dict(ref)))
        self._load_token += 1
        self.evaluating_saved = False
        self._pending_ref = (dict(ref), from_project)
        if from_project:
            self._dataset_ref = dict(ref)  # Train may start meanwhile: the run loads it itself
        self.data_panel.set_busy(True)
        self.loader.load(self._load_token, resolved)

    def _on_dataset_loaded(self, token: int, dataset: Dataset | None, error: str) -> None:
        if token != self._load_token:
            return  # a newer choice was made meanwhile
        ref, from_project = self._pending_ref
        self.data_panel.set_busy(False)
        if dataset is None:
            self.data_panel.show_error(error)
            if from_project:
                self._dataset_ref = None
                self._refresh_train_blocker()
            return
        settings = self.project.training
        try:
            split = dataset_split(dataset, settings.val_fraction, settings.test_fraction, settings.seed)
        except DataError as exc:
            self.data_panel.show_error(str(exc))
            return
        n_test = len(dataset.x_test) if dataset.x_test is not None else len(split.test)
        summary, samples, labels = palette_data.dataset_view(dataset, len(split.train), len(split.val), n_test)
        self.data_panel.show_dataset(summary, samples, labels)
        self._dataset, self._dataset_ref = dataset, ref
        if not from_project and ref != self.project.dataset:
            self.project.dataset = ref
            self.document.mark_modified()
        self._refresh_train_blocker()
        if (self.project.weights and self.train_blocker() is None and self.run is None
                and dataset.task == "classification" and self.document.weights_fit()):
            saved = replace(self.project, graph=copy.deepcopy(self.project.graph),
                            weights={k: v.copy() for k, v in self.project.weights.items()})
            self.evaluating_saved = True
            self.loader.evaluate_saved(token, saved, dataset)
        self.datasetLoaded.emit(dataset)

    def _on_saved_confusion(self, token: int, matrix) -> None:
        if token == self._load_token:
            self.evaluating_saved = False
        if matrix is not None and token == self._load_token and self.run is None and self._dataset is not None:
            self.confusion.set_matrix(matrix, list(self._dataset.class_names))

    # ----------------------------------------------------------------- training
    def _on_training_setting(self, name: str, value: Any) -> None:
        current = self.project.training.to_dict()
        current[name] = value
        try:
            settings = TrainSettings.from_dict(current)
        except ValueError as exc:
            self.training_panel.set_message(str(exc))
            return
        self.project.training = settings
        self.document.mark_modified()
        if name == "device":
            self._show_device()

    def _show_device(self) -> None:
        try:
            device = select_device(self.project.training.device)
        except DeviceError as exc:
            self.device_label.setText("Device: unavailable")
            self.device_label.setToolTip(str(exc))
            self.device_label.setStyleSheet(f"color: {ERROR};")
            return
        self.device_label.setText(f"Device: {device.description}")
        self.device_label.setToolTip(device.reason)
        self.device_label.setStyleSheet("")

    @property
    def training(self) -> bool:
        return self.run is not None

    def start_training(self) -> bool:
        """Start a run of ``epochs`` epochs on a worker thread. False (with the reason shown) if it cannot."""
        if self.run is not None:
            return False
        reason = self.train_blocker()
        if reason:
            self.training_panel.set_blocked(reason)
            return False
        try:
            select_device(self.project.training.device)
        except DeviceError as exc:
            self.training_panel.set_message(str(exc))
            self.statusBar().showMessage(str(exc), 8000)
            return False
        project = self.project
        keep = bool(project.weights) and self.document.weights_fit()
        job = TrainingJob(graph=copy.deepcopy(project.graph), settings=replace(project.training),
                          dataset_ref=dataset_reference(project), epochs=project.training.epochs,
                          weights={k: v.copy() for k, v in project.weights.items()} if keep else {},
                          state=project.train_state() if keep else None, dataset=self._dataset,
                          model_hooks=list(self.model_hooks))
        if not keep:
            self.curves.clear()
            self.confusion.set_matrix(None, [])
        self.run = TrainingRun(job, self)
        worker = self.run.worker
        worker.started.connect(self._on_run_started, Qt.QueuedConnection)
        worker.steps.connect(self._on_run_steps, Qt.QueuedConnection)
        worker.epoch.connect(self._on_run_epoch, Qt.QueuedConnection)
        worker.ended.connect(self._on_run_ended, Qt.QueuedConnection)
        self._run_started = time.perf_counter()
        self._run_info = {}
        self.training_panel.set_state("running")
        self.training_panel.set_progress(0, 1, "Starting…")
        self.run.start()
        return True

    def pause_training(self) -> None:
        if self.run is not None:
            self.run.pause()
            self.training_panel.set_state("paused")
            self.training_panel.set_message("Paused. Resume goes on from the same step.")

    def resume_training(self) -> None:
        if self.run is not None:
            self.run.resume()
            self.training_panel.set_state("running")

    def stop_training(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.training_panel.set_message("Stopping after this step…")

    def stop_training_and_wait(self, timeout_ms: int = 60000) -> None:
        """Stop the run, wait for its thread, and take in its weights (used before closing)."""
        if self.run is None:
            return
        run = self.run
        run.stop()
        run.wait(timeout_ms)
        QApplication.sendPostedEvents()  # the worker's last queued signals: keep its weights
        QApplication.processEvents()

    def _on_run_started(self, info: dict) -> None:
        self._run_info = dict(info)
        self.curves.set_steps_per_epoch(int(info["steps_per_epoch"]))
        self.statusBar().showMessage(f"Training on the {info['device_description']}", 5000)
        if info.get("note"):
            self.training_panel.set_message(info["note"])
        self.trainingStarted.emit(info)

    def _on_run_steps(self, payload: dict) -> None:
        self.curves.add_steps(payload["global_steps"], payload["losses"])
        last, info = payload["last"], self._run_info
        steps, epochs = int(info.get("steps_per_epoch", 1)), int(info.get("epochs", 1))
        done = (last["epoch"] - info.get("first_epoch", 0)) * steps + last["step"] + 1
        total = max(1, steps * epochs)
        elapsed = time.perf_counter() - self._run_started
        eta = elapsed / max(done, 1) * (total - done)
        self.training_panel.set_progress(
            done, total, f"epoch {last['epoch'] + 1}, step {last['step'] + 1}/{steps} · loss {last['loss']:.4f} · "
                         f"{last['samples_per_s']:,.0f} samples/s · ETA {format_duration(eta)}")
        self._last_step_payload = payload
        self.trainingStep.emit(payload)

    def _on_run_epoch(self, record: dict) -> None:
        # One epoch dirties several views (loss and accuracy plots, the confusion matrix, the
        # panels that follow trainingEpoch). Done and painted in one event-loop pass they stalled
        # the GUI for 70-100 ms; each is its own pass instead, so input and timers get in between.
        curve_record = {k: v for k, v in record.items() if k not in ("confusion", "class_names")}
        self.curves.add_epoch(curve_record, plots=("loss",))
        self._stage("accuracy", lambda: self.curves.redraw_plots(("accuracy",)))
        if record.get("confusion") is not None:
            matrix, names = record["confusion"], record.get("class_names", [])
            # Keyed: a newer epoch's matrix replaces one not yet shown.
            self._stage("confusion", lambda: self.confusion.set_matrix(matrix, names))
        self._stage(("epoch", object()), lambda: self.trainingEpoch.emit(record))

    def _stage(self, key: Any, update: Callable[[], None]) -> None:
        """Run ``update`` in a later event-loop pass, one staged update per pass (``STAGE_GAP_MS``
        apart, so each one's repaint is a pass of its own), in order;
        a pending update with the same ``key`` is replaced (it would be superseded anyway)."""
        self._staged.pop(key, None)
        self._staged[key] = update
        if not self._staged_scheduled:
            self._staged_scheduled = True
            QTimer.singleShot(STAGE_GAP_MS, self, self._run_staged)

    def _run_staged(self) -> None:
        self._staged_scheduled = False
        if not self._staged:
            return
        key = next(iter(self._staged))
        update = self._staged.pop(key)
        if self._staged:
            self._staged_scheduled = True
            QTimer.singleShot(STAGE_GAP_MS, self, self._run_staged)
        update()

    def _flush_staged(self) -> None:
        """Run every staged update now (a run ended: its last epoch shows before trainingEnded)."""
        while self._staged:
            key = next(iter(self._staged))
            self._staged.pop(key)()

    def _on_run_ended(self, kind: str, message: str, result: object) -> None:
        self._flush_staged()
        run, self.run = self.run, None
        if run is not None:
            run.wait(5000)
            run.deleteLater()
        if isinstance(result, dict):
            self.project.take_train_state(result["state"], result["weights"])
            self.document.mark_modified()
        self.training_panel.set_state("idle")
        self._refresh_train_blocker()
        seconds = time.perf_counter() - self._run_started
        if kind == "failed":
            self.training_panel.set_message(f"Training failed: {message}")
            self.statusBar().showMessage(f"Training failed: {message}", 10000)
        else:
            done = self.project.trainer.get("epochs_done", 0)
            self.training_panel.set_progress(1 if kind == "finished" else 0, 1,
                                             f"{message[:1].upper()}{message[1:]} after {format_duration(seconds)}; "
                                             f"{done} epochs trained in all.")
        self.trainingEnded.emit(kind, message)

    # ----------------------------------------------------------------- other commands
    def export_onnx(self) -> None:
        """Export the trained model to ONNX (studio.export_onnx), with a clear message when it cannot."""
        try:
            from gatescope.studio.export_onnx import ExportError, export_project
        except ImportError as exc:
            self.dialogs.error("Export to ONNX", f"ONNX export is not available in this installation: {exc}")
            return
        stem = self.project.path.stem if self.project.path else (self.project.name or "model")
        path = self.dialogs.export_path(str(Path.home() / f"{stem}.onnx"))
        if not path:
            return
        try:
            export_project(self.project, path)
        except (ImportError, ExportError) as exc:
            self.dialogs.error("Export to ONNX", str(exc))
            return
        self.statusBar().showMessage(f"Exported {Path(path).name}", 5000)

    def about(self) -> None:
        try:
            device = select_device(self.project.training.device).description
        except DeviceError as exc:
            device = f"unavailable ({exc})"
        self.dialogs.info("About GateScope",
                          f"GateScope {__version__}\n\nA playground for convolutional and recurrent networks: "
                          f"build, train and look inside.\n\nComputing on: {device}")

    def restore_default_layout(self) -> None:
        self.restoreState(self._default_dock_state)
        for dock in self.panels.values():
            dock.show()
        self._size_default_docks()

    def _size_default_docks(self) -> None:
        """The default share of each dock area (palette, inspector over training, curves beside
        the confusion matrix)."""
        self.resizeDocks([self.panels["Blocks"]], [200], Qt.Horizontal)
        self.resizeDocks([self.panels["Inspector"]], [330], Qt.Horizontal)
        self.resizeDocks([self.panels["Curves"], self.panels["Confusion matrix"]], [880, 380], Qt.Horizontal)
        self.resizeDocks([self.panels["Curves"]], [300], Qt.Vertical)
        self.resizeDocks([self.panels["Inspector"], self.panels["Training"]], [240, 480], Qt.Vertical)

    def showEvent(self, event) -> None:
        """On first show, size the docks again: before a window is on screen Qt gives the
        inspector only what the training form leaves over."""
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not isinstance(self.project.panels.get(DOCK_STATE_KEY), str):
                QTimer.singleShot(0, self._size_default_docks)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self.may_close_project():
            event.ignore()
            return
        self.autosave_timer.stop()
        self._remove_autosave()
        for controller in (self.inside, self.video):
            if controller is not None:
                controller.shutdown()
        event.accept()


# ----------------------------------------------------------------------------- entry point
class QuietDialogs(Dialogs):
    """For the offscreen screenshot: messages go to the log, questions take the safe answer."""

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

    def show_exception(self, summary: str, details: str) -> None:
        log.error("unexpected error: %s\n%s", summary, details)


def initial_project_path(file: str | os.PathLike | None) -> Path | None:
    """``file`` itself, else the bundled digits-cnn example, else the first example, else None."""
    if file:
        return Path(file)
    from gatescope.assets import example_names, example_path
    if example_path(DEFAULT_EXAMPLE).exists():
        return example_path(DEFAULT_EXAMPLE)
    names = example_names()
    return example_path(names[0]) if names else None


_clipboard_release_registered = False


def _release_clipboard_at_exit() -> None:
    """Empty the clipboard before the interpreter shuts down.

    Qt frees mime data left on the clipboard while Python tears its wrapper down, and the
    process dies with a segmentation fault at exit (seen with PySide6 6.11 offscreen).
    """
    global _clipboard_release_registered
    if _clipboard_release_registered:
        return
    _clipboard_release_registered = True

    def release() -> None:
        app = QApplication.instance()
        if app is not None:
            app.clipboard().clear()
    atexit.register(release)


def install_exception_hook(window: MainWindow) -> None:
    """Unexpected exceptions in the GUI thread: logged and shown with details; the app keeps running."""
    def hook(exc_type, exc, tb) -> None:
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error:\n%s", details)
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        try:
            window.dialogs.show_exception(f"{exc_type.__name__}: {exc}", details)
        except Exception:  # noqa: BLE001 - never let the hook itself crash the app
            log.error("could not show the error dialog:\n%s", traceback.format_exc())
    sys.excepthook = hook


def run_app(file: str | os.PathLike | None = None, screenshot: str | os.PathLike | None = None) -> int:
    """Open the main window on ``file`` (default: the bundled example) and run until it closes.

    With ``screenshot``: build the window offscreen at a fixed size, render it to that PNG
    and return 0 without showing anything or asking anything.
    """
    if screenshot is not None and QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GateScope")
    app.setOrganizationName("GateScope")
    apply_dark_theme(app)
    window = MainWindow(dialogs=QuietDialogs(None) if screenshot is not None else None)
    path = initial_project_path(file)
    if path is not None and not window.open_path(path, as_example=file is None):
        if file is not None:
            return 1
    if screenshot is not None:
        return _screenshot(app, window, Path(screenshot))
    install_exception_hook(window)
    show_at_size(window)
    window.offer_recovery(path if file else None)
    return app.exec()


def wait_until_settled(window: MainWindow, timeout_s: float = 10.0) -> bool:
    """Process events until the window has nothing on its way: the dataset loaded (or refused),
    the saved model's confusion matrix computed, the inside panels filled. False on timeout."""
    app = QApplication.instance()
    deadline = time.perf_counter() + timeout_s

    def settled() -> bool:
        loaded = window.data_panel.summary.text() not in ("", "Loading…")
        evaluated = not window.evaluating_saved
        looked_inside = window.inside is None or not window.inside.busy
        return loaded and evaluated and looked_inside

    while not settled():
        if time.perf_counter() > deadline:
            return False
        app.processEvents()
        time.sleep(0.01)
    for _ in range(5):
        app.processEvents()
    return True


def show_at_size(window: MainWindow, size: tuple[int, int] = SCREENSHOT_SIZE) -> None:
    """Show the window at ``size``. (Before it is first shown, the dock layout can hold the
    window taller than asked, so the size is set again once it is on screen.)"""
    window.resize(*size)
    window.show()
    QApplication.processEvents()
    window.resize(*size)


def _screenshot(app: QApplication, window: MainWindow, out: Path) -> int:
    show_at_size(window)
    wait_until_settled(window)
    window.canvas.fit_to_view()
    app.processEvents()
    ok = window.grab().save(str(out))
    window.close()
    return 0 if ok else 1
