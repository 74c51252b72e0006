"""The run history: every training run of a project, kept in its file (issue 19).

A ``Run`` is what one run was and what it gave: when it ended, how (finished, stopped,
failed), the model and training settings it trained, what differed from the run before it
(``changes``, sentences such as ``"learning_rate 0.001 → 0.01"`` or ``"b1: LSTM → GRU"``), its
epoch records and per-step losses, the held-out test result, its time and parameter count, and
its weights when the project keeps them. Training in the window, ``gatescope train`` and each
variant of a comparison add one. ``runs_to_json`` and ``runs_arrays`` give the two members of
the file (``runs.json`` and ``runs.npz``, see docs/file-format.md); ``studio.project`` reads them
back and checks every value. Nothing here imports Qt.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.graph import GraphSpec
from gatescope.compute.layers.base import SettingsError
from gatescope.compute.train import TrainSettings, TrainState

KINDS = ("train", "compare")
ENDINGS = ("finished", "stopped", "failed")
MAX_RUNS = 1000                 # runs a file may hold
MAX_CHANGES = 200               # sentences of one run's settings diff
MAX_TEXT = 2000                 # characters of one label or sentence
MAX_EPOCHS = 100_000            # epoch records of one run
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclass
class Run:
    """One training run (see the module docstring).

    ``number``: 1, 2, ... in the order the runs were made; ``after``: the number of the run
    ``changes`` compares with (None for the first); ``first_epoch``: epochs the model had
    trained before this run (a run that resumed); ``epochs``: this run's epoch records (as
    ``compute.train.TrainState.history`` holds them); ``test``: ``{"loss", "accuracy",
    "samples"}`` or None; ``step_numbers``/``step_losses``: this run's per-step curve;
    ``steps_per_epoch``: of this run (its step numbers count in it); ``weights``: host arrays
    keyed ``block/name``, empty when not kept.
    """

    number: int
    when: str
    kind: str
    label: str
    ended: str
    graph: GraphSpec
    training: TrainSettings
    after: int | None = None
    changes: list[str] = field(default_factory=list)
    first_epoch: int = 0
    epochs: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    seconds: float = 0.0
    parameters: int = 0
    steps_per_epoch: int = 0
    step_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    step_losses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        """``train_loss``, ``val_loss``, ``val_accuracy`` (of the last epoch), ``test_loss``,
        ``test_accuracy``, ``epochs`` (trained in this run), ``seconds`` or ``parameters``;
        None where the run has none."""
        if name in ("train_loss", "val_loss", "val_accuracy"):
            value = self.epochs[-1].get(name) if self.epochs else None
        elif name in ("test_loss", "test_accuracy"):
            value = (self.test or {}).get(name[5:])
        elif name == "epochs":
            value = len(self.epochs)
        elif name in ("seconds", "parameters"):
            value = getattr(self, name)
        else:
            raise KeyError(name)
        return None if value is None else float(value)

    @property
    def title(self) -> str:
        """``"run 3"``, or ``"run 3 · GRU"`` for a variant of a comparison."""
        return f"run {self.number}" + (f" · {self.label}" if self.label else "")

    @property
    def when_local(self) -> str:
        """``when`` in the local time zone, to the minute (``2024-05-01 14:03``)."""
        return _dt.datetime.fromisoformat(self.when).astimezone().strftime("%Y-%m-%d %H:%M")

    def describe_changes(self) -> str:
        """The settings diff in one line: ``"first run"``, ``"as run 3"`` or ``"vs run 3: ..."``."""
        if self.after is None:
            return "first run"
        if not self.changes:
            return f"as run {self.after}"
        return f"vs run {self.after}: " + "; ".join(self.changes)


def _effective(block_type: str, settings: dict) -> dict:
    """A block's settings with its defaults filled in (as given when they cannot be read)."""
    cls = layer_registry.REGISTRY.get(block_type)
    if cls is None:
        return dict(settings)
    try:
        return cls.coerce_settings(settings)
    except SettingsError:
        return dict(settings)


