"""The main window and the GUI entry point ``run_app``.

The window arranges views (``studio.views``): Build, Train, Inside, Video, Compare, one click (or
Ctrl+1 to Ctrl+5) apart in the tool bar, beside the run controls that work from every view.
The policies live in controllers that can be tested without it: files and autosave
(``studio.files``), training runs (``studio.training_control``), the dataset
(``studio.data_control``). The inside-the-network panels (``studio.inside``) and the video
panel (``studio.video``) are installed through the same hooks colleagues use:
``MainWindow.add_panel``, ``add_model_hook`` and the window's signals (see the class docstring).
"""
from __future__ import annotations

import atexit
import copy
import logging
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from PySide6.QtCore import QByteArray, QMimeData, QPointF, QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QApplication, QFrame, QLabel, QMainWindow, QMenu, QScrollArea, QToolBar, QWidget

from gatescope.compute.backend import DeviceError, select_device
from gatescope.compute.datasets import Dataset, DataError
from gatescope.compute.datasets.files import LOADER_OPTIONS, detect_format
from gatescope.compute.graph import Model, input_problem
from gatescope.compute.train import TrainSettings, dataset_split, fit_problem
from gatescope.studio import __version__, palette_data
from gatescope.studio import help as help_pages
from gatescope.studio.data_control import DataController, describe_source
from gatescope.studio.compare_view import CompareController, install_compare
from gatescope.studio.dialogs import Dialogs
from gatescope.studio.document import Document
from gatescope.studio.files import FilesController
from gatescope.studio.inside import InsideController, install_inside_panels
from gatescope.studio.project import Project
from gatescope.studio.session import dataset_reference
from gatescope.studio.staging import StagedUpdates
from gatescope.studio.training_control import TrainingController, progress_of
from gatescope.studio.training_run import TrainingJob
from gatescope.studio.video import VideoController, install_video_panel
from gatescope.studio.views import CENTRE, ViewHost
from gatescope.studio.worker import Worker
from gatescope.studio.viewspec import VIEW_KEYS, VIEWS
from gatescope.studio.wording import format_duration, plural
from gatescope.widgets.canvas import ModelCanvas
from gatescope.widgets.curves import ConfusionMatrixView, CurvesPanel
from gatescope.widgets.data_panel import DataPanel
from gatescope.widgets.inspector import Inspector
from gatescope.widgets.palette import BlockPalette
from gatescope.widgets.run_controls import RunControls
from gatescope.widgets.sample_gallery import EMPTY as NO_CELL_CHOSEN
from gatescope.widgets.sample_gallery import SampleGallery
from gatescope.widgets.theme import ERROR, apply_dark_theme
from gatescope.widgets.training_panel import TrainingPanel

log = logging.getLogger(__name__)

CLIPBOARD_MIME = "application/x-gatescope-blocks"
DEFAULT_SIZE = (1500, 950)
DEFAULT_EXAMPLE = "digits-cnn"
LAYOUTS_KEY = "views"            # project.panels: every view's dock arrangement
CURVES_X_KEY = "curves_x_axis"   # project.panels: the curves' x axis, "epoch" or "step"
VIEW_SETTING = "view"            # QSettings: the view shown last
PASTE_STEP = 40.0
LOCKED_MESSAGE = "Training: the model is locked while it trains. Stop the run to change it."
PREPARING_KERNELS = ("Preparing the CPU kernels (the first start after an install compiles them; "
                     "you can build and train meanwhile)…")
SAMPLES_SHOWN = 24             # samples of a confusion-matrix cell drawn at once


