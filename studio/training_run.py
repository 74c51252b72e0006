"""One training run as a Qt-free generator of coalesced, host-only events.

``training_events(job, control)`` builds the model, wraps ``compute.train.Trainer.run`` and
yields what the window needs, no more often than it can use: step events are coalesced and sent
at most ``MAX_UPDATES_PER_S`` times a second; start, epoch and end events are always sent.
Everything yielded is host data (floats, NumPy copies, plain dicts), so the GUI may keep it.
The window runs it through ``studio.worker.Worker`` (``studio.training_control``); a script
or a test can simply iterate it.
"""
from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

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



class RunEvent(tuple):
    """``(kind, data)``: what ``training_events`` yields.

    * ``("started", info)``: the trainer's start event plus ``device_description``,
      ``class_names``, ``fresh`` (True when the weights start anew) and ``note``;
    * ``("steps", payload)``: coalesced step events: ``global_steps`` and ``losses`` (NumPy arrays
      of every step since the last one sent), ``last`` (the latest step's data without probes)
      and ``probes`` (the latest probe arrays, absent when none were recorded);
    * ``("epoch", record)``: the epoch record, with ``confusion`` (NumPy) and ``class_names``;
    * ``("ended", {"kind", "message", "result"})``, last: kind is finished, stopped or failed;
      ``result`` is ``{"state": TrainState, "weights": dict, "test": dict or None}`` (see
      ``test_result``) or None
      when no model ran or its weights must not be kept.
    """

    def __new__(cls, kind: str, data: dict):
        return super().__new__(cls, (kind, data))

    @property
    def kind(self) -> str:
        return self[0]

    @property
    def data(self) -> dict:
        return self[1]


def _ended(kind: str, message: str, result: dict | None) -> RunEvent:
    return RunEvent("ended", {"kind": kind, "message": message, "result": result})


def training_events(job: TrainingJob, control: Control,
                    min_interval_s: float = 1.0 / MAX_UPDATES_PER_S) -> Iterator[RunEvent]:
    """Build, train, report (see ``RunEvent``). Never raises: every failure ends the run with an
    ``ended`` event of kind ``failed`` and a message a person can act on."""
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
        yield _ended("failed", str(exc), None)
        return
    except Exception as exc:  # noqa: BLE001 - reported to the person, with the details logged
        log.error("training could not start:\n%s", traceback.format_exc())
        yield _ended("failed", f"training could not start: {type(exc).__name__}: {exc}", None)
        return
    yield from _train(job, control, trainer, model, dataset, device.description, fresh, note, min_interval_s)


def _train(job: TrainingJob, control: Control, trainer: Trainer, model: Model, dataset: Dataset,
           device_description: str, fresh: bool, note: str, min_interval_s: float) -> Iterator[RunEvent]:
    pending_steps: list[int] = []
    pending_losses: list[float] = []
    last_step: dict[str, Any] = {}
    latest_probes: dict | None = None
    last_sent = 0.0
    window_samples, window_start = 0, time.perf_counter()

    def flush() -> RunEvent | None:
        nonlocal pending_steps, pending_losses, latest_probes, last_sent, window_samples, window_start
        if not pending_steps:
            return None
        now = time.perf_counter()
        last = dict(last_step)
        last["samples_per_s"] = window_samples / max(now - window_start, 1e-9)
        payload = {"global_steps": np.asarray(pending_steps, dtype=np.int64),
                   "losses": np.asarray(pending_losses, dtype=np.float64), "last": last}
        if latest_probes is not None:
            payload["probes"] = latest_probes
        pending_steps, pending_losses, latest_probes = [], [], None
        last_sent, window_samples, window_start = now, 0, now
        return RunEvent("steps", payload)

    def result() -> dict:
        return {"state": copy.deepcopy(trainer.state), "weights": model.state_dict(), "test": test_result(trainer)}

    try:
        for event in trainer.run(job.epochs, control):
            if event.kind == "step":
                data = event.data
                pending_steps.append(int(data["global_step"]))
                pending_losses.append(float(data["loss"]))
                window_samples += min(trainer.settings.batch_size, len(trainer.split.train))
                last_step = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                             for k, v in data.items() if k != "probes"}
                if "probes" in data:
                    latest_probes = data["probes"]
                if time.perf_counter() - last_sent >= min_interval_s:
                    sent = flush()
                    if sent is not None:
                        yield sent
                time.sleep(YIELD_S)  # let the GUI thread take the interpreter between steps
            elif event.kind == "start":
                window_start = last_sent = time.perf_counter()
                notes = "; ".join(n for n in (note, event.data.get("note", "")) if n)
                yield RunEvent("started", dict(event.data, device_description=device_description,
                                               class_names=list(dataset.class_names), fresh=fresh, note=notes))
            elif event.kind == "epoch":
                sent = flush()
                if sent is not None:
                    yield sent
                record = dict(event.data)
                for key in ("confusion", "val_predictions"):
                    if record.get(key) is not None:
                        record[key] = np.array(record[key], copy=True)
                record["class_names"] = list(dataset.class_names)
                yield RunEvent("epoch", record)
            else:
                sent = flush()
                if sent is not None:
                    yield sent
                message = event.data.get("message", event.kind)
                if note:
                    message = f"{message} ({note})"
                yield _ended(event.kind, message, result())
                return
    except Exception as exc:  # noqa: BLE001 - a bug or a surprise in a layer: report, keep the old weights
        log.error("training failed:\n%s", traceback.format_exc())
        yield _ended("failed", f"training failed: {type(exc).__name__}: {exc}; "
                               "the project keeps its last saved weights", None)
        return
    # Trainer.run always ends with finished, stopped or failed; this keeps the run from ending
    # silently should a future trainer end without one.
    yield _ended("finished", "training finished", result())


def test_result(trainer: Trainer) -> dict | None:
    """``{"loss", "accuracy" (None for regression), "samples"}`` of the trained model on the
    held-out test split, or None when there is none or it cannot be computed (the run's result
    never depends on it)."""
    try:
        samples = trainer.test_size
        if not samples:
            return None
        metrics = trainer.test_metrics()
    except Exception:  # noqa: BLE001 - a missing score is logged, never a failed run
        log.warning("no test metrics for this run:\n%s", traceback.format_exc())
        return None
    return {"loss": float(metrics.loss), "accuracy": metrics.accuracy, "samples": int(samples)}
