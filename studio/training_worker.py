"""Training on a worker thread, its events carried to the GUI through queued, throttled signals.

``TrainingWorker`` wraps ``compute.train.Trainer.run`` (a Qt-free generator) the way Orange's
concurrent helpers and superqt's ``thread_worker`` do: the loop runs on a ``QThread``; step
events are coalesced and sent at most ``MAX_UPDATES_PER_S`` times a second; start, epoch and
end events are always sent. Everything sent is host data: floats, NumPy copies, plain dicts.
"""
from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from gatescope.compute.backend import DeviceError, select_device
from gatescope.compute.datasets import Dataset, DataError, load
from gatescope.compute.graph import GraphError, GraphSpec, Model
from gatescope.compute.train import Control, Trainer, TrainSettings, TrainState

log = logging.getLogger(__name__)

MAX_UPDATES_PER_S = 25
# A short sleep after each step hands the interpreter to the GUI thread: measured on 2 CPU cores,
# it cut the worst GUI stall from about 100 ms to about 75 ms for some 10 % of training speed.
YIELD_S = 0.0005


@dataclass
class TrainingJob:
    """Everything a run needs, copied away from the document so the GUI can go on editing.

    ``dataset`` is the already loaded dataset when there is one, else ``dataset_ref`` is loaded
    on the worker thread. ``model_hooks`` are called with the built model on the worker thread
    (to turn on probes or gate overrides) before the first step.
    """

    graph: GraphSpec
    settings: TrainSettings
    dataset_ref: dict[str, Any]
    epochs: int
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    state: TrainState | None = None
    dataset: Dataset | None = None
    model_hooks: list[Callable[[Model], None]] = field(default_factory=list)