class MainWindow(QMainWindow):
    """GateScope's main window.

    Hooks for panels written elsewhere:
      ``add_panel(name, widget, view, area)`` adds a panel to a view (a dock with an entry in
      the View menu, or a central tab with ``area="centre"``); its layout is saved in the
      project with the others. ``raise_panel(name)`` brings it to the front of its tabs.
      ``add_model_hook(fn)``: ``fn(model)`` runs on the training thread after the model is built
      and before the first step (turn on probes, pin gates there; keep it quick).
      ``selected_block()``, ``current_dataset()``, ``trained_model()``, ``document.project``.
      ``set_block_flag(block_id, message)`` marks a block on the canvas with a warning from a
      panel (the gate health's stuck gates, say); an empty message clears it.

    With ``extra_panels`` (the default) the window installs the inside-the-network panels
    (``self.inside``, a ``studio.inside.InsideController``), the video panel (``self.video``,
    a ``studio.video.VideoController``) and the Compare view (``self.compare``, a
    ``studio.compare_view.CompareController``).

    Signals:
      ``projectChanged(object)``: a project was opened or created (the Project).
      ``graphAnalysed(object)``: after every edit, the fresh ``compute.graph.Analysis``.
      ``selectionChanged(list)``: selected block ids; ``blockSelected(str)``: the one selected
      block id, or '' when none or several are selected.
      ``datasetLoaded(object)``: the Dataset now in use.
      ``trainingStarted(dict)``, ``trainingStep(dict)`` (coalesced steps, at most 25/s, with
      ``probes`` as host NumPy arrays when recorded), ``trainingEpoch(dict)``,
      ``trainingEnded(str kind, str message)``.
      ``viewChanged(str)``: another view is shown (``build``, ``train``, ``inside``, ``video``, ``compare``).
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
    viewChanged = Signal(str)

    def __init__(self, settings: QSettings | None = None, dialogs: Any = None, autosave_dir: Path | None = None,
                 extra_panels: bool = True):
        super().__init__()
        self.settings = settings or QSettings("GateScope", "GateScope")
        self.dialogs = dialogs or Dialogs(self)
        self.document = Document(parent=self)
        self.model_hooks: list[Callable[[Model], None]] = []
        self._block_flags: dict[str, str] = {}
        self._paste_count = 0
        self._run_started = 0.0
        self.inside: InsideController | None = None
        self.video: VideoController | None = None
        self.compare: CompareController | None = None
        self.new_from_data_controller = None   # File > New from Data…, made when first asked for
        self.val_predictions = None      # of the newest evaluation, per validation sample
        self.setWindowTitle("GateScope")

        self.training_control = TrainingController(self)
        self.data = DataController(self)
        autosave_dir = Path(autosave_dir) if autosave_dir else Path(
            QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "autosave"
        self.files = FilesController(self.document, self.dialogs, self.settings, autosave_dir,
                                     may_close=self._may_close_run, store_layout=self._store_layout,
                                     show_status=self.statusBar().showMessage, parent=self)
        # One event-loop pass per epoch-end view update (see studio.staging).
        self.staged = StagedUpdates(self)

        self.views = ViewHost()
        self.setCentralWidget(self.views)
        self.canvas = ModelCanvas()
        self.palette = BlockPalette()
        self.palette.set_blocks(palette_data.palette_blocks(), palette_data.categories())
        self.inspector = Inspector()
        self.data_panel = DataPanel()
        self.data_panel.set_sources(palette_data.dataset_sources())
        self.data_panel.set_formats(LOADER_OPTIONS, detect_format)
        self.training_panel = TrainingPanel(palette_data.training_fields())
        self.run_controls = RunControls()
        self.curves = CurvesPanel()
        self.confusion = ConfusionMatrixView()

        self._build_menus()
        self._build_toolbar()
        self.add_panel("Model", self.canvas, "build", CENTRE)
        self.add_panel("Blocks", self.palette, "build", "left")
        self.add_panel("Inspector", self.inspector, "build", "right")
        self.add_panel("Curves", self.curves, "train", CENTRE)
        self.add_panel("Training", self.training_panel, "train", "left")
        data_scroll = QScrollArea()  # the sample pictures need room; the dock may be shorter
        data_scroll.setWidgetResizable(True)
        data_scroll.setFrameShape(QFrame.NoFrame)
        data_scroll.setWidget(self.data_panel)
        self.add_panel("Data", data_scroll, "train", "left")
        self.add_panel("Confusion matrix", self.confusion, "train", "right")
        self.samples = SampleGallery()
        self.add_panel("Samples", self.samples, "train", "right")
        if extra_panels:
            self.inside = install_inside_panels(self)
            self.video = install_video_panel(self)
            self.compare = install_compare(self)
        self.views.arrange()

        self.device_label = QLabel()
        self.params_label = QLabel()
        self.statusBar().addPermanentWidget(self.params_label)
        self.statusBar().addPermanentWidget(self.device_label)

        self._connect()
        self._on_run_state("idle")
        self._show_device()
        remembered = self.settings.value(VIEW_SETTING, "build")
        self.show_view(remembered if remembered in VIEW_KEYS else "build")
        self._apply_project()

    # ----------------------------------------------------------------- panels and views
    @property
    def panels(self) -> dict[str, QWidget]:
        """Panel name -> its widget, in every view."""
        return self.views.panels

    def add_panel(self, name: str, widget: QWidget, view: str = "inside", area: str = "right"):
        """Put ``widget`` into ``view`` as panel ``name`` (see ``studio.views.ViewHost.add_panel``),
        with an entry in the View menu for a dock. Returns the dock (None for a central tab)."""
        dock = self.views.add_panel(view, name, widget, area)
        if dock is not None:
            self._panel_menus[view].addAction(dock.toggleViewAction())
        return dock

    def raise_panel(self, name: str) -> None:
        """Bring panel ``name`` to the front of its tab group (in its own view)."""
        self.views.raise_panel(name)

    def show_view(self, key: str) -> None:
        """Show view ``key`` (``build``, ``train``, ``inside``, ``video``) and remember it."""
        self.views.show_view(key)
        self._view_actions[key].setChecked(True)
        self.settings.setValue(VIEW_SETTING, key)

    @property
    def current_view(self) -> str:
        return self.views.current

    def restore_default_layout(self) -> None:
        """View > Reset layout: every view as it was arranged by default."""
        self.views.reset()

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
        return self.data.dataset

    def trained_model(self) -> Model | None:
        """A CPU model with the project's trained weights, or None when it has none that fit."""
        if not self.document.project.weights or not self.document.weights_fit():
            return None
        return self.document.project.build_model()

    @property
    def project(self) -> Project:
        return self.document.project

    @property
    def training(self) -> bool:
        return self.training_control.running

    # ----------------------------------------------------------------- menus and tool bar
    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_action = self._action(file_menu, "&New", self.new_project, QKeySequence.New)
        self.new_from_data_action = self._action(file_menu, "New from &Data…", self.new_from_data)
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
        self.layout_action = self._action(edit, "Auto &Layout", self.auto_layout, QKeySequence("Ctrl+L"))
        self.fit_action = self._action(edit, "&Fit to View", self.canvas.fit_to_view, QKeySequence("Ctrl+0"))
        self.zoom_in_action = self._action(edit, "Zoom &In", lambda: self.canvas.zoom_by(1.25), QKeySequence.ZoomIn)
        self.zoom_in_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.ZoomIn) + [QKeySequence("Ctrl+=")])
        self.zoom_out_action = self._action(edit, "Zoom O&ut", lambda: self.canvas.zoom_by(0.8), QKeySequence.ZoomOut)
        self.graph_actions = (self.cut_action, self.paste_action, self.delete_action, self.layout_action)
        for action in (self.cut_action, self.copy_action, self.paste_action, self.delete_action,
                       self.select_all_action):
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.canvas.addAction(action)

        run = bar.addMenu("&Run")
        self.train_action = self._action(run, "&Train", self.start_training, QKeySequence("F5"))
        self.pause_action = self._action(run, "&Pause", self.pause_training, QKeySequence("F6"))
        self.resume_action = self._action(run, "&Resume", self.resume_training, QKeySequence("F7"))
        self.stop_action = self._action(run, "&Stop", self.stop_training, QKeySequence("Shift+F5"))

        self.view_menu = bar.addMenu("&View")
        self._view_group = QActionGroup(self)
        self._view_actions: dict[str, QAction] = {}
        for spec in VIEWS:
            action = self._action(self.view_menu, spec.title, lambda key=spec.key: self.show_view(key),
                                  QKeySequence(spec.shortcut))
            action.setCheckable(True)
            action.setStatusTip(spec.tip)
            action.setToolTip(f"{spec.tip} ({spec.shortcut})")
            self._view_group.addAction(action)
            self._view_actions[spec.key] = action
        self.view_menu.addSeparator()
        self._panel_menus: dict[str, QMenu] = {}
        for spec in VIEWS:
            self._panel_menus[spec.key] = self.view_menu.addMenu(f"{spec.title} panels")
        self.view_menu.addSeparator()
        self.reset_layout_action = self._action(self.view_menu, "&Reset Layout", self.restore_default_layout)
        self.help_menu = bar.addMenu("&Help")
        self.getting_started_action = self._action(self.help_menu, "&Getting Started", self.getting_started,
                                                   QKeySequence.HelpContents)
        self.shortcuts_action = self._action(self.help_menu, "&Keyboard Shortcuts", self.keyboard_shortcuts)
        self.help_menu.addSeparator()
        self._action(self.help_menu, "&About GateScope", self.about)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Views")
        bar.setObjectName("workspaces")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.setToolButtonStyle(Qt.ToolButtonTextOnly)
        for spec in VIEWS:
            bar.addAction(self._view_actions[spec.key])
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().horizontalPolicy().Expanding,
                             spacer.sizePolicy().verticalPolicy().Preferred)
        bar.addWidget(spacer)
        bar.addWidget(self.run_controls)
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.toolbar = bar

    def _action(self, menu: QMenu, text: str, slot: Callable, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        return action

    def _fill_examples(self) -> None:
        """Each bundled example with the first sentence of its description (all of it in the tooltip)."""
        from gatescope.assets import example_names, example_path
        self.examples_menu.clear()
        self.examples_menu.setToolTipsVisible(True)
        names = example_names()
        if not names:
            self.examples_menu.addAction("(no examples installed)").setEnabled(False)
        for name in names:
            description = help_pages.example_description(example_path(name))
            text = f"{name} — {help_pages.first_sentence(description)}" if description else name
            action = self.examples_menu.addAction(text, lambda n=name: self.open_path(example_path(n), as_example=True))
            action.setToolTip(description)
            action.setStatusTip(description)

    def recent_files(self) -> list[str]:
        return self.files.recent_files()

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
        doc.modifiedChanged.connect(lambda _modified: self._update_title())
        self.canvas.blockDropped.connect(self._on_block_dropped)
        self.canvas.wireRequested.connect(self._on_wire_requested)
        self.canvas.blocksMoved.connect(doc.move)
        self.canvas.deleteRequested.connect(self._on_delete_requested)
        self.canvas.selectionChanged.connect(self._on_selection_changed)
        self.palette.blockActivated.connect(self._on_palette_activated)
        self.inspector.settingEdited.connect(doc.set_setting)
        self.inspector.useDataShapeRequested.connect(self.use_data_shape)
        self.training_panel.settingEdited.connect(self._on_training_setting)
        self.run_controls.trainRequested.connect(self.start_training)
        self.run_controls.pauseRequested.connect(self.pause_training)
        self.run_controls.resumeRequested.connect(self.resume_training)
        self.run_controls.stopRequested.connect(self.stop_training)
        self.data_panel.datasetRequested.connect(self.choose_dataset)
        self.curves.xAxisChanged.connect(self._on_curves_axis)
        self.confusion.cellClicked.connect(self.show_cell_samples)
        self.views.viewChanged.connect(self.viewChanged)
        self.files.projectLoaded.connect(self.set_project)
        runs = self.training_control
        runs.started.connect(self._on_run_started)
        runs.steps.connect(self._on_run_steps)
        runs.epoch.connect(self._on_run_epoch)
        runs.ended.connect(self._on_run_ended)
        runs.stateChanged.connect(self._on_run_state)
        runs.progressChanged.connect(self._on_run_progress)
        self.data.loaded.connect(self._on_dataset_loaded)
        self.data.failed.connect(self._on_dataset_failed)
        self.data.busyChanged.connect(self.data_panel.set_busy)
        self.data.savedConfusion.connect(self._on_saved_confusion)

    # ----------------------------------------------------------------- the project
    def _apply_project(self) -> None:
        """Show the document's project everywhere: graph, settings, history, layout, dataset."""
        project = self.project
        self._block_flags = {}
        self.canvas.select([])
        self._on_graph_changed()
        self.training_panel.set_settings(project.training.to_dict())
        self._show_trained_state()
        self.curves.set_task(self.document.analysis.task or "classification")
        self.curves.set_history(project.history, project.steps_per_epoch)
        if len(project.step_numbers):
            self.curves.add_steps(project.step_numbers, project.step_losses)
        axis = project.panels.get(CURVES_X_KEY)
        if axis in ("epoch", "step"):
            self.curves.set_x_axis(axis)
        self.confusion.set_task(self.document.analysis.task or "classification")
        self.confusion.set_matrix(None, [])
        self.samples.show_message(NO_CELL_CHOSEN)
        self.val_predictions = None
        if LAYOUTS_KEY in project.panels:       # else the arrangement the person has stays
            self.views.restore_layouts(project.panels[LAYOUTS_KEY])
        self.data.clear()
        self.data_panel.set_reference(dataset_reference(project))   # paths as they are read: absolute
        self.choose_dataset(project.dataset, from_project=True)
        QTimer.singleShot(0, self.canvas.fit_to_view)
        self._update_title()
        self.projectChanged.emit(project)

    def _show_trained_state(self) -> None:
        """The run controls and training panel as a project that just opened has them."""
        project = self.project
        done = project.trainer.get("epochs_done", 0) if project.weights else 0
        last = project.trainer.get("last_run") if isinstance(project.trainer.get("last_run"), dict) else {}
        fraction = progress_of(done, last.get("planned_epochs"))
        self.run_controls.set_state("idle")
        self.training_panel.set_locked(False)
        if done:
            planned = last.get("planned_epochs")
            label = f"{done} of {planned} epochs" if planned and planned > done else plural(done, "epoch")
            self.run_controls.set_progress(fraction, label)
            self.training_panel.set_message(f"Trained for {plural(done, 'epoch')}.")
        else:
            self.run_controls.set_progress(0.0, "Ready")
            self.training_panel.set_message("Ready: press Train (F5).")
        self.training_panel.set_result(describe_test_result(last.get("test")))

    def _update_title(self) -> None:
        project = self.project
        name = project.path.name if project.path else (project.name or "untitled")
        self.setWindowTitle(f"{name}[*] — GateScope")  # Qt shows [*] as a star while modified
        self.setWindowModified(self.document.modified)

    def _store_layout(self, project: Project) -> None:
        project.panels[LAYOUTS_KEY] = self.views.layouts()
        project.panels[CURVES_X_KEY] = self.curves.x_axis

    def set_project(self, project: Project) -> None:
        """Replace the open project with ``project`` (no questions asked; see ``may_close_project``)."""
        self.document.set_project(project)
        self._paste_count = 0
        self._apply_project()

    def _may_close_run(self) -> bool:
        if self.training_control.running:
            if not self.dialogs.ask_stop_training("Training is running. Stop it and keep the weights so far?"):
                return False
            self.stop_training_and_wait()
        return True

    def may_close_project(self) -> bool:
        """Ask before the open project goes: stop a run, save changes. False if the person cancels."""
        return self.files.may_close_project()

    def new_project(self) -> None:
        """An empty project that keeps the dataset in use (its paths made absolute)."""
        self.files.new_project(Project(dataset=dataset_reference(self.project)))

    def new_from_data(self) -> None:
        """File > New from Data…: the dialog that reads data and makes a project for it."""
        if self.new_from_data_controller is None:
            from gatescope.studio.new_from_data import NewFromData
            self.new_from_data_controller = NewFromData(self)
        self.new_from_data_controller.show()

    def open_dialog(self) -> None:
        self.files.open_dialog()

    def open_path(self, path, as_example: bool = False) -> bool:
        """Open the project at ``path``; a file that cannot be opened leaves the current project as it was."""
        return self.files.open_path(path, as_example=as_example)

    def save(self) -> bool:
        return self.files.save()

    def save_as(self) -> bool:
        return self.files.save_as()

    def autosave(self) -> Path | None:
        return self.files.autosave()

    def autosave_path(self) -> Path:
        return self.files.autosave_path()

    @property
    def autosave_timer(self) -> QTimer:
        return self.files.timer

    def offer_recovery(self, opened: Path | None = None) -> bool:
        return self.files.offer_recovery(opened)

    def prepare_kernels(self) -> None:
        """Compile the CPU kernels on a worker at start (``compute.kernels.prepare``): the first
        start after an install compiles them (about 30 s on this 2-core machine), later starts
        load them from the cache (under a second). The window stays usable meanwhile; a
        training started before they are ready waits for the kernel it needs on its own
        worker, never on the GUI thread."""
        from gatescope.compute import kernels
        self._kernel_worker = Worker("kernel-prepare", self)
        self.statusBar().showMessage(PREPARING_KERNELS)
        self._kernel_worker.submit(kernels.prepare, done=self._on_kernels_ready, failed=self._on_kernels_failed)

    def _on_kernels_ready(self, report: dict) -> None:
        if self.statusBar().currentMessage() == PREPARING_KERNELS:
            self.statusBar().clearMessage()
        if report["note"] is not None:
            self.statusBar().showMessage(f"The NumPy versions of the CPU kernels run (slower): {report['note']}", 15000)
        elif report["seconds"] > 2.0:
            self.statusBar().showMessage(f"CPU kernels ready (compiled in {format_duration(report['seconds'])})", 5000)

    def _on_kernels_failed(self, message: str, details: str) -> None:
        log.warning("preparing the CPU kernels failed; they compile when first used:\n%s", details)
        if self.statusBar().currentMessage() == PREPARING_KERNELS:
            self.statusBar().showMessage(f"Could not prepare the CPU kernels ahead ({message}): "
                                         "they compile when a training first needs them", 15000)

    # ----------------------------------------------------------------- graph edits and selection
    def _editing_refused(self) -> bool:
        """True (and the reason shown) while the structure is locked by a run."""
        if self.training_control.running:
            self.statusBar().showMessage(LOCKED_MESSAGE, 5000)
            return True
        return False

    def _on_block_dropped(self, block_type: str, pos: QPointF) -> None:
        if self._editing_refused():
            return
        block_id = self.document.add_block(block_type, pos.x(), pos.y())
        self.canvas.select([block_id])
        self.canvas.setFocus()

    def _on_palette_activated(self, block_type: str) -> None:
        if self._editing_refused():
            return
        centre = self.canvas.view_centre()
        n = len(self.project.graph.blocks)
        block_id = self.document.add_block(block_type, centre.x() - 100 + 20 * (n % 5), centre.y() - 40 + 20 * (n % 5))
        self.canvas.select([block_id])

    def _on_delete_requested(self, block_ids: list, wires: list) -> None:
        if not self._editing_refused():
            self.document.remove(block_ids, wires)

    def _on_wire_requested(self, src: str, dst: str, port: int) -> None:
        if self._editing_refused():
            return
        graph = self.project.graph
        replaced = next((w.src for w in graph.wires if w.dst == dst and w.port == port and w.src != src), None)
        if self.document.connect_blocks(src, dst, port) and replaced is not None:
            self.statusBar().showMessage(
                f"The wire from {self.block_name(replaced)} into {self.block_name(dst)} was replaced by one from "
                f"{self.block_name(src)} (an input takes one wire; {self.undo_action.shortcut().toString()} "
                "puts it back).", 8000)

    def block_name(self, block_id: str) -> str:
        """A block as the canvas names it: its type and id ("LSTM b1")."""
        return palette_data.block_name(self.project.graph, block_id)

    def auto_layout(self) -> None:
        if self._editing_refused():
            return
        self.document.auto_layout()
        QTimer.singleShot(0, self.canvas.fit_to_view)

    def _on_graph_changed(self) -> None:
        project, analysis = self.project, self.document.analysis
        self.canvas.set_graph(palette_data.canvas_blocks(project.graph, project.positions),
                              palette_data.canvas_wires(project.graph))
        self.canvas.set_status(self.block_status())
        self._refresh_inspector()
        errors = analysis.errors()
        self.params_label.setText(f"{analysis.total_params:,} parameters" +
                                  (f" · {plural(len(errors), 'problem')}" if errors else ""))
        self._refresh_train_blocker()
        task = analysis.task
        if task is not None and not self.training_control.running:
            self.curves.set_task(task)
            self.confusion.set_task(task)
        self.graphAnalysed.emit(analysis)

    def _on_selection_changed(self, ids: list) -> None:
        self._refresh_inspector()
        self.selectionChanged.emit(list(ids))
        self.blockSelected.emit(ids[0] if len(ids) == 1 else "")

    def _refresh_inspector(self) -> None:
        ids = self.canvas.selected_ids()
        analysis = self.document.analysis
        if len(ids) != 1:
            text = palette_data.model_summary(analysis, self.project.graph)
            if len(ids) > 1:
                text = f"{len(ids)} blocks selected.\n\n" + text
            self.inspector.show_nothing(text)
            return
        block = self.project.graph.block(ids[0])
        self.inspector.show_block(block.id, block.type, palette_data.block_summary(block.type),
                                  palette_data.block_fields(block.type), block.settings)
        self.inspector.offer_data_shape(self._data_shape_offer(block))
        status = self.block_status().get(block.id, {})
        self.inspector.show_result(status.get("shape", ""), status.get("params", ""), status.get("formula", ""),
                                   status.get("error"), status.get("warning"), status.get("size_formula", ""))
        self.inspector.set_locked(self.training_control.running)

    def _data_shape_offer(self, block) -> str:
        """The text of the Input's "use the data's shape" button, or '' when it has that shape."""
        dataset = self.data.dataset
        if block.type != "Input" or dataset is None or tuple(block.settings.get("shape", ())) == dataset.sample_shape:
            return ""
        return f"Use the data's shape: {' x '.join(map(str, dataset.sample_shape))}"

    def use_data_shape(self, block_id: str) -> None:
        """Set the Input block ``block_id``'s shape to the loaded samples' shape (one undo step)."""
        dataset = self.data.dataset
        if dataset is None or self._editing_refused():
            return
        self.document.set_setting(block_id, "shape", tuple(int(v) for v in dataset.sample_shape))
        self.statusBar().showMessage(f"{self.block_name(block_id)} takes the data's shape now "
                                     f"({self.undo_action.shortcut().toString()} puts the old one back)", 6000)

    def _refresh_train_blocker(self) -> None:
        if not self.training_control.running:
            reason = self.train_blocker()
            self.run_controls.set_blocked(reason)
            self.training_panel.set_blocked(reason)

    def train_blocker(self) -> str | None:
        """Why Train cannot be pressed now (the first problem), or None."""
        analysis = self.document.analysis
        first = palette_data.first_problem(analysis, self.project.graph)
        if first:
            return first
        dataset = self.data.dataset
        if dataset is None:
            if self.data.busy:
                return None     # the run loads it itself when Train is pressed before it arrives
            return "no dataset is loaded; choose one in the Data panel of the Train view"
        return (fit_problem(dataset, analysis.info[analysis.input_id].out_shape, analysis.task,
                            analysis.info[analysis.head_id].out_shape)
                or input_problem(analysis, self.project.graph, dataset.x))

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
        if self._editing_refused():
            return
        ids = self.canvas.selected_ids()
        if ids:
            self.copy()
            self.document.remove(ids)

    def paste(self) -> None:
        """Paste the copied blocks beside the originals: each paste one step further down and
        right, so copies never land exactly on what they were copied from."""
        if self._editing_refused():
            return
        mime = QApplication.clipboard().mimeData()
        if mime is None or not mime.hasFormat(CLIPBOARD_MIME):
            return
        self._paste_count += 1
        offset = PASTE_STEP * self._paste_count
        ids = self.document.paste(bytes(mime.data(CLIPBOARD_MIME)).decode("utf-8"), (offset, offset))
        if ids:
            self.canvas.select(ids)
            self.canvas.ensure_visible(ids)

    # ----------------------------------------------------------------- data
    def choose_dataset(self, ref: dict, from_project: bool = False) -> None:
        """Load the dataset ``ref`` on the data worker; the panel shows it or says why it cannot."""
        resolved = dataset_reference(replace(self.project, dataset=dict(ref)))
        self.data.choose(ref, resolved, from_project)
        self._refresh_train_blocker()

    @property
    def evaluating_saved(self) -> bool:
        return self.data.evaluating_saved

    def _on_dataset_loaded(self, dataset: Dataset, ref: dict, from_project: bool) -> None:
        settings = self.project.training
        try:
            split = dataset_split(dataset, settings.val_fraction, settings.test_fraction, settings.seed)
        except DataError as exc:
            self.data_panel.show_error(str(exc))
            return
        n_test = len(dataset.x_test) if dataset.x_test is not None else len(split.test)
        summary, samples, labels = palette_data.dataset_view(dataset, len(split.train), len(split.val), n_test)
        self.data_panel.show_dataset(summary, samples, labels)
        self._refresh_inspector()              # the Input's "use the data's shape" follows the data
        if not from_project and ref != self.project.dataset:
            self.project.dataset = ref
            self.document.mark_modified()
        self._refresh_train_blocker()
        if (self.project.weights and self.train_blocker() is None and not self.training_control.running
                and self.document.weights_fit()):
            self.data.evaluate_saved(self.project)
        self.datasetLoaded.emit(dataset)

    def _on_dataset_failed(self, message: str, ref: dict, from_project: bool) -> None:
        if from_project or self.data.dataset is None:
            self.data_panel.show_error(message)
        elif ref.get("kind") == "file":
            # Own data stays shown with its options, to be mended and loaded again; the words say
            # plainly that the project goes on with the dataset it had.
            self.data_panel.show_error(f"{message}\n\nNot loaded: the project keeps {describe_source(self.data.ref)}. "
                                       "Change the options above and press Load, or choose other data.")
        else:
            # Never a half-changed project: the panel goes back to the dataset still in use.
            self.data_panel.set_reference(dataset_reference(replace(self.project, dataset=dict(self.data.ref))))
            self.data_panel.show_error(f"{message}\n\nThe project keeps {describe_source(self.data.ref)}.")
        self._refresh_train_blocker()

    def validation_split(self):
        """The validation indices of the dataset in use, as the trainer splits it (or None)."""
        dataset, s = self.data.dataset, self.project.training
        if dataset is None:
            return None
        try:
            return dataset_split(dataset, s.val_fraction, s.test_fraction, s.seed).val
        except DataError:
            return None

    def validation_targets(self):
        indices = self.validation_split()
        return None if indices is None else self.data.dataset.y[indices]

    def show_cell_samples(self, true_class: int, predicted_class: int) -> None:
        """A click on a confusion-matrix cell: the validation samples that landed there, in the
        Samples panel."""
        dataset, split, predictions = self.data.dataset, self.validation_split(), self.val_predictions
        names = list(dataset.class_names) if dataset is not None else []
        name = lambda k: names[k] if k < len(names) else str(k)  # noqa: E731
        if dataset is None or split is None or predictions is None or len(predictions) != len(split):
            self.samples.show_message("Train the model (or open a trained one) first: the samples come from "
                                      "its predictions on the validation set.")
            self.raise_panel("Samples")
            return
        positions = palette_data.cell_samples(dataset.y[split], predictions, true_class, predicted_class)
        verdict = "right" if true_class == predicted_class else "wrong"
        title = (f"True class {name(true_class)}, predicted {name(predicted_class)} ({verdict}): "
                 f"{plural(len(positions), 'validation sample')}"
                 + (f", the first {SAMPLES_SHOWN} shown" if len(positions) > SAMPLES_SHOWN else "") + ".")
        if np.ndim(dataset.y) > 1:
            title += " (Targets are per step: a sample counts if any of its steps landed in the cell.)"
        indices = split[positions[:SAMPLES_SHOWN]]
        kind, shown, captions = palette_data.gallery_view(dataset, indices)
        self.samples.set_samples(kind, shown, captions, title, indices)
        self.raise_panel("Samples")

    def _on_saved_confusion(self, metrics) -> None:
        if metrics is None or self.training_control.running or self.data.dataset is None:
            return
        self.val_predictions = metrics.predictions
        if metrics.confusion is not None:
            self.confusion.set_matrix(metrics.confusion, list(self.data.dataset.class_names))
        else:
            self.confusion.set_predictions(metrics.predictions, self.validation_targets())

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

    def _on_curves_axis(self, axis: str) -> None:
        if self.project.panels.get(CURVES_X_KEY) != axis:
            self.project.panels[CURVES_X_KEY] = axis
            self.document.mark_modified()

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

    def start_training(self) -> bool:
        """Start a run of ``epochs`` epochs on the training worker. False (with the reason shown) if it cannot."""
        if self.training_control.running:
            return False
        reason = self.train_blocker()
        if reason:
            self.run_controls.set_blocked(reason)
            self.training_panel.set_blocked(reason)
            self.statusBar().showMessage(f"Cannot train: {reason}", 8000)
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
                          state=project.train_state() if keep else None, dataset=self.data.dataset,
                          model_hooks=list(self.model_hooks))
        if not keep:
            self.curves.clear()
            self.confusion.set_matrix(None, [])
        self.training_panel.set_result("")
        self._run_started = time.perf_counter()
        return self.training_control.start(job)

    def pause_training(self) -> None:
        self.training_control.pause()

    def resume_training(self) -> None:
        self.training_control.resume()

    def stop_training(self) -> None:
        self.training_control.stop()

    def stop_training_and_wait(self, timeout_ms: int = 60000) -> None:
        """Stop the run, wait for it to end, and take in its weights (used before closing)."""
        self.training_control.stop_and_wait(timeout_ms / 1000)

    def _on_run_state(self, state: str) -> None:
        running = state != "idle"
        self.run_controls.set_state(state)
        self.pause_action.setEnabled(state == "running")
        self.resume_action.setEnabled(state == "paused")
        self.stop_action.setEnabled(running)
        self.train_action.setEnabled(not running)
        self.training_panel.set_locked(running)
        self.canvas.set_locked(LOCKED_MESSAGE if running else "")
        self.document.locked = running
        self.inspector.set_locked(running)
        self.palette.setEnabled(not running)
        for action in self.graph_actions + (self.undo_action, self.redo_action, self.new_action,
                                            self.new_from_data_action):
            action.setEnabled(not running)
        if not running:
            self.undo_action.setEnabled(self.document.undo_stack.canUndo())
            self.redo_action.setEnabled(self.document.undo_stack.canRedo())

    def _on_run_progress(self, fraction: float, text: str) -> None:
        info = self.training_control.info
        label = "Starting"
        if info:
            epoch = int(self.training_control.last_step.get("epoch", info.get("first_epoch", 0))) + 1
            last = info.get("first_epoch", 0) + info.get("epochs", 0)
            label = f"Epoch {epoch} of {last}"
            if self.training_control.state == "paused":
                label = f"Paused · {label}"
        self.run_controls.set_progress(fraction, label)
        self.training_panel.set_message(text)

    def _on_run_started(self, info: dict) -> None:
        self.curves.set_steps_per_epoch(int(info["steps_per_epoch"]))
        self.statusBar().showMessage(f"Training on the {info['device_description']}", 5000)
        if info.get("note"):
            self.training_panel.set_message(info["note"])
        self.trainingStarted.emit(info)

    def _on_run_steps(self, payload: dict) -> None:
        self.curves.add_steps(payload["global_steps"], payload["losses"])
        self.trainingStep.emit(payload)

    def _on_run_epoch(self, record: dict) -> None:
        # One epoch dirties several views (loss and accuracy plots, the confusion matrix, the
        # panels that follow trainingEpoch). Done and painted in one event-loop pass they stalled
        # the GUI for 70-100 ms; each is its own pass instead, so input and timers get in between.
        curve_record = {k: v for k, v in record.items() if k not in ("confusion", "class_names", "val_predictions")}
        self.curves.add_epoch(curve_record, plots=("loss",))
        self.staged.add("accuracy", lambda: self.curves.redraw_plots(("accuracy",)))
        self.val_predictions = record.get("val_predictions")
        if record.get("confusion") is not None:
            matrix, names = record["confusion"], record.get("class_names", [])
            # Keyed: a newer epoch's matrix replaces one not yet shown.
            self.staged.add("confusion", lambda: self.confusion.set_matrix(matrix, names))
        elif self.val_predictions is not None and self.data.dataset is not None:
            predicted, true = self.val_predictions, self.validation_targets()
            self.staged.add("confusion", lambda: self.confusion.set_predictions(predicted, true))
        self.staged.add(("epoch", object()), lambda: self.trainingEpoch.emit(record))

    def _on_run_ended(self, kind: str, message: str, result: object) -> None:
        self.staged.flush()
        info = self.training_control.info
        planned = int(info.get("first_epoch", 0)) + int(info.get("epochs", 0)) if info else None
        test = None
        if isinstance(result, dict):
            test = result.get("test")
            self.project.take_train_state(result["state"], result["weights"],
                                          last_run={"planned_epochs": planned, "ended": kind, "test": test})
            self.document.mark_modified()
        self._refresh_train_blocker()
        seconds = self.training_control.elapsed_s()
        done = self.project.trainer.get("epochs_done", 0)
        if kind == "failed":
            self.training_panel.set_message(f"Training failed: {message}")
            self.statusBar().showMessage(f"Training failed: {message}", 10000)
            self.run_controls.set_progress(self.run_controls.fraction, "Failed")
        else:
            self.training_panel.set_message(f"{message[:1].upper()}{message[1:]} after {format_duration(seconds)}; "
                                            f"{plural(done, 'epoch')} trained in all.")
            label = "Done" if kind == "finished" else f"Stopped at {done} of {planned} epochs" \
                if planned else "Stopped"
            self.run_controls.set_progress(progress_of(done, planned) if kind != "finished" else 1.0, label)
            self.training_panel.set_result(describe_test_result(test))
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

    def getting_started(self) -> None:
        """Help > Getting Started (F1): the five views and what to do in each."""
        self.dialogs.show_help("Getting started", help_pages.GETTING_STARTED)

    def keyboard_shortcuts(self) -> None:
        """Help > Keyboard Shortcuts: every action with a key, read from the menus themselves."""
        actions = [a for menu in self.menuBar().findChildren(QMenu) for a in menu.actions()] + self.actions()
        self.dialogs.show_help("Keyboard shortcuts", help_pages.shortcuts_html(actions))

    def about(self) -> None:
        try:
            device = select_device(self.project.training.device).description
        except DeviceError as exc:
            device = f"unavailable ({exc})"
        self.dialogs.info("About GateScope",
                          f"GateScope {__version__}\n\nA playground for convolutional and recurrent networks: "
                          f"build, train and look inside.\n\nComputing on: {device}")

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        """On first show, size the docks to the window: before a window is on screen Qt does not
        know how wide it is."""
        super().showEvent(event)
        self.views.size_when_shown()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self.may_close_project():
            event.ignore()
            return
        self.files.shutdown()
        for controller in (self.inside, self.video, self.compare, self.new_from_data_controller):
            if controller is not None:
                controller.shutdown()
        self.training_control.shutdown()
        self.data.shutdown()
        event.accept()


