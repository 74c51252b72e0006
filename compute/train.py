"""The training loop: a Qt-free generator of events (DESIGN section 3).

``Trainer.run(epochs, control)`` trains a model on a dataset and yields an ``Event`` per step
(loss, gradient norm, samples per second, probe data) and per epoch (train and validation loss
and accuracy, confusion matrix). Between steps it honours ``control`` (pause, stop). A NaN or
Inf loss or gradient stops the run with a clear message and keeps the last good weights. A
run is reproducible from its seed on the same device, and resumable: the trainer's state
(epochs done, optimizer state, history) is saved with the project, so 3 epochs, save, reopen,
2 more ends where 5 in one go would.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator

import numpy as np

from gatescope.compute.augment import active as augmentation_active
from gatescope.compute.augment import applies_to, augment_batch
from gatescope.compute.augment import check_settings as check_augmentation
from gatescope.compute.backend import to_numpy
from gatescope.compute.datasets import Dataset, DataError, Split, split_indices
from gatescope.compute.datasets.checks import MAX_SEED
from gatescope.compute.graph import Model, input_problem
from gatescope.compute.optim import OPTIMIZERS, SCHEDULES, clip_by_global_norm, global_norm, learning_rate, make_optimizer


WHOLE_RANGES = {"epochs": (0, 100_000), "batch_size": (1, 65_536), "step_epochs": (1, 100_000),
                "early_stopping": (0, 10_000), "steps_per_epoch": (0, 1_000_000), "seed": (0, MAX_SEED)}
"""The bounds of every count a project file can set (the window's fields use the same): a file
asking for 10^9 steps an epoch is refused on opening, never run. Real-valued settings are
checked in ``TrainSettings.check``, each also for being finite (JSON's ``Infinity`` and ``NaN``
pass a bare ``> 0``)."""


@dataclass
class TrainSettings:
    """Everything that shapes a training run; saved in the project file as ``training``."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_epochs: int = 10
    gamma: float = 0.1
    clip_norm: float = 0.0          # global-norm clipping threshold; 0 = off
    early_stopping: int = 0         # patience in epochs without a better validation loss; 0 = off
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    steps_per_epoch: int = 0        # 0 = one pass over the training split
    # Augmentation of training images and clips (compute.augment; 0 / False = off)
    augment_shift: float = 0.0
    augment_scale: float = 0.0
    augment_flip: bool = False
    augment_brightness: float = 0.0
    augment_noise: float = 0.0
    augment_speed: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        """Settings from a project's JSON; ValueError naming an unknown key or a bad value."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown training setting {', '.join(unknown)}")
        kwargs = {}
        for name, value in data.items():
            want = type(getattr(cls(), name))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value) if abs(value) < 2**1000 else math.inf  # refused by check()
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ValueError(f"training setting {name} must be a {want.__name__}, not {value!r}")
            kwargs[name] = value
        settings = cls(**kwargs)
        settings.check()
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """ValueError naming the first setting out of range."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device must be auto, cpu or gpu, not {self.device!r}")
        for name, (low, high) in WHOLE_RANGES.items():
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be from {low:,} to {high:,}, not {getattr(self, name)!r}")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 10):
            raise ValueError(f"learning_rate must be above 0 and at most 10, not {self.learning_rate!r}")
        for name in ("clip_norm", "weight_decay", "gamma"):
            if not (math.isfinite(getattr(self, name)) and 0 <= getattr(self, name) <= 1e6):
                raise ValueError(f"{name} must be a number from 0 to 1e6, not {getattr(self, name)!r}")
        if not 0 <= self.momentum < 1:  # NaN fails every comparison
            raise ValueError(f"momentum must be from 0 to below 1, not {self.momentum!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 0.9:
                raise ValueError(f"{name} must be between 0 and 0.9, not {getattr(self, name)!r}")
        check_augmentation(self)


def fit_problem(dataset: Dataset, input_shape: tuple[int, ...], task: str | None,
                head_shape: tuple[int, ...] | None) -> str | None:
    """Why a model with this Input shape, task and head output cannot train on ``dataset``
    (one sentence saying what to change), or None when it can.

    When the samples hold as many values as the Input expects, only in another shape (vectors
    of 40 for a GRU that reads 40 steps of one feature), the sentence points at a Reshape block
    after an Input of the data's shape, not at changing the Input alone (which would break the
    blocks after it).
    """
    have, want = tuple(dataset.sample_shape), tuple(input_shape)
    if have != want:
        from gatescope.compute.layers.base import describe_shape, with_article
        said = (f"the dataset's samples are {with_article(describe_shape(have))} but the Input block expects "
                f"{with_article(describe_shape(want))}")
        data_shape = ", ".join(map(str, have))
        if int(np.prod(have)) == int(np.prod(want)):
            return (f"{said}: set the Input's shape to {data_shape} and put a Reshape block with shape "
                    f"{', '.join(map(str, want))} right after it")
        return f"{said}; set the Input's shape to {data_shape} (the Input's inspector has \"Use the data's shape\")"
    if task != dataset.task:
        return (f"the dataset is for {dataset.task} but the model ends in a {task} block; "
                f"use {'Classify' if dataset.task == 'classification' else 'Regress'} as the output")
    if head_shape is None:
        return None
    if dataset.task == "classification":
        if dataset.n_classes > head_shape[-1]:
            return (f"the dataset has {dataset.n_classes} classes but the model gives {head_shape[-1]} "
                    f"class scores; set the last Dense to {dataset.n_classes} units")
        label_shape = dataset.y.shape[1:]
        if label_shape != tuple(head_shape[:-1]):
            return (f"the labels have shape {label_shape} per sample but the model predicts "
                    f"{tuple(head_shape[:-1]) or 'one label'} per sample; use return_sequences to match per-step labels")
    elif int(np.prod(dataset.y.shape[1:])) != int(np.prod(head_shape)):
        return f"the targets have shape {dataset.y.shape[1:]} per sample but the model predicts {tuple(head_shape)}"
    return None


def dataset_split(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """The train / validation / test split a training of ``dataset`` uses: a seeded shuffle of
    its samples (``split_indices``); a dataset with a test set of its own (``x_test``) gives
    none of its training samples to testing. The one home of that rule: the trainer, the
    window's confusion matrix and data summary, and the inside panels' probe pool use it."""
    return split_indices(len(dataset.x), val_fraction, 0.0 if dataset.x_test is not None else test_fraction, seed)


@dataclass
class Event:
    """One thing that happened: ``kind`` is start, step, epoch, finished, stopped or failed."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class Control:
    """Thread-safe pause/stop flags the loop checks between steps."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float | None = None) -> None:
        self._running.wait(timeout)


class TrainingFailed(RuntimeError):
    """Training cannot go on (NaN loss, out of memory, data that does not fit the model)."""


@dataclass
class Metrics:
    """``predictions``: per sample, the predicted class (classification, shaped as the targets)
    or the predicted values (regression), as host arrays; what a confusion-matrix cell or a
    scatter of predicted against true values is drawn from."""

    loss: float
    accuracy: float | None
    confusion: np.ndarray | None
    predictions: np.ndarray | None = None


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> Metrics:
    """Mean loss, accuracy and confusion matrix (classification) of ``model`` on ``x``, ``y``."""
    if len(x) == 0:
        return Metrics(float("nan"), None, None)
    total, correct, count = 0.0, 0, 0
    predictions = []
    classify = model.task == "classification"
    n_classes = model.input_shape and model.analysis.info[model.head_id].out_shape[-1]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64) if classify else None
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        out = model.forward(xb, training=False)
        total += model.loss(yb) * len(xb)
        if classify:
            pred = to_numpy(out.argmax(axis=-1))
            predictions.append(pred.astype(np.int32))
            pred, truth = pred.reshape(-1), np.asarray(yb).reshape(-1)
            correct += int((pred == truth).sum())
            count += truth.size
            np.add.at(confusion, (truth, pred), 1)
        else:
            predictions.append(np.asarray(to_numpy(out), dtype=np.float32))
    return Metrics(total / len(x), correct / count if classify else None, confusion,
                   np.concatenate(predictions) if predictions else None)


@dataclass
class TrainState:
    """What carries over between runs: epochs done, optimizer state and the history.

    ``step_numbers`` / ``step_losses``: every training step's global number (epoch x steps per
    epoch + step) and loss, in order, so the per-step curve survives saving; a run that starts
    an epoch again (after a stop mid-epoch) first drops the steps that epoch had recorded, and
    one with another number of steps per epoch drops them all.
    ``steps_per_epoch``: of the last run (0 before any).
    """

    epochs_done: int = 0
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = float("inf")
    epochs_without_improvement: int = 0
    step_numbers: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0


class Trainer:
    """Trains ``model`` on ``dataset`` with ``settings``; ``state`` resumes an earlier run."""

    def __init__(self, model: Model, dataset: Dataset, settings: TrainSettings, state: TrainState | None = None,
                 device_name: str = "cpu"):
        settings.check()
        self.model, self.dataset, self.settings = model, dataset, settings
        self.state = state or TrainState()
        self.device_name = device_name
        self.probe_interval_s = 0.2
        self._check_fit()
        self.split = dataset_split(dataset, settings.val_fraction, settings.test_fraction, settings.seed)
        self.optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.momentum,
                                        settings.nesterov, settings.weight_decay)
        if self.state.optimizer:
            self.optimizer.load_state_dict(self.state.optimizer)
        xp = model.xp
        self._backup = {name: xp.empty_like(p) for name, p, _ in model.parameters()}
        wanted = augmentation_active(settings)
        self.augmented = wanted and applies_to(dataset.sample_shape)
        self.note = ("augmentation changes images and clips; these samples are "
                     f"{len(dataset.sample_shape)}-axis arrays, so it is off") if wanted and not self.augmented else ""

    def _check_fit(self) -> None:
        model = self.model
        problem = fit_problem(self.dataset, model.input_shape, model.task,
                              model.analysis.info[model.head_id].out_shape)
        for x in (self.dataset.x, self.dataset.x_test):
            if problem is None and x is not None:
                problem = input_problem(model.analysis, model.spec, x)
        if problem:
            raise DataError(problem)

    # ----------------------------------------------------------------- data
    def _parts(self):
        ds, sp = self.dataset, self.split
        train = (ds.x[sp.train], ds.y[sp.train])
        val = (ds.x[sp.val], ds.y[sp.val])
        test = (ds.x_test, ds.y_test) if ds.x_test is not None else (ds.x[sp.test], ds.y[sp.test])
        return train, val, test

    @property
    def test_size(self) -> int:
        """How many held-out test samples there are (0: the dataset has no test split)."""
        return len(self._parts()[2][0])

    def test_metrics(self) -> Metrics:
        _, _, (xt, yt) = self._parts()
        return evaluate(self.model, xt, yt, max(256, self.settings.batch_size))

    def test_sequence_accuracy(self) -> float | None:
        """For an encoder-decoder dataset (one whose ``meta`` has an ``answer`` recipe): the share
        of held-out questions whose whole answer, written by the model feeding its own characters
        back (``compute.generate.answer_greedily``, no teacher forcing), is right. None for other
        datasets or without test samples."""
        recipe = self.dataset.meta.get("answer")
        _, _, (xt, yt) = self._parts()
        if not recipe or len(xt) == 0:
            return None
        from gatescope.compute.generate import answer_greedily, sequence_accuracy
        answers, _ = answer_greedily(self.model, xt, recipe, max(256, self.settings.batch_size))
        return sequence_accuracy(answers, yt, int(recipe["end_id"]))

    # ----------------------------------------------------------------- the batches
    def batch_plan(self) -> tuple[int, int]:
        """``(steps per epoch, batch size)`` of every epoch of this trainer's runs."""
        n = len(self.split.train)
        batch = min(self.settings.batch_size, n)
        steps = n // batch if self.settings.steps_per_epoch == 0 else self.settings.steps_per_epoch
        return max(1, steps), batch

    def batch_positions(self, epoch: int) -> Iterator[np.ndarray]:
        """Each batch of epoch ``epoch`` (0-based) as positions in the training split, step by
        step (``shuffled_batches``): what ``run`` reads. A function of the seed and the epoch
        alone, so a resumed run and variants trained side by side (``compute.lockstep``) read
        the same batches."""
        steps, batch = self.batch_plan()
        return shuffled_batches(np.random.default_rng([self.settings.seed, epoch]), len(self.split.train), batch,
                                steps)

    def epoch_batches(self, epoch: int) -> Iterator[np.ndarray]:
        """Each batch of epoch ``epoch`` as dataset indices (into ``dataset.x``), step by step."""
        train = np.asarray(self.split.train)
        for positions in self.batch_positions(epoch):
            yield train[positions]

    # ----------------------------------------------------------------- the loop
    def run(self, epochs: int | None = None, control: Control | None = None) -> Iterator[Event]:
        """Train ``epochs`` more epochs (default: the rest of ``settings.epochs``), yielding events."""
        s, model, control = self.settings, self.model, control or Control()
        epochs = s.epochs - self.state.epochs_done if epochs is None else epochs
        (x_train, y_train), (x_val, y_val), _ = self._parts()
        n = len(x_train)
        steps, batch = self.batch_plan()
        self._drop_unfinished_steps(steps)
        yield Event("start", {"device": self.device_name, "train": n, "val": len(x_val),
                              "steps_per_epoch": steps, "epochs": epochs, "first_epoch": self.state.epochs_done,
                              "note": self.note})
        started = time.perf_counter()
        last_probe = 0.0
        last_good_loss = None
        for _ in range(epochs):
            epoch = self.state.epochs_done
            model.set_rng(np.random.default_rng([s.seed, epoch, 1]))
            lr = learning_rate(s.learning_rate, s.schedule, epoch, s.epochs, s.step_epochs, s.gamma)
            epoch_start = time.perf_counter()
            batches = self.batch_positions(epoch)
            losses, correct, counted = [], 0, 0
            for step in range(steps):
                control.wait_while_paused()
                if control.stop_requested:
                    yield Event("stopped", {"message": "stopped; the weights are those of the last step",
                                            "epoch": epoch})
                    return
                t0 = time.perf_counter()
                idx = next(batches)
                xb, yb = x_train[idx], y_train[idx]
                if self.augmented:   # the training split only; reproducible from the seed
                    xb = augment_batch(xb, s, np.random.default_rng([s.seed, epoch, step, 5]))
                model.zero_grads()
                try:
                    # overflow shows up as a non-finite loss or norm, reported below in words
                    with np.errstate(over="ignore", invalid="ignore"):
                        out = model.forward(xb, training=True)
                        loss = model.loss(yb)
                        model.backward()
                        grads = [g for _, _, g in model.parameters()]
                        norm = global_norm(grads)
                except _out_of_memory_errors() as exc:
                    self._restore_backup_if(last_good_loss)
                    yield Event("failed", {"message": f"out of memory on the {self.device_name} at batch size "
                                                      f"{batch} ({exc}); use a smaller batch size"})
                    return
                if not (np.isfinite(loss) and np.isfinite(norm)):
                    self._restore_backup_if(last_good_loss)
                    what = "loss" if not np.isfinite(loss) else "gradient"
                    yield Event("failed", {"message": (
                        f"the {what} became {'NaN' if np.isnan(loss if what == 'loss' else norm) else 'infinite'} "
                        f"at epoch {epoch + 1}, step {step + 1}; the weights of the last good step are kept. "
                        "Lower the learning rate or turn on gradient clipping."), "epoch": epoch, "step": step})
                    return
                clip_by_global_norm(grads, s.clip_norm, norm)
                for name, p, _ in model.parameters():
                    self._backup[name][...] = p
                self.optimizer.step(lr)
                last_good_loss = loss
                losses.append(loss)
                self.state.step_numbers.append(epoch * steps + step)
                self.state.step_losses.append(float(loss))
                batch_accuracy = None
                if model.task == "classification":
                    pred = to_numpy(out.argmax(axis=-1))
                    batch_correct = int((pred == yb).sum())
                    correct += batch_correct
                    counted += yb.size
                    batch_accuracy = batch_correct / yb.size
                now = time.perf_counter()
                data = {"epoch": epoch, "step": step, "global_step": epoch * steps + step, "steps": steps,
                        "loss": loss, "accuracy": batch_accuracy, "grad_norm": norm, "lr": lr,
                        "samples_per_s": len(idx) / max(now - t0, 1e-9), "elapsed_s": now - started}
                if now - last_probe >= self.probe_interval_s:
                    probes = collect_probes(model)
                    if probes:
                        data["probes"] = probes
                    last_probe = now
                yield Event("step", data)
            val = evaluate(model, x_val, y_val, max(256, batch))
            self.state.epochs_done += 1
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                      "train_accuracy": correct / counted if counted else None,
                      "val_loss": val.loss if len(x_val) else None, "val_accuracy": val.accuracy,
                      "lr": lr, "seconds": time.perf_counter() - epoch_start}
            self.state.history.append(record)
            self.state.optimizer = self.optimizer.state_dict()
            yield Event("epoch", dict(record, confusion=val.confusion, val_predictions=val.predictions))
            if s.early_stopping and len(x_val):
                if val.loss < self.state.best_val_loss - 1e-12:
                    self.state.best_val_loss = val.loss
                    self.state.epochs_without_improvement = 0
                    self._best = model.state_dict()
                else:
                    self.state.epochs_without_improvement += 1
                    if self.state.epochs_without_improvement >= s.early_stopping:
                        if getattr(self, "_best", None) is not None:
                            model.load_state_dict(self._best)
                        yield Event("finished", {"message": f"stopped early: the validation loss has not improved "
                                                            f"for {s.early_stopping} epochs; the best weights are kept",
                                                 "early_stopped": True})
                        return
        yield Event("finished", {"message": "training finished", "seconds": time.perf_counter() - started})

    def _drop_unfinished_steps(self, steps: int) -> None:
        """Forget the recorded steps of an epoch this run starts again (a run stopped mid-epoch
        resumes at that epoch's first step), so the step numbers keep increasing. With another
        number of steps per epoch than the last run (the batch size changed) the old numbers
        mean other places on the axis: the step record starts anew."""
        state = self.state
        if state.steps_per_epoch and state.steps_per_epoch != steps:
            state.step_numbers.clear()
            state.step_losses.clear()
        state.steps_per_epoch = steps
        keep = state.epochs_done * steps
        while state.step_numbers and state.step_numbers[-1] >= keep:
            state.step_numbers.pop()
            state.step_losses.pop()

    def _restore_backup_if(self, last_good_loss) -> None:
        """Put back the weights that gave the last finite loss (those before the last update)."""
        if last_good_loss is None:
            return
        for name, p, _ in self.model.parameters():
            p[...] = self._backup[name]