def show_value(value: Any) -> str:
    """A setting's value in a sentence: ``on``/``off``, ``0.001``, ``8x8``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def settings_diff(graph_before: GraphSpec, training_before: TrainSettings,
                  graph_after: GraphSpec, training_after: TrainSettings) -> list[str]:
    """What changed from one run's model and settings to the next's, one sentence each: blocks
    added or removed, a block's type or settings, the wiring, the training settings."""
    changes = []
    before = {b.id: b for b in graph_before.blocks}
    after = {b.id: b for b in graph_after.blocks}
    for block_id in before.keys() - after.keys():
        changes.append(f"removed {before[block_id].type} {block_id}")
    for block in graph_after.blocks:
        old = before.get(block.id)
        if old is None:
            changes.append(f"added {block.type} {block.id}")
            continue
        if old.type != block.type:
            changes.append(f"{block.id}: {old.type} → {block.type}")
        old_settings, new_settings = _effective(old.type, old.settings), _effective(block.type, block.settings)
        for name in new_settings:
            if name in old_settings and old_settings[name] != new_settings[name]:
                old_value, new_value = show_value(old_settings[name]), show_value(new_settings[name])
                changes.append(f"{block.id} {name} {old_value} → {new_value}")
    if {(w.src, w.dst, w.port) for w in graph_before.wires} != {(w.src, w.dst, w.port) for w in graph_after.wires}:
        changes.append("the wiring changed")
    old_training, new_training = training_before.to_dict(), training_after.to_dict()
    for name, value in new_training.items():
        if old_training[name] != value:
            changes.append(f"{name} {show_value(old_training[name])} → {show_value(value)}")
    return changes