def describe_test_result(test: dict | None) -> str:
    """The last run's held-out test result as the training panel shows it, or ''."""
    if not isinstance(test, dict) or test.get("loss") is None:
        return ""
    samples = plural(int(test.get("samples", 0)), "held-out test sample")
    if test.get("accuracy") is not None:
        return f"Test accuracy {test['accuracy']:.1%} (loss {test['loss']:.4g}) on {samples}."
    return f"Test loss (mean squared error) {test['loss']:.4g} on {samples}."


# ----------------------------------------------------------------------------- entry point
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


def run_app(file: str | os.PathLike | None = None, screenshot: str | os.PathLike | None = None,
            view: str | None = None, size: tuple[int, int] | None = None) -> int:
    """Open the main window on ``file`` (default: the bundled example) and run until it closes.

    With ``screenshot``: build the window offscreen as a person opening ``file`` gets it, show
    ``view`` at ``size`` (default ``DEFAULT_SIZE``), render it to that PNG and return 0 without
    asking anything (see ``studio.screenshot``). ``view`` without a screenshot opens in that view.
    """
    if screenshot is not None and QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GateScope")
    app.setOrganizationName("GateScope")
    apply_dark_theme(app)
    if screenshot is not None:
        from gatescope.studio.screenshot import render
        return render(file, Path(screenshot), view or "build", size or DEFAULT_SIZE)
    window = MainWindow()
    path = initial_project_path(file)
    if path is not None and not window.open_path(path, as_example=file is None):
        if file is not None:
            return 1
    if view is not None:
        window.show_view(view)
    install_exception_hook(window)
    show_at_size(window, size or DEFAULT_SIZE)
    window.prepare_kernels()
    window.offer_recovery(path if file else None)
    return app.exec()


def wait_until_settled(window: MainWindow, timeout_s: float = 10.0) -> bool:
    """Process events until the window has nothing on its way: the dataset loaded (or refused),
    the saved model's confusion matrix computed, the inside panels filled. False on timeout."""
    app = QApplication.instance()
    deadline = time.perf_counter() + timeout_s

    def settled() -> bool:
        loaded = not window.data.busy
        evaluated = not window.data.evaluating_saved
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


def show_at_size(window: MainWindow, size: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Show the window at ``size``. (Before it is first shown, the dock layout can hold the
    window taller than asked, so the size is set again once it is on screen.)"""
    window.resize(*size)
    window.show()
    QApplication.processEvents()
    window.resize(*size)
    QApplication.processEvents()