def shuffled_batches(rng: np.random.Generator, n: int, batch: int, steps: int) -> Iterator[np.ndarray]:
    """The sample indices of each of ``steps`` batches of ``batch``: consecutive slices of passes
    over ``rng.permutation(n)``, one pass after another. Each permutation is drawn when the
    steps reach it (building them all first took minutes for 10^6 steps of a small set)."""
    pending = np.zeros(0, dtype=np.int64)
    for _ in range(steps):
        while len(pending) < batch:
            pending = np.concatenate([pending, rng.permutation(n)])
        yield pending[:batch]
        pending = pending[batch:]


def collect_probes(model: Model) -> dict[str, dict[str, np.ndarray]]:
    """``block_id -> probe arrays`` for every layer that recorded probes in the last pass."""
    out = {}
    for bid, layer in model.layers.items():
        data = getattr(layer, "probe_data", None)
        if data:
            out[bid] = {k: np.array(v, copy=True) for k, v in data.items()}
    return out


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """Out-of-memory exception types of the host and, when CuPy is present, of the GPU."""
    types: list[type[BaseException]] = [MemoryError]
    try:
        import cupy  # type: ignore[import-not-found]
        types.append(cupy.cuda.memory.OutOfMemoryError)
    except Exception:  # noqa: BLE001
        pass
    return tuple(types)
