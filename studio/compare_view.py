"""The Compare view: variants of the project trained in lock-step, and its run history.

``install_compare(window)`` adds the panels to the window's ``compare`` view through
``MainWindow.add_panel`` (as ``studio.inside`` installs the inside panels) and returns the
``CompareController``, which

* fills the Compare panel from the project: each block with what it can be swapped for
  (``studio.compare.swap_options``) and its settings; the project's saved comparison
  (``Project.compare``) or, without one, its first recurrent block swapped for SimpleRNN, LSTM
  and GRU; every change of the choice is saved in the project;
* runs ``studio.compare.compare_events`` on its own worker (``studio.worker``, the one pattern
  for long work) and draws what arrives: every variant's loss and accuracy, the gradients through
  time of each on one log axis, their gates side by side, the table of final metrics;
* when the comparison ends, keeps each variant as a run of the project's history, and lets the
  person open any variant as a project of its own or make it the project's model.

The run history panel belongs to ``RunHistoryController`` (``history``), which records every
training run of the window and restores a run's model and weights.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from gatescope.compute.train import Control
from gatescope.studio import runs as run_history
from gatescope.studio.compare import (CompareJob, compare_events, result_run, swap_label, swap_options,
                                      swappable_blocks, typed_choice, variant_project, variants_for,
                                      with_model)
from gatescope.studio.compare_choice import TRAINING, ChoiceError, CompareChoice, from_json, spell
from gatescope.studio.inside import RECURRENT, category_of, family_of
from gatescope.studio.palette_data import block_fields, block_name, training_fields
from gatescope.studio.project import Project
from gatescope.studio.session import dataset_reference
from gatescope.studio.wording import format_duration, plural
from gatescope.studio.worker import Worker
from gatescope.widgets.compare import (ComparedCurvesPanel, CompareSetupPanel, GateSaturationPanel, RunHistoryPanel,
                                       VariantResultsPanel)
from gatescope.widgets.inside.common import line_colour
from gatescope.widgets.inside.gradients import GradientsPanel

VIEW = "compare"
# Panel names and where each starts (studio.views.DEFAULT_ARRANGEMENT arranges the docks).
PANELS = {"setup": ("Compare", "left"), "curves": ("Curves compared", "centre"),
          "gradients": ("Gradients compared", "centre"), "gates": ("Gates compared", "centre"),
          "history": ("Run history", "centre"), "results": ("Final metrics", "bottom")}
DEFAULT_SWAP = ("SimpleRNN", "LSTM", "GRU")
DEFAULT_VARY = ("learning_rate", (0.001, 0.01))
GRADIENTS_EMPTY = ("Compare recurrent variants: the gradient reaching each time step appears here for every "
                   "variant, after the start and after each epoch.")


class RunHistoryController(QObject):
    """Keeps the run history of the window's project: records each training run when it ends,
    shows the runs (``panel``), restores one, deletes some, and keeps or stops keeping weights."""

    def __init__(self, window, compare: "CompareController"):
        super().__init__(window)
        self.window, self.compare = window, compare
        self.panel = RunHistoryPanel()
        self.panel.restoreRequested.connect(self.restore)
        self.panel.deleteRequested.connect(self.delete)
        self.panel.keepWeightsChanged.connect(self.set_keep_weights)
        # The controller's own signal: it carries the run's result (state, weights, test), and
        # the window takes the same result into the project in its own slot.
        window.training_control.ended.connect(self.record_training)
        window.trainingEnded.connect(lambda *_: self.refresh())
        window.projectChanged.connect(lambda _project: self.refresh())

    @property
    def project(self) -> Project:
        return self.window.project

    def refresh(self) -> None:
        self.panel.set_runs(run_history.run_rows(self.project.runs), self.project.keep_run_weights)

    def record_training(self, kind: str, message: str, result: Any) -> None:
        """A training run of the window ended: keep it (a run that never trained leaves nothing)."""
        if not isinstance(result, dict):
            return
        control, project = self.window.training_control, self.project
        project.runs.append(run_history.new_run(
            project.runs, kind="train", label="", ended=kind, graph=project.graph, training=project.training,
            state=result["state"], first_epoch=int(control.info.get("first_epoch", 0)), test=result.get("test"),
            seconds=control.elapsed_s(), parameters=self.window.document.analysis.total_params,
            weights=result["weights"] if project.keep_run_weights else None))

    def add(self, runs: list[run_history.Run]) -> None:
        """Keep ``runs`` (a comparison's variants) in the history, and overlay them."""
        self.project.runs.extend(runs)
        self.window.document.mark_modified()
        self.refresh()
        self.panel.select_runs([r.number for r in runs])

    def restore(self, number: int) -> bool:
        """Make run ``number``'s model, settings and weights the project's (its history of
        epochs and steps too; the optimizer starts afresh). False when it has no weights."""
        run = next((r for r in self.project.runs if r.number == number), None)
        if run is None or not run.weights:
            self.window.statusBar().showMessage(f"Run {number} kept no weights: it cannot be restored", 8000)
            return False
        if not self.may_replace():
            return False
        self.compare.replace_project(with_model(self.project, run.graph, run.training, run_history.run_state(run),
                                                run.weights, run.ended, run.test))
        self.window.statusBar().showMessage(f"Restored {run.title}: its model, settings and weights", 8000)
        return True

    def delete(self, numbers: list[int]) -> None:
        if numbers:
            self.project.runs = [r for r in self.project.runs if r.number not in set(numbers)]
            self.window.document.mark_modified()
            self.refresh()

    def set_keep_weights(self, keep: bool) -> None:
        if self.project.keep_run_weights != keep:
            self.project.keep_run_weights = keep
            self.window.document.mark_modified()

    def may_replace(self) -> bool:
        """False (and why, in the status bar) while a training run holds the model."""
        if self.window.training:
            self.window.statusBar().showMessage("Training is running: stop it before changing the model", 8000)
            return False
        return True


class CompareController(QObject):
    """The Compare view's panels and its comparisons (see the module docstring).

    Signals: ``started()``, ``ended(kind, message)`` (kind: finished, stopped or failed).
    ``results``: the last comparison's ``studio.compare.VariantResult`` list, or None.
    """

    started = Signal()
    ended = Signal(str, str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.worker = Worker("compare", self)
        self.setup = CompareSetupPanel()
        self.curves = ComparedCurvesPanel()
        self.gradients = GradientsPanel()
        self.gradients.title_label.setText("Gradients through time of every variant")
        self.gradients.show_message(GRADIENTS_EMPTY)
        self.gates = GateSaturationPanel()
        self.results_panel = VariantResultsPanel()
        self.history = RunHistoryController(window, self)
        self.panels = {"setup": self.setup, "curves": self.curves, "gradients": self.gradients,
                       "gates": self.gates, "history": self.history.panel, "results": self.results_panel}
        self.control: Control | None = None
        self.results: list | None = None
        self.labels: list[str] = []
        self.rows: list[dict] = []
        self.compared: Project | None = None         # the project the shown comparison is of
        self._successor: Project | None = None       # a project this controller put in its place
        self._closed = False
        self.setup.compareRequested.connect(self.start)
        self.setup.stopRequested.connect(self.stop)
        self.setup.choiceEdited.connect(self._remember_choice)
        self.setup.swapOptionsWanted.connect(self._send_swap_options)
        self.results_panel.openRequested.connect(self.open_variant)
        self.results_panel.adoptRequested.connect(self.adopt_variant)

    @property
    def running(self) -> bool:
        return self.control is not None

    # ----------------------------------------------------------------- following the window
    def follow_project(self, project: Project) -> None:
        """Another project is open: its blocks and saved choice; a comparison of the one before
        is stopped and its results put away (unless this controller put the project there)."""
        if project is self._successor:
            self._successor = None
            self.compared = project
        else:
            if self.running:
                self.stop()
            self._clear()
        self.follow_graph()
        self.setup.set_epochs(project.training.epochs)
        self.setup.set_choice(self._shown_choice(project.compare or self.default_choice(project)))

    def follow_graph(self, _analysis=None) -> None:
        graph = self.window.project.graph
        blocks = [(b.id, block_name(graph, b.id)) for b in graph.blocks]
        settings = {b.id: [f["name"] for f in block_fields(b.type)] for b in graph.blocks}
        choice = self.setup.choice()
        self.setup.set_model(blocks, swappable_blocks(graph), settings, [f["name"] for f in training_fields()])
        self.setup.set_choice(choice)

    def _send_swap_options(self, block_id: str) -> None:
        graph = self.window.project.graph
        if block_id in {b.id for b in graph.blocks}:
            self.setup.set_swap_options(block_id, [(o, swap_label(o)) for o in swap_options(graph, block_id)])

    @staticmethod
    def default_choice(project: Project) -> CompareChoice:
        """Without a saved choice: the first recurrent block as SimpleRNN, LSTM and GRU (those
        of them that fit), else the learning rate at 0.001 and 0.01."""
        for block in project.graph.blocks:
            if category_of(block.type) == RECURRENT:
                fits = [o for o in DEFAULT_SWAP if o in swap_options(project.graph, block.id)]
                if len(fits) >= 2:
                    return CompareChoice("swap", block.id, tuple(fits))
        return CompareChoice("vary", TRAINING, DEFAULT_VARY[1], setting=DEFAULT_VARY[0])

    @staticmethod
    def _shown_choice(choice: CompareChoice) -> dict:
        data = choice.to_json()
        if choice.kind == "vary":
            data["values"] = [spell(v) for v in choice.options]
        return data

    def _remember_choice(self, data: dict) -> None:
        try:
            choice = typed_choice(self.window.project.graph, from_json(data))
        except ChoiceError:
            return                                  # half made (one type ticked): nothing to keep yet
        if choice != self.window.project.compare:
            self.window.project.compare = choice
            self.window.document.mark_modified()

    # ----------------------------------------------------------------- running
    def start(self, data: dict | None = None) -> bool:
        """Compare the variants the Compare panel shows (or ``data``, in its form). False, with the
        reason in the panel, when it cannot start."""
        if self.running or self._closed:
            return False
        if self.window.training:
            self.setup.set_status("Training is running: stop it (or let it finish), then compare.")
            return False
        project = self.window.project
        try:
            choice = from_json(dict(data if data is not None else self.setup.choice()))
            variants = variants_for(project.graph, project.training, choice)
        except ChoiceError as exc:
            self.setup.set_status(f"Cannot compare: {exc}")
            return False
        self.compared, self.results = project, None
        self.labels = [v.label for v in variants]
        self.rows = [{"label": label} for label in self.labels]
        job = CompareJob(variants, dataset_reference(project), choice.epochs, self.window.current_dataset(),
                         project.training.device)
        self.control = Control()
        self.setup.set_running(True)
        self.setup.set_progress(0.0, "Starting…")
        self.setup.set_status(f"Comparing {', '.join(self.labels)}…")
        self.results_panel.set_actions_enabled(False)
        self.worker.submit(compare_events, job, self.control, event=self._on_event, failed=self._on_crash)
        self.started.emit()
        return True

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
            self.setup.set_progress(self.setup.progress.value() / 1000, "Stopping after this round of steps…")

    def _on_event(self, event) -> None:
        kind, data = event
        if self.compared is not self.window.project and kind != "ended":
            return                                  # of a project no longer open; it is being stopped
        handler = {"started": self._on_started, "steps": self._on_steps, "epoch": self._on_epoch,
                   "probe": self._on_probe, "variant_ended": self._on_variant_ended, "ended": self._on_ended}[kind]
        handler(data)

    def _on_started(self, data: dict) -> None:
        variants = data["variants"]
        self.curves.start(self.labels, [v["steps_per_epoch"] for v in variants], data["task"])
        self.gradients.clear_current()
        self.gradients.show_message(GRADIENTS_EMPTY)
        self.gates.set_variants(self.labels)
        for row, info in zip(self.rows, variants):
            row.update(parameters=info["parameters"], epochs=0, ended="running")
        self.results_panel.set_rows(self.rows)
        batches = ("the same batches at every step" if data["same_batches"] else
                   "NOT the same batches: the variants differ in batch size, split or seed")
        self.setup.set_status(f"Comparing {', '.join(self.labels)} on the {data['device_description']}; {batches}.")

    def _on_steps(self, data: dict) -> None:
        for index, payload in data["variants"].items():
            self.curves.add_steps(index, payload["global_steps"], payload["losses"], payload["accuracies"],
                                  payload["grad_norms"])
        for row, seconds in zip(self.rows, data["seconds_per_step"]):
            row["seconds_per_step"] = seconds
        done, total = sum(data["done"]), max(1, sum(data["total"]))
        self.setup.set_progress(done / total, f"{plural(done, 'step')} of {total:,}")

    def _on_epoch(self, data: dict) -> None:
        index, record = data["variant"], data["record"]
        self.curves.add_epoch(index, record)
        self.rows[index].update(epochs=record["epoch"], train_loss=record.get("train_loss"),
                                val_loss=record.get("val_loss"), val_accuracy=record.get("val_accuracy"))
        self.results_panel.set_rows(self.rows)

    def _on_probe(self, data: dict) -> None:
        index, label = data["variant"], self.labels[data["variant"]]
        colour = line_colour(index)
        shown_gates = False
        for block_id, block in data["blocks"].items():
            t = list(range(len(block["grad_hidden"])))
            key = f"{label}/{block_id}"
            name = f"{label} ({block_id})"
            self.gradients.set_curve(f"{key}/grad_h", f"{name}: ‖∂L/∂h_t‖", t, block["grad_hidden"],
                                     colour=colour)
            if block["grad_cell"] is not None:
                self.gradients.set_curve(f"{key}/grad_c", f"{name}: ‖∂L/∂C_t‖", t, block["grad_cell"],
                                         dashed=True, colour=colour)
            if not shown_gates:                     # the first recurrent block speaks for its variant
                shown_gates = True
                if block["health"]:
                    self.gates.set_health(index, block["health"], family_of(block["type"]),
                                          f"{plural(data['epoch'], 'epoch')} trained; the validation samples "
                                          "every variant is probed on")
                else:
                    self.gates.set_no_gates(index, f"{block['type']}: no gates")
        if data["blocks"]:
            self.gradients.set_caption(f"Over the same validation samples for every variant, after the start and "
                                       f"after each epoch (latest: {label} after {plural(data['epoch'], 'epoch')}).")

    def _on_variant_ended(self, data: dict) -> None:
        self.rows[data["variant"]]["ended"] = data["kind"]
        self.results_panel.set_rows(self.rows)

    def _on_ended(self, data: dict) -> None:
        self.control = None
        self.setup.set_running(False)
        results = data["results"]
        current = self.compared is self.window.project
        if results is not None and current:
            self.results = results
            for row, result in zip(self.rows, results):
                test = result.test or {}
                row.update(seconds_per_step=result.seconds_per_step, epochs=result.state.epochs_done,
                           test_loss=test.get("loss"), test_accuracy=test.get("accuracy"), ended=result.ended)
            self.results_panel.set_rows(self.rows)
            self.results_panel.set_actions_enabled(True)
            project = self.window.project
            runs: list[run_history.Run] = []
            for result in results:
                runs.append(result_run(project.runs + runs, result, project.keep_run_weights))
            self.history.add(runs)
        seconds = sum(r.seconds for r in results) if results else 0.0
        done = f" in {format_duration(seconds)} of training" if results else ""
        self.setup.set_progress(1.0 if data["kind"] == "finished" else self.setup.progress.value() / 1000,
                                {"finished": "Done", "stopped": "Stopped"}.get(data["kind"], "Failed"))
        self.setup.set_status(f"{data['message'][:1].upper()}{data['message'][1:]}{done}." +
                              (" Each variant is kept in the run history." if results and current else ""))
        self.ended.emit(data["kind"], data["message"])

    def _on_crash(self, message: str, details: str) -> None:
        # compare_events never raises; this guard keeps the panel from staying "running".
        self._on_ended({"kind": "failed", "message": f"the comparison failed: {message}", "results": None})

    def _clear(self) -> None:
        self.results, self.compared, self.labels, self.rows = None, None, [], []
        self.curves.show_message("Choose what to compare and press Compare: every variant's curves grow here "
                                 "together.")
        self.gradients.clear_current()
        self.gradients.show_message(GRADIENTS_EMPTY)
        self.gates.show_message("The gates of every recurrent variant appear here side by side.")
        self.results_panel.set_actions_enabled(False)
        self.results_panel.show_message("Each variant's parameter count, time per step and final metrics appear "
                                        "here.")
        self.setup.set_progress(0.0, "Ready")
        self.setup.set_status("")

    # ----------------------------------------------------------------- a variant as a project
    def open_variant(self, index: int) -> bool:
        """Open variant ``index`` of the last comparison as a project of its own (asks first to
        save the open one). False when there is none or the person cancels."""
        if not self.results or self.compared is None:
            return False
        label = self.labels[index]
        project = variant_project(self.compared, self.results[index], self.labels)
        if not self.window.may_close_project():
            return False
        self.window.set_project(project)
        self.window.statusBar().showMessage(f"Opened {project.name}: variant {label} with its trained weights "
                                            "(not saved yet)", 8000)
        return True

    def adopt_variant(self, index: int) -> bool:
        """Make variant ``index`` the project's model: its blocks, training settings, weights and
        training history. The run history keeps the earlier ones."""
        if not self.results or self.compared is not self.window.project or not self.history.may_replace():
            return False
        result = self.results[index]
        self.replace_project(with_model(self.window.project, result.graph, result.settings, result.state,
                                        result.weights, result.ended, result.test))
        self.window.statusBar().showMessage(f"The project's model is now {result.label}, with its trained weights; "
                                            "the run history keeps the earlier ones", 8000)
        return True

    def replace_project(self, project: Project) -> None:
        """Put ``project`` (the open one with another model) in its place, keeping this view's panels."""
        self._successor = project
        self.window.set_project(project)
        self.window.document.mark_modified()

    def shutdown(self) -> None:
        self._closed = True
        if self.control is not None:
            self.control.stop()
        self.worker.shutdown()


def install_compare(window) -> CompareController:
    """Add the Compare view's panels to ``window`` (a ``studio.app.MainWindow``) and follow it:
    ``projectChanged`` (the blocks, the saved choice; a comparison of another project stops),
    ``graphAnalysed`` (what each block can be swapped for). Returns the controller
    (``shutdown()`` it when the window goes)."""
    controller = CompareController(window)
    for key, (name, area) in PANELS.items():
        window.add_panel(name, controller.panels[key], VIEW, area)
    window.projectChanged.connect(controller.follow_project)
    window.graphAnalysed.connect(controller.follow_graph)
    controller.follow_project(window.project)
    controller.history.refresh()
    return controller
