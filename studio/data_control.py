"""The project's dataset, loaded off the GUI thread, without the window.

``DataController.choose(ref)`` loads a dataset reference on the data worker thread
(``studio.worker``); ``loaded(dataset, ref, from_project)`` or ``failed(message, ref,
from_project)`` follows on the GUI thread. Only the newest choice counts: an older load that
finishes later is dropped. A failed choice leaves the dataset in use as it was (the project
keeps its reference; the message says so), so a project is never half changed.

``evaluate_saved(project)`` computes the validation metrics of a project's saved weights on the
dataset in use (so a reopened project shows its confusion matrix, or its predictions for a
regression); ``savedConfusion(metrics)`` brings them (``compute.train.Metrics``).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from gatescope.compute.datasets import Dataset, DataError, load
from gatescope.compute.train import dataset_split, evaluate
from gatescope.studio.project import Project
from gatescope.studio.worker import Worker

log = logging.getLogger(__name__)


def describe_source(ref: dict | None) -> str:
    """A dataset reference as a person names it: the file's name, or the bundled source."""
    if not ref:
        return "no dataset"
    if ref.get("kind") == "file":
        from pathlib import Path
        return Path(str(ref.get("path", ""))).name or "a file"
    return f"the bundled {ref.get('name', 'dataset')} data"


def _saved_metrics(project: Project, dataset: Dataset):
    """The validation metrics (``compute.train.Metrics``: confusion matrix, predictions) of
    ``project``'s saved weights on ``dataset``."""
    model = project.build_model()
    s = project.training
    split = dataset_split(dataset, s.val_fraction, s.test_fraction, s.seed)
    return evaluate(model, dataset.x[split.val], dataset.y[split.val])


class DataController(QObject):
    """Loads the dataset a project names; holds the one in use (see the module docstring)."""

    loaded = Signal(object, dict, bool)
    failed = Signal(str, dict, bool)
    savedConfusion = Signal(object)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = Worker("dataset-loader", self)
        self.dataset: Dataset | None = None
        self.ref: dict | None = None           # the reference of ``dataset``
        self.pending_ref: dict | None = None   # being loaded now
        self._token = 0                        # of the newest choice
        self._eval_token = 0                   # of the newest saved-weights evaluation
        self.evaluating_saved = False

    @property
    def busy(self) -> bool:
        return self.pending_ref is not None

    def clear(self) -> None:
        """Forget the dataset in use (another project is opened)."""
        self.dataset, self.ref = None, None

    def choose(self, ref: dict, resolved: dict, from_project: bool = False) -> None:
        """Load ``resolved`` (``ref`` with its paths made absolute) on the worker thread."""
        self._token += 1
        self._eval_token += 1                  # an evaluation under way is of the old data
        token = self._token
        self.evaluating_saved = False
        self.pending_ref = dict(ref)
        self.busyChanged.emit(True)
        self.worker.submit(load, resolved,
                           done=lambda dataset: self._on_done(token, dict(ref), from_project, dataset),
                           failed=lambda message, details: self._on_failed(token, dict(ref), from_project,
                                                                          message, details))

    def _current(self, token: int) -> bool:
        if token != self._token:
            return False                        # a newer choice was made meanwhile
        self.pending_ref = None
        self.busyChanged.emit(False)
        return True

    def _on_done(self, token: int, ref: dict, from_project: bool, dataset: Dataset) -> None:
        if self._current(token):
            self.dataset, self.ref = dataset, ref
            self.loaded.emit(dataset, ref, from_project)

    def _on_failed(self, token: int, ref: dict, from_project: bool, message: str, details: str) -> None:
        if not self._current(token):
            return
        if not message.startswith(DataError.__name__ + ":"):
            log.error("dataset failed to load:\n%s", details)
            message = f"the dataset could not be read: {message}"
        else:
            message = message[len(DataError.__name__) + 2:]
        self.failed.emit(message, ref, from_project)

    def evaluate_saved(self, project: Project) -> None:
        """The confusion matrix of ``project``'s saved weights on the dataset in use, on the
        worker thread (the project is copied first, so later edits cannot reach the thread)."""
        if self.dataset is None:
            return
        saved = replace(project, graph=copy.deepcopy(project.graph),
                        weights={k: v.copy() for k, v in project.weights.items()})
        self._eval_token += 1
        token = self._eval_token
        self.evaluating_saved = True

        def done(metrics) -> None:
            if token == self._eval_token:
                self.evaluating_saved = False
                self.savedConfusion.emit(metrics)

        def failed(message: str, details: str) -> None:
            log.warning("no confusion matrix for the saved weights:\n%s", details)
            if token == self._eval_token:
                self.evaluating_saved = False

        self.worker.submit(_saved_metrics, saved, self.dataset, done=done, failed=failed)

    def shutdown(self) -> None:
        self.worker.shutdown()