def new_run(runs: list[Run], *, kind: str, label: str, ended: str, graph: GraphSpec, training: TrainSettings,
            state: TrainState, first_epoch: int, test: dict | None, seconds: float, parameters: int,
            weights: dict[str, np.ndarray] | None = None, when: _dt.datetime | None = None) -> Run:
    """The run that took ``state`` from ``first_epoch`` epochs to where it is now, numbered after
    ``runs`` and compared with the last of them, timed now; it holds copies of what it is given
    (``weights`` None or empty: not kept)."""
    if kind not in KINDS or ended not in ENDINGS:
        raise ValueError(f"a run's kind is one of {', '.join(KINDS)} and its end one of {', '.join(ENDINGS)}")
    previous = runs[-1] if runs else None
    numbers = np.asarray(state.step_numbers, dtype=np.int64)
    mine = numbers >= int(first_epoch) * int(state.steps_per_epoch)   # the steps this run made
    changes = settings_diff(previous.graph, previous.training, graph, training) if previous else []
    return Run(number=previous.number + 1 if previous else 1,
               when=(when or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
               kind=kind, label=label[:MAX_TEXT], ended=ended,
               graph=GraphSpec.from_dict(graph.to_dict()), training=TrainSettings(**training.to_dict()),
               after=previous.number if previous else None, changes=[c[:MAX_TEXT] for c in changes[:MAX_CHANGES]],
               first_epoch=int(first_epoch), epochs=[_finite_record(r) for r in state.history[first_epoch:]],
               test=_finite_test(test), seconds=float(seconds), parameters=int(parameters),
               steps_per_epoch=int(state.steps_per_epoch), step_numbers=numbers[mine].copy(),
               step_losses=np.asarray(state.step_losses, dtype=np.float32)[mine].copy(),
               weights={k: np.array(v, copy=True) for k, v in (weights or {}).items()})


def _finite(value: Any) -> Any:
    """A number as the file keeps it: a plain float or int, a non-finite one as None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return int(value) if isinstance(value, np.integer) else value


def _finite_test(test: dict | None) -> dict | None:
    """A test result, a non-finite loss or accuracy (of a model that diverged) as None."""
    return {k: _finite(v) for k, v in test.items()} if test else None


def _finite_record(record: dict) -> dict:
    """An epoch record with the keys the history keeps, non-finite numbers as None."""
    return {key: _finite(record.get(key)) for key in EPOCH_KEYS}


# ----------------------------------------------------------------------------- the file's members
def runs_to_json(runs: list[Run], keep_weights: bool) -> dict[str, Any]:
    """``runs.json``: ``{"keep_weights": bool, "runs": [...]}`` (arrays go to ``runs_arrays``)."""
    return {"keep_weights": bool(keep_weights), "runs": [{
        "number": r.number, "when": r.when, "kind": r.kind, "label": r.label, "ended": r.ended,
        "graph": r.graph.to_dict(), "training": r.training.to_dict(), "after": r.after,
        "changes": list(r.changes), "first_epoch": r.first_epoch, "epochs": [_finite_record(e) for e in r.epochs],
        "test": r.test, "seconds": r.seconds, "parameters": r.parameters, "steps_per_epoch": r.steps_per_epoch,
        "has_weights": bool(r.weights),
    } for r in runs]}


def array_key(number: int, part: str) -> str:
    """The ``runs.npz`` key of run ``number``'s ``part``: ``global_step``, ``loss`` or ``weights/BLOCK/NAME``."""
    return f"run{number}/{part}"


def runs_arrays(runs: list[Run]) -> dict[str, np.ndarray]:
    """``runs.npz``: each run's per-step curve and, when kept, its weights."""
    arrays: dict[str, np.ndarray] = {}
    for r in runs:
        arrays[array_key(r.number, "global_step")] = np.asarray(r.step_numbers, dtype=np.int64)
        arrays[array_key(r.number, "loss")] = np.asarray(r.step_losses, dtype=np.float32)
        for name, value in r.weights.items():
            arrays[array_key(r.number, f"weights/{name}")] = np.asarray(value)
    return arrays


def run_state(run: Run) -> TrainState:
    """Where training stands after ``run``, for a project whose weights become the run's: its
    epochs and steps (those it made; a resumed run's earlier ones are not kept with it), no
    optimizer state (the next run starts its optimizer afresh)."""
    return TrainState(epochs_done=run.first_epoch + len(run.epochs), history=[dict(e) for e in run.epochs],
                      step_numbers=[int(v) for v in run.step_numbers], step_losses=[float(v) for v in run.step_losses],
                      steps_per_epoch=run.steps_per_epoch)


def run_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """The runs as the run-history table takes them (``widgets.compare.RunHistoryPanel``): their
    metrics, the diff in one line, and their curves with x in epochs (step k of an epoch of S
    steps at ``(k + 1) / S``, where that epoch's record sits)."""
    rows = []
    for run in runs:
        epochs = [e for e in run.epochs if e.get("epoch") is not None]
        per_epoch = max(run.steps_per_epoch, 1)
        rows.append({
            "number": run.number, "title": run.title, "when": run.when_local, "ended": run.ended,
            "changes": run.describe_changes(), "has_weights": bool(run.weights),
            **{name: run.metric(name) for name in METRICS + ("epochs", "seconds", "parameters")},
            "epoch_x": np.array([e["epoch"] for e in epochs if e.get("train_loss") is not None], dtype=float),
            "train_curve": np.array([e["train_loss"] for e in epochs if e.get("train_loss") is not None], dtype=float),
            "val_curve": np.array([e["val_loss"] for e in epochs if e.get("val_loss") is not None], dtype=float),
            "val_x": np.array([e["epoch"] for e in epochs if e.get("val_loss") is not None], dtype=float),
            "step_x": (np.asarray(run.step_numbers, dtype=float) + 1) / per_epoch,
            "step_curve": np.asarray(run.step_losses, dtype=float)})
    return rows