class TrainingWorker(QObject):
    """Runs one ``TrainingJob``. Move it to a QThread and call ``run`` from ``QThread.started``.

    Signals (all queued to the GUI thread):
      ``started(dict)``: the trainer's start event plus ``device_description``, ``class_names``,
        ``fresh`` (True when the weights start anew) and ``note``.
      ``steps(dict)``: coalesced step events: ``global_steps`` and ``losses`` (NumPy arrays of
        every step since the last update), ``last`` (the latest step's data without probes) and
        ``probes`` (the latest probe arrays, absent when none were recorded).
      ``epoch(dict)``: the epoch record, with ``confusion`` (NumPy) and ``class_names``.
      ``ended(str kind, str message, object result)``: kind is finished, stopped or failed;
        ``result`` is ``{"state": TrainState, "weights": dict}`` or None when no model ran or
        its weights must not be kept.
    """

    started = Signal(dict)
    steps = Signal(dict)
    epoch = Signal(dict)
    ended = Signal(str, str, object)

    def __init__(self, job: TrainingJob, control: Control):
        super().__init__()
        self.job, self.control = job, control
        self.min_interval_s = 1.0 / MAX_UPDATES_PER_S

    @Slot()
    def run(self) -> None:
        """Build, train, report. Never raises: every failure becomes ``ended('failed', ...)``."""
        job = self.job
        try:
            device = select_device(job.settings.device)
            dataset = job.dataset if job.dataset is not None else load(job.dataset_ref)
            model = Model(job.graph, seed=job.settings.seed, xp=device.xp)
            state = copy.deepcopy(job.state) if job.state is not None else TrainState()
            fresh, note = not job.weights, ""
            if job.weights:
                try:
                    model.load_state_dict(job.weights)
                except ValueError:
                    fresh, state = True, TrainState()
                    note = "the model changed since it was trained; training starts from fresh weights"
            if fresh:
                state = TrainState()
            for hook in job.model_hooks:
                hook(model)
            trainer = Trainer(model, dataset, job.settings, state, device.name)
        except (DeviceError, DataError, GraphError, ValueError) as exc:
            self.ended.emit("failed", str(exc), None)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the person, with the details logged
            log.error("training could not start:\n%s", traceback.format_exc())
            self.ended.emit("failed", f"training could not start: {type(exc).__name__}: {exc}", None)
            return
        self._train(trainer, model, dataset, device.description, fresh, note)

    def _train(self, trainer: Trainer, model: Model, dataset: Dataset, device_description: str,
               fresh: bool, note: str) -> None:
        pending_steps: list[int] = []
        pending_losses: list[float] = []
        last_step: dict[str, Any] = {}
        latest_probes: dict | None = None
        last_sent = 0.0
        window_samples, window_start = 0, time.perf_counter()

        def flush() -> None:
            nonlocal pending_steps, pending_losses, latest_probes, last_sent, window_samples, window_start
            if not pending_steps:
                return
            now = time.perf_counter()
            last = dict(last_step)
            last["samples_per_s"] = window_samples / max(now - window_start, 1e-9)
            payload = {"global_steps": np.asarray(pending_steps, dtype=np.int64),
                       "losses": np.asarray(pending_losses, dtype=np.float64), "last": last}
            if latest_probes is not None:
                payload["probes"] = latest_probes
            self.steps.emit(payload)
            pending_steps, pending_losses, latest_probes = [], [], None
            last_sent, window_samples, window_start = now, 0, now

        try:
            for event in trainer.run(self.job.epochs, self.control):
                if event.kind == "step":
                    data = event.data
                    pending_steps.append(int(data["global_step"]))
                    pending_losses.append(float(data["loss"]))
                    window_samples += min(trainer.settings.batch_size, len(trainer.split.train))
                    last_step = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                 for k, v in data.items() if k != "probes"}
                    if "probes" in data:
                        latest_probes = data["probes"]
                    if time.perf_counter() - last_sent >= self.min_interval_s:
                        flush()
                    time.sleep(YIELD_S)  # let the GUI thread take the interpreter between steps
                elif event.kind == "start":
                    window_start = last_sent = time.perf_counter()
                    self.started.emit(dict(event.data, device_description=device_description,
                                           class_names=list(dataset.class_names), fresh=fresh, note=note))
                elif event.kind == "epoch":
                    flush()
                    record = dict(event.data)
                    if record.get("confusion") is not None:
                        record["confusion"] = np.array(record["confusion"], copy=True)
                    record["class_names"] = list(dataset.class_names)
                    self.epoch.emit(record)
                else:
                    flush()
                    result = {"state": copy.deepcopy(trainer.state), "weights": model.state_dict()}
                    message = event.data.get("message", event.kind)
                    if note:
                        message = f"{message} ({note})"
                    self.ended.emit(event.kind, message, result)
                    return
        except Exception as exc:  # noqa: BLE001 - a bug or a surprise in a layer: report, keep the old weights
            log.error("training failed:\n%s", traceback.format_exc())
            self.ended.emit("failed", f"training failed: {type(exc).__name__}: {exc}; "
                                      "the project keeps its last saved weights", None)
            return
        # Trainer.run always ends with finished, stopped or failed; this keeps the thread from
        # hanging should a future trainer end without one.
        self.ended.emit("finished", "training finished", {"state": copy.deepcopy(trainer.state),
                                                          "weights": model.state_dict()})


class TrainingRun(QObject):
    """A worker on its own thread, with pause, resume and stop; emits the worker's signals on.

    ``start()`` begins; ``wait(ms)`` blocks until the thread has ended (used when closing).
    """

    def __init__(self, job: TrainingJob, parent: QObject | None = None):
        super().__init__(parent)
        self.control = Control()
        self.thread = QThread()
        self.thread.setObjectName("training")
        self.worker = TrainingWorker(job, self.control)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        # Direct: quit from the worker's own thread, so it ends even while the GUI thread waits in wait().
        self.worker.ended.connect(self.thread.quit, Qt.DirectConnection)
        self.finished_running = False
        self.thread.finished.connect(self._on_thread_finished)

    def start(self) -> None:
        self.thread.start()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def paused(self) -> bool:
        return self.control.paused

    def wait(self, ms: int = 30000) -> bool:
        """Block until the thread ends; True if it did within ``ms``."""
        return self.thread.wait(ms)

    def _on_thread_finished(self) -> None:
        self.finished_running = True

