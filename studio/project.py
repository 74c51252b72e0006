"""Project files: one ``NAME.gscope`` zip holding the model, its weights, training state and layout.

The format is documented in ``docs/file-format.md`` (a contract, DESIGN section 5). Loading
never executes or unpickles anything and reads nothing it has not sized first: the file must
be a regular file of at most 4 GiB; the zip is read from the file member by member (never the
whole file at once), each member's declared size checked before it is inflated, the arrays'
limits taken from the model the graph describes; JSON is checked key by key, every number
finite and every count bounded; arrays are read after their headers are checked against the
bytes they store. Anything else (not a zip, truncated, duplicate or escaping members,
encrypted or foreign compression, JSON nested past 64 levels, wrong types, unknown block
types, a newer schema, misshapen or non-finite arrays) raises ``ProjectError`` with one clear
sentence; nothing is written and nothing else changes.

Saving checks the project with the same rules first (a project that could not be opened again
is never written: a block id with ``/`` once replaced a good file with one that could not be
opened), then writes atomically (``studio.atomic``): a temporary file in the same folder, then a
rename. Saving and opening remove the temporary files killed saves of the same file left.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.datasets import DataError
from gatescope.compute.datasets.checks import (MAX_FILE_BYTES, absurdly_compressed, npz_arrays, raise_absurd,
                                               read_member, reading_zip, regular_file, zip_members)
from gatescope.compute.graph import Analysis, Block, GraphSpec, Model, Wire, analyse
from gatescope.compute.optim import check_state
from gatescope.compute.train import WHOLE_RANGES, TrainSettings, TrainState
from gatescope.studio import runs as run_history
from gatescope.studio.atomic import remove_stale_temporaries, write_atomically
from gatescope.studio.compare_choice import ChoiceError, CompareChoice
from gatescope.studio.compare_choice import from_json as compare_from_json

SCHEMA_VERSION = 1
FORMAT_NAME = "gatescope-project"
SUFFIX = ".gscope"

MEMBERS = ("project.json", "history.json", "weights.npz", "optimizer.npz", "steps.npz", "runs.json", "runs.npz")
MODEL_BOUNDED = ("weights.npz", "optimizer.npz")  # bounded by the model's size, not a compression ratio:
# an optimizer state of zeros (SGD without momentum, parameters no gradient reached) deflates 1000x
MAX_JSON_BYTES = 16 * 2**20
MAX_HISTORY_BYTES = 64 * 2**20      # 10^5 epoch records of about 200 bytes each, and room
MAX_JSON_DEPTH = 64                 # the deepest GateScope writes is 5 (panels); 990 overflowed the parser
MAX_ID_LENGTH = 64                  # a 70,000-character id overflowed the zip's 16-bit name length
MAX_TEXT_LENGTH = 100_000           # a project's name and description
MAX_EPOCHS_DONE = 10**7
ARRAY_OVERHEAD_BYTES = 4096         # an .npy header and its zip entry, per array, with room
ARRAYS_PER_BLOCK = 32               # a bidirectional peephole LSTM has 14; room for more


class ProjectError(ValueError):
    """A project file that cannot be opened or saved; the message names the problem."""


@dataclass
class Project:
    """Everything a ``.gscope`` file holds.

    ``positions``: block id -> (x, y) on the canvas. ``dataset``: a dataset reference (see
    ``compute.datasets.load``). ``panels``: the window's layout and panel choices, opaque to
    the engine. ``weights`` and ``optimizer``: host arrays keyed ``block_id/name``; empty for
    an untrained model. ``runs``: the run history (``studio.runs``), each run's weights kept when
    ``keep_run_weights``; ``compare``: the comparison the Compare view and ``gatescope compare``
    make when asked for none (``studio.compare_choice``), or None.
    """

    name: str = "untitled"
    graph: GraphSpec = field(default_factory=GraphSpec)
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    training: TrainSettings = field(default_factory=TrainSettings)
    dataset: dict[str, Any] = field(default_factory=lambda: {"kind": "builtin", "name": "digits"})
    panels: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=lambda: {"epochs_done": 0})
    step_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    step_losses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    runs: list[run_history.Run] = field(default_factory=list)
    keep_run_weights: bool = True
    compare: CompareChoice | None = None
    path: Path | None = None

    @property
    def trained(self) -> bool:
        return bool(self.weights)

    def train_state(self) -> TrainState:
        """The resumable part of training, as the trainer takes it."""
        best = self.trainer.get("best_val_loss")
        return TrainState(epochs_done=int(self.trainer.get("epochs_done", 0)), optimizer=dict(self.optimizer),
                          history=list(self.history),
                          best_val_loss=float("inf") if best is None else float(best),
                          epochs_without_improvement=int(self.trainer.get("epochs_without_improvement", 0)),
                          step_numbers=[int(v) for v in self.step_numbers],
                          step_losses=[float(v) for v in self.step_losses],
                          steps_per_epoch=self.steps_per_epoch)

    @property
    def steps_per_epoch(self) -> int:
        """Training steps per epoch of the last run (0 when unknown)."""
        return int(self.trainer.get("steps_per_epoch", 0))

    def take_train_state(self, state: TrainState, weights: dict[str, np.ndarray],
                         last_run: dict[str, Any] | None = None) -> None:
        """Record a finished or interrupted run: weights, optimizer state, history.

        ``last_run``: what the window shows of the run when the project is opened again:
        ``planned_epochs`` (where it was to end), ``ended`` (finished, stopped, failed) and
        ``test`` (``{"loss", "accuracy", "samples"}`` on the held-out test split, or None).
        """
        self.weights = weights
        self.optimizer = dict(state.optimizer)
        self.history = list(state.history)
        self.trainer = {"epochs_done": state.epochs_done,
                        "best_val_loss": None if math.isinf(state.best_val_loss) else state.best_val_loss,
                        "epochs_without_improvement": state.epochs_without_improvement,
                        "steps_per_epoch": state.steps_per_epoch}
        if last_run is not None:
            self.trainer["last_run"] = _checked_last_run(last_run)
        self.step_numbers = np.asarray(state.step_numbers, dtype=np.int64)
        self.step_losses = np.asarray(state.step_losses, dtype=np.float32)

    def build_model(self, xp=np, seed: int | None = None) -> Model:
        """The model of this project, with its saved weights when it has them."""
        model = Model(self.graph, seed=self.training.seed if seed is None else seed, xp=xp)
        if self.weights:
            model.load_state_dict(self.weights)
        return model

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "graph": self.graph.to_dict(),
            "positions": {k: [float(v[0]), float(v[1])] for k, v in self.positions.items()},
            "training": self.training.to_dict(),
            "dataset": self.dataset,
            "panels": self.panels,
            "trainer": self.trainer,
            **({"compare": self.compare.to_json()} if self.compare is not None else {}),
        }


# ----------------------------------------------------------------------------- saving
def save_project(project: Project, path: str | os.PathLike) -> Path:
    """Write ``project`` to ``path`` atomically; returns the path. ProjectError if it cannot.

    The project is first checked with the rules opening applies (``check_for_saving``): one that
    could not be opened again is refused before the old file is touched.
    """
    path = Path(path)
    payload = _pack(project, path.name)
    remove_stale_temporaries(path)
    try:
        write_atomically(path, payload)  # the old file stays whole until the new one is complete
    except OSError as exc:
        raise ProjectError(f"cannot save {path}: {exc.strerror or exc}") from None
    project.path = path
    return path


def check_for_saving(project: Project, label: str = "the project") -> str:
    """``project.json`` of ``project`` as text, after checking it as opening would (ids, types,
    finite numbers, bounded counts, the history, the arrays' names); ProjectError naming the
    first problem."""
    for block in project.graph.blocks:
        _check_block_id(block.id, label)
    try:
        text = json.dumps(project.to_json(), indent=2, allow_nan=False)
        history = json.dumps(_finite(project.history), indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"cannot save {label}: it holds a value a project file cannot (({exc})") from None
    _project_from_json(_parse_json(text.encode("utf-8"), label, "project.json"), label)
    _check_history(_parse_json(history.encode("utf-8"), label, "history.json"), label)
    ids = {b.id for b in project.graph.blocks}
    _check_array_names(project.weights, ids, 2, label, "weights")
    _check_array_names(project.optimizer, ids, 3, label, "optimizer state")
    _check_runs_for_saving(project, label)
    return text


def _pack(project: Project, label: str = "the project") -> bytes:
    text = check_for_saving(project, label)
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("project.json", text)
            z.writestr("history.json", json.dumps(_finite(project.history), indent=1, allow_nan=False))
            z.writestr("weights.npz", _npz_bytes(project.weights))
            z.writestr("optimizer.npz", _npz_bytes(project.optimizer))
            if len(project.step_numbers):
                z.writestr("steps.npz", _npz_bytes({"global_step": project.step_numbers,
                                                    "loss": project.step_losses}))
            _pack_runs(z, project)
    except (ValueError, TypeError, struct.error, zipfile.LargeZipFile) as exc:
        raise ProjectError(f"cannot save {label}: {exc}") from None
    return buffer.getvalue()


def _finite(value):
    """JSON has no NaN: non-finite floats are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v, order="C") for k, v in arrays.items()})  # keeps 0-d arrays 0-d
    return buffer.getvalue()


# ----------------------------------------------------------------------------- loading
def load_project(path: str | os.PathLike) -> Project:
    """Read and fully check a project file; ProjectError with one clear sentence if it cannot.

    The file is never written; a successful open removes the temporary files that killed saves
    of it left beside it (``studio.atomic``).
    """
    path = Path(path)
    try:
        regular_file(path, "the project", MAX_FILE_BYTES)
    except DataError as exc:
        raise ProjectError(str(exc)) from None
    try:
        with open(path, "rb") as stream:
            project = parse_project(stream, path.name)
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
    project.path = path
    remove_stale_temporaries(path)
    return project


def parse_project(data: bytes | IO[bytes], label: str = "the file") -> Project:
    """A Project from the bytes of a ``.gscope`` file, or a binary file open on one (see
    ``load_project``)."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    if not zipfile.is_zipfile(stream):
        raise ProjectError(f"{label} is not a GateScope project: it is not a zip archive "
                           "(it may be damaged, or a different kind of file)")
    stream.seek(0)
    try:
        with reading_zip(label):
            z = zipfile.ZipFile(stream)
        with z:
            with reading_zip(label):
                infos = zip_members(z, label, ratio_exempt=MODEL_BOUNDED)
            if "project.json" not in infos:
                raise ProjectError(f"{label} is not a complete GateScope project: it has no project.json")
            if infos["project.json"].file_size > MAX_JSON_BYTES:
                raise ProjectError(f"{label}: project.json declares {infos['project.json'].file_size:,} bytes, "
                                   "far more than a project description needs; refusing it")
            project = _project_from_json(_parse_json(_member(z, infos["project.json"], label), label,
                                                     "project.json"), label)
            analysis = analyse(project.graph)
            limits = _member_limits(analysis)
            for name in MEMBERS[1:]:
                if name in infos and infos[name].file_size > limits[name]:
                    raise ProjectError(f"{label}: {name} declares {infos[name].file_size:,} bytes, more than "
                                       f"this model's {limits[name]:,} could need; the file is damaged")
                if name in infos and name in MODEL_BOUNDED and not analysis.ok and absurdly_compressed(infos[name]):
                    raise_absurd(infos[name], label)
            if "history.json" in infos:
                project.history = _check_history(_parse_json(_member(z, infos["history.json"], label), label,
                                                             "history.json"), label)
            arrays = {name: _read_npz(_member(z, infos[name], label), label, name)
                      for name in ("weights.npz", "optimizer.npz", "steps.npz") if name in infos}
            runs_members = _read_runs_members(z, infos, label)
    except DataError as exc:
        raise ProjectError(str(exc)) from None
    project.weights = arrays.get("weights.npz", {})
    project.optimizer = arrays.get("optimizer.npz", {})
    if arrays.get("steps.npz"):
        project.step_numbers, project.step_losses = _check_steps(arrays["steps.npz"], label)
    _check_weights(project, analysis, label)
    _check_optimizer(project, label)
    project.runs, project.keep_run_weights = _runs_from_members(*runs_members, label)
    return project


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    with reading_zip(label):
        return read_member(z, info, label)


def _member_limits(analysis: Analysis) -> dict[str, int]:
    """The most bytes each member may declare. For a graph that can be built the arrays' members
    are bounded by what its weights take (float64 at most, and Adam's two slots), so a damaged
    member cannot make the reader inflate a gigabyte before its CRC is checked."""
    if analysis.ok:
        weights = 8 * analysis.total_params + ARRAY_OVERHEAD_BYTES * ARRAYS_PER_BLOCK * (len(analysis.info) + 1)
        optimizer = 2 * weights
    else:
        weights = optimizer = MAX_FILE_BYTES
    return {"history.json": MAX_HISTORY_BYTES, "weights.npz": weights, "optimizer.npz": optimizer,
            "steps.npz": MAX_FILE_BYTES, "runs.json": MAX_HISTORY_BYTES, "runs.npz": MAX_FILE_BYTES}


def _parse_json(raw: bytes, label: str, member: str):
    """JSON with every number finite (and whole numbers of at most 30 digits), nested at most
    ``MAX_JSON_DEPTH`` deep."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float,
                           parse_int=_short_int)
    except _NotANumber as exc:
        raise ProjectError(f"{label}: {member} holds {exc}; every number in a project file must be finite "
                           "and of ordinary size") from None
    except RecursionError:
        raise ProjectError(f"{label}: {member} is nested too deeply to be a GateScope project") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProjectError(f"{label}: {member} is not valid JSON ({exc})") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise ProjectError(f"{label}: {member} is nested more than {MAX_JSON_DEPTH} levels deep, "
                           "far deeper than a project needs; refusing it")
    return value


class _NotANumber(ValueError):
    """A number JSON parsing refuses: NaN, Infinity, or one beyond a float's or a count's range."""


def _refuse_constant(name: str):
    raise _NotANumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(f"the number {text[:40]}, too large for a float")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:  # no count in a project comes near 10^30
        raise _NotANumber(f"a whole number of {len(text.lstrip('-')):,} digits")
    return int(text)


def _json_depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _read_npz(raw: bytes, label: str, member: str) -> dict[str, np.ndarray]:
    """Arrays of an npz, each header checked against its stored size before reading; no pickles;
    numbers only."""
    where = f"{label}: {member}"
    with reading_zip(where), zipfile.ZipFile(io.BytesIO(raw)) as inner:
        arrays = dict(npz_arrays(inner, where))
    for name, value in arrays.items():
        if value.dtype.kind not in "fiu":
            raise ProjectError(f"{where}, array {name!r}, holds {value.dtype} values; only numbers are allowed")
    return arrays


def _check_steps(arrays: dict[str, np.ndarray], label: str) -> tuple[np.ndarray, np.ndarray]:
    """``steps.npz``'s ``global_step`` and ``loss``: two 1-D arrays of one length, whole step
    numbers that increase, finite losses (the per-step loss curve; see docs/file-format.md)."""
    numbers, losses = arrays.get("global_step"), arrays.get("loss")
    if numbers is None or losses is None or set(arrays) != {"global_step", "loss"}:
        raise ProjectError(f"{label}: steps.npz must hold exactly the arrays global_step and loss "
                           f"(it holds {', '.join(sorted(arrays)) or 'none'})")
    if numbers.ndim != 1 or losses.ndim != 1 or len(numbers) != len(losses):
        raise ProjectError(f"{label}: steps.npz global_step {numbers.shape} and loss {losses.shape} must be "
                           "two lists of the same length")
    if numbers.dtype.kind not in "iu" or (len(numbers) and (numbers[0] < 0 or numbers[-1] > 2**62
                                                            or np.any(np.diff(numbers) <= 0))):
        raise ProjectError(f"{label}: steps.npz global_step must be whole step numbers that increase")
    if losses.dtype.kind != "f" or not np.isfinite(losses).all():
        raise ProjectError(f"{label}: steps.npz loss must hold finite numbers")
    return numbers.astype(np.int64), losses.astype(np.float32)


def _project_from_json(meta: Any, label: str) -> Project:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ProjectError(f"{label}: project.json {what}")

    need(isinstance(meta, dict), "must be a JSON object")
    need(meta.get("format") == FORMAT_NAME, f"does not say format {FORMAT_NAME!r}; this is not a GateScope project")
    version = meta.get("schema_version")
    need(_whole(version) and version >= 1, "has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise ProjectError(f"{label} was saved by a newer GateScope (file schema {version}; this version "
                           f"reads up to {SCHEMA_VERSION}); update GateScope to open it")
    graph = meta.get("graph")
    need(isinstance(graph, dict), "has no graph object")
    blocks, wires = graph.get("blocks"), graph.get("wires")
    need(isinstance(blocks, list), "graph.blocks must be a list")
    need(isinstance(wires, list), "graph.wires must be a list")
    seen: set[str] = set()
    spec_blocks = []
    for i, b in enumerate(blocks):
        need(isinstance(b, dict), f"graph.blocks[{i}] must be an object")
        need(isinstance(b.get("id"), str) and b["id"], f"graph.blocks[{i}].id must be a non-empty string")
        _check_block_id(b["id"], label)
        need(b["id"] not in seen, f"has two blocks with id {b['id']!r}")
        seen.add(b["id"])
        need(isinstance(b.get("type"), str), f"graph.blocks[{i}].type must be a string")
        if b["type"] not in layer_registry.REGISTRY:
            raise ProjectError(f"{label}: block {b['id']!r} has the unknown type {b['type'][:80]!r}; it may come "
                               "from a newer GateScope")
        settings = b.get("settings", {})
        need(isinstance(settings, dict), f"graph.blocks[{i}].settings must be an object")
        spec_blocks.append(Block(b["id"], b["type"], dict(settings)))
    spec_wires = []
    for i, w in enumerate(wires):
        need(isinstance(w, dict), f"graph.wires[{i}] must be an object")
        need(isinstance(w.get("src"), str) and isinstance(w.get("dst"), str),
             f"graph.wires[{i}] needs src and dst strings")
        need(w["src"] in seen and w["dst"] in seen, f"graph.wires[{i}] joins a block that does not exist")
        port = w.get("port", 0)
        need(_whole(port) and 0 <= port < 64, f"graph.wires[{i}].port must be a small whole number")
        spec_wires.append(Wire(w["src"], w["dst"], port))
    positions = meta.get("positions", {})
    need(isinstance(positions, dict), "positions must be an object")
    pos = {}
    for k, v in positions.items():
        need(isinstance(v, list) and len(v) == 2 and all(_number(c) and abs(c) < 1e9 for c in v),
             f"positions[{k[:80]!r}] must be two numbers")
        if k in seen:  # a place kept for a block no longer in the graph means nothing
            pos[k] = (float(v[0]), float(v[1]))
    training = meta.get("training", {})
    need(isinstance(training, dict), "training must be an object")
    try:
        training = TrainSettings.from_dict(training)
    except ValueError as exc:
        raise ProjectError(f"{label}: project.json training: {exc}") from None
    dataset = _check_dataset(meta.get("dataset", {}), label)
    panels = meta.get("panels", {})
    need(isinstance(panels, dict), "panels must be an object")
    trainer = _check_trainer(meta.get("trainer", {"epochs_done": 0}), label)
    name = meta.get("name", "untitled")
    need(isinstance(name, str) and len(name) <= MAX_TEXT_LENGTH, "name must be a string")
    description = meta.get("description", "")
    need(isinstance(description, str) and len(description) <= MAX_TEXT_LENGTH, "description must be a string")
    return Project(name=name, graph=GraphSpec(spec_blocks, spec_wires), positions=pos, training=training,
                   dataset=dataset, panels=panels, description=description, trainer=trainer,
                   compare=_checked_compare(meta.get("compare"), label))


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_block_id(block_id: str, label: str) -> None:
    """A block id names the block's arrays (``ID/NAME``) in the npz members and in the window:
    one printable line of at most 64 characters, with no ``/`` or ``\\``."""
    if not (0 < len(block_id) <= MAX_ID_LENGTH and block_id.isprintable() and "/" not in block_id
            and "\\" not in block_id and block_id.strip() == block_id):
        raise ProjectError(f"{label}: the block id {block_id[:40]!r}{'...' if len(block_id) > 40 else ''} cannot be "
                           f"used: ids are 1 to {MAX_ID_LENGTH} printable characters without '/' or '\\\\' "
                           "or spaces at either end")


def _check_dataset(dataset: Any, label: str) -> dict[str, Any]:
    """The dataset reference, its types checked (the values are checked when it is loaded);
    ``cache_dir``, which older files could set for video folders, is dropped: caches live in
    the user's cache directory only."""
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ProjectError(f"{label}: project.json dataset {what}")

    need(isinstance(dataset, dict) and dataset.get("kind") in ("builtin", "file"),
         "must be an object with kind 'builtin' or 'file'")
    if dataset["kind"] == "builtin":
        need(isinstance(dataset.get("name"), str) and 0 < len(dataset["name"]) <= 200,
             "name must be the name of a bundled dataset")
    else:
        path = dataset.get("path")
        need(isinstance(path, str) and 0 < len(path) <= 4096 and "\0" not in path, "path must be a file path")
        need(dataset.get("format") is None or isinstance(dataset["format"], str), "format must be a name or null")
    params = dataset.get("params", {})
    need(params is None or isinstance(params, dict), "params must be an object of named settings")
    dataset = dict(dataset)
    if params:
        params = {k: v for k, v in params.items() if k != "cache_dir"}
        dataset["params"] = params
        for value in params.values():
            if isinstance(value, str):
                need("\0" not in value, "params must not hold NUL characters")
    return dataset


TRAINER_KEYS = ("epochs_done", "best_val_loss", "epochs_without_improvement", "steps_per_epoch", "last_run")


def _check_trainer(trainer: Any, label: str) -> dict[str, Any]:
    """``trainer``: whole counts within bounds, the best validation loss a finite number or null,
    ``last_run`` as ``_checked_last_run`` says."""
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ProjectError(f"{label}: project.json trainer {what}")

    need(isinstance(trainer, dict), "must be an object")
    unknown = sorted(set(trainer) - set(TRAINER_KEYS))
    need(not unknown, f"has unknown keys {', '.join(repr(k[:40]) for k in unknown[:3])}")
    for key, high in (("epochs_done", MAX_EPOCHS_DONE), ("epochs_without_improvement", MAX_EPOCHS_DONE),
                      ("steps_per_epoch", WHOLE_RANGES["steps_per_epoch"][1])):
        value = trainer.get(key, 0)
        need(_whole(value) and 0 <= value <= high, f"{key} must be a whole number from 0 to {high:,}")
    best = trainer.get("best_val_loss")
    need(best is None or _number(best), "best_val_loss must be a finite number or null")
    trainer = dict(trainer)
    if "last_run" in trainer:
        try:
            trainer["last_run"] = _checked_last_run(trainer["last_run"])
        except ValueError as exc:
            raise ProjectError(f"{label}: project.json trainer.last_run: {exc}") from None
    return trainer


HISTORY_NUMBERS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def _check_history(history: Any, label: str) -> list[dict[str, Any]]:
    """``history.json``: a list of epoch records, each with a whole ``epoch`` from 1 and every other
    value a number or null (the curves panel plots them)."""
    if not isinstance(history, list) or len(history) > MAX_EPOCHS_DONE:
        raise ProjectError(f"{label}: history.json must be a list of epoch records")
    for i, record in enumerate(history):
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not (_whole(epoch) and 1 <= epoch <= MAX_EPOCHS_DONE):
            raise ProjectError(f"{label}: history.json record {i + 1} must be an object with a whole epoch number")
        for key, value in record.items():
            if key != "epoch" and value is not None and not _number(value):
                raise ProjectError(f"{label}: history.json record {i + 1}: {key[:40]} must be a number or null, "
                                   f"not {str(value)[:40]!r}")
    return history


def _check_array_names(arrays: dict[str, np.ndarray], ids: set[str], parts: int, label: str, what: str) -> None:
    """Arrays are named ``BLOCK_ID/NAME`` (weights) or ``BLOCK_ID/NAME/SLOT`` (optimizer state,
    besides ``step_count``), each of a block of the graph."""
    for key in arrays:
        if what == "optimizer state" and key == "step_count":
            continue
        pieces = key.split("/")
        if len(pieces) != parts or not all(pieces) or len(key) > 4 * MAX_ID_LENGTH:
            raise ProjectError(f"{label}: the {what} holds an array named {key[:80]!r}, which is not "
                               f"{'BLOCK/NAME' if parts == 2 else 'BLOCK/NAME/SLOT'}")
        if pieces[0] not in ids:
            raise ProjectError(f"{label}: the {what} holds {key[:80]!r}, but the graph has no block "
                               f"{pieces[0][:40]!r}")


def _checked_last_run(value: Any) -> dict[str, Any]:
    """``trainer.last_run`` as the window reads it; ValueError naming what is wrong."""
    def count(v, what):
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{what} must be a whole number of 0 or more")
        return v

    def number(v, what):
        if v is None:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"{what} must be a finite number")
        return float(v)

    if not isinstance(value, dict):
        raise ValueError("must be an object")
    ended = value.get("ended")
    if ended not in (None, "finished", "stopped", "failed"):
        raise ValueError("ended must be finished, stopped or failed")
    test = value.get("test")
    if test is not None:
        if not isinstance(test, dict):
            raise ValueError("test must be an object")
        test = {"loss": number(test.get("loss"), "test.loss"), "accuracy": number(test.get("accuracy"), "test.accuracy"),
                "samples": count(test.get("samples", 0), "test.samples")}
    return {"planned_epochs": count(value.get("planned_epochs"), "planned_epochs"), "ended": ended, "test": test}


def _check_weights(project: Project, analysis: Analysis | None, label: str) -> None:
    """Saved arrays must be finite floats of blocks of the graph, with the shapes those blocks need
    (not checked with ``analysis`` None: a run's weights being saved came from its own model)."""
    if not project.weights:
        return
    _check_array_names(project.weights, {b.id for b in project.graph.blocks}, 2, label, "weights")
    for key, value in project.weights.items():
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ProjectError(f"{label}: weights.npz array {key!r} holds non-finite or non-float values")
    if analysis is None or not analysis.ok:
        return  # an unfinished graph opens as it is; its weights are checked when it can be built
    model = Model(project.graph)
    try:
        model.load_state_dict(project.weights)
    except ValueError as exc:
        raise ProjectError(f"{label}: {exc}") from None


def _check_optimizer(project: Project, label: str) -> None:
    """The optimizer state: named after blocks of the graph, finite floats, one whole step count."""
    if not project.optimizer:
        return
    _check_array_names(project.optimizer, {b.id for b in project.graph.blocks}, 3, label, "optimizer state")
    try:
        check_state(project.optimizer)
    except ValueError as exc:
        raise ProjectError(f"{label}: {exc}") from None


# ----------------------------------------------------------------------------- run history, comparison
RUNS_JSON, RUNS_NPZ = "runs.json", "runs.npz"


def _checked_compare(value: Any, label: str) -> CompareChoice | None:
    """``project.json``'s ``compare`` (left out: None), checked by ``studio.compare_choice``."""
    if value is None:
        return None
    try:
        return compare_from_json(value)
    except ChoiceError as exc:
        raise ProjectError(f"{label}: project.json compare {exc}") from None


def _pack_runs(z: zipfile.ZipFile, project: Project) -> None:
    """``runs.json`` and ``runs.npz``, when there is a run or a choice not to keep their weights."""
    if project.runs or not project.keep_run_weights:
        z.writestr(RUNS_JSON, json.dumps(run_history.runs_to_json(project.runs, project.keep_run_weights),
                                         indent=1, allow_nan=False))
        z.writestr(RUNS_NPZ, _npz_bytes(run_history.runs_arrays(project.runs)))


def _read_runs_members(z: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], label: str):
    """The parsed ``runs.json`` (None when absent) and the arrays of ``runs.npz``."""
    if RUNS_JSON not in infos:
        if RUNS_NPZ in infos:
            raise ProjectError(f"{label} has {RUNS_NPZ} without {RUNS_JSON}")
        return None, {}
    meta = _parse_json(_member(z, infos[RUNS_JSON], label), label, RUNS_JSON)
    arrays = _read_npz(_member(z, infos[RUNS_NPZ], label), label, RUNS_NPZ) if RUNS_NPZ in infos else {}
    return meta, arrays


def _check_runs_for_saving(project: Project, label: str) -> None:
    """The run history as opening checks it (``_runs_from_members``), its weights' shapes aside
    (they came from each run's own model; fitting them again would build every run's model at
    every save)."""
    try:
        text = json.dumps(run_history.runs_to_json(project.runs, project.keep_run_weights), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"cannot save {label}: its run history holds a value a project file cannot ({exc})") \
            from None
    _runs_from_members(_parse_json(text.encode("utf-8"), label, RUNS_JSON), run_history.runs_arrays(project.runs),
                       label, fit_weights=False)


def _runs_from_members(meta: Any, arrays: dict[str, np.ndarray], label: str,
                       fit_weights: bool = True) -> tuple[list[run_history.Run], bool]:
    """The run history, every value checked (docs/file-format.md): counts and lengths bounded,
    every number finite, every string a string, each run's model and training settings checked
    as a project's are, its curve as ``steps.npz`` is and its weights against its model."""
    if meta is None:
        return [], True

    def need(cond: bool, where: str, what: str) -> None:
        if not cond:
            raise ProjectError(f"{label}: {RUNS_JSON} {where} {what}")

    need(isinstance(meta, dict) and set(meta) <= {"keep_weights", "runs"}, "", "must be an object with "
         "keep_weights and runs")
    keep = meta.get("keep_weights", True)
    need(isinstance(keep, bool), "keep_weights", "must be true or false")
    records = meta.get("runs", [])
    need(isinstance(records, list) and len(records) <= run_history.MAX_RUNS, "runs",
         f"must be a list of at most {run_history.MAX_RUNS} runs")
    runs: list[run_history.Run] = []
    used: set[str] = set()
    for i, record in enumerate(records):
        where = f"runs[{i}]"
        need(isinstance(record, dict), where, "must be an object")
        run = _run_from_json(record, where, need, label)
        need(not runs or run.number > runs[-1].number, f"{where}.number", "must be larger than the run before's")
        run.step_numbers, run.step_losses, run.weights = _run_arrays(run, record.get("has_weights", False), arrays,
                                                                      where, label, used, fit_weights)
        runs.append(run)
    stray = sorted(set(arrays) - used)
    if stray:
        raise ProjectError(f"{label}: {RUNS_NPZ} holds {stray[0]!r}, which belongs to no run of {RUNS_JSON}")
    return runs, keep


def _count(value: Any, low: int = 0) -> bool:
    """A whole number from ``low`` to 2^53."""
    return _whole(value) and low <= value <= 2**53


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= run_history.MAX_TEXT


def _run_from_json(record: dict, where: str, need, label: str) -> run_history.Run:
    known = {"number", "when", "kind", "label", "ended", "graph", "training", "after", "changes", "first_epoch",
             "epochs", "test", "seconds", "parameters", "steps_per_epoch", "has_weights"}
    unknown = sorted(set(record) - known)
    need(not unknown, where, f"has unknown keys {', '.join(unknown)}")
    number = record.get("number")
    need(_count(number, 1), f"{where}.number", "must be a whole number of 1 or more")
    when = record.get("when")
    need(isinstance(when, str) and len(when) <= 64, f"{where}.when", "must be a date and time")
    try:
        _dt.datetime.fromisoformat(when)
    except ValueError:
        need(False, f"{where}.when", f"must be an ISO 8601 date and time, not {when!r}")
    need(record.get("kind") in run_history.KINDS, f"{where}.kind", f"must be {' or '.join(run_history.KINDS)}")
    need(record.get("ended") in run_history.ENDINGS, f"{where}.ended", f"must be {', '.join(run_history.ENDINGS)}")
    need(_text(record.get("label")), f"{where}.label",
         f"must be a string of at most {run_history.MAX_TEXT:,} characters")
    after = record.get("after")
    need(after is None or (_count(after, 1) and after < number), f"{where}.after",
         "must be null or the number of an earlier run")
    changes = record.get("changes", [])
    need(isinstance(changes, list) and len(changes) <= run_history.MAX_CHANGES and all(_text(c) for c in changes),
         f"{where}.changes", f"must be a list of at most {run_history.MAX_CHANGES} strings of at most "
         f"{run_history.MAX_TEXT:,} characters")
    need(_count(record.get("first_epoch", 0)), f"{where}.first_epoch", "must be a whole number")
    epochs = record.get("epochs", [])
    need(isinstance(epochs, list) and len(epochs) <= run_history.MAX_EPOCHS, f"{where}.epochs",
         f"must be a list of at most {run_history.MAX_EPOCHS:,} epoch records")
    for k, epoch in enumerate(epochs):
        need(isinstance(epoch, dict) and set(epoch) <= set(run_history.EPOCH_KEYS), f"{where}.epochs[{k}]",
             f"must be an object with keys among {', '.join(run_history.EPOCH_KEYS)}")
        need(_count(epoch.get("epoch"), 1), f"{where}.epochs[{k}].epoch", "must be a whole number of 1 or more")
        for key in run_history.EPOCH_KEYS[1:]:
            need(epoch.get(key) is None or _number(epoch[key]), f"{where}.epochs[{k}].{key}",
                 "must be a finite number or null")
    try:
        test = _checked_last_run({"test": record.get("test")})["test"]
    except ValueError as exc:
        raise ProjectError(f"{label}: {RUNS_JSON} {where}: {exc}") from None
    need(_number(record.get("seconds", 0)) and record.get("seconds", 0) >= 0, f"{where}.seconds",
         "must be a finite number of 0 or more")
    need(_count(record.get("parameters", 0)), f"{where}.parameters", "must be a whole number")
    need(_count(record.get("steps_per_epoch", 0)), f"{where}.steps_per_epoch", "must be a whole number")
    need(isinstance(record.get("has_weights", False), bool), f"{where}.has_weights", "must be true or false")
    # The model and settings a run trained are checked exactly as a project's own are (a run
    # keeps no dataset of its own: the project's is the one it trained on).
    try:
        model = _project_from_json({"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION,
                                    "graph": record.get("graph"), "training": record.get("training", {}),
                                    "dataset": {"kind": "builtin", "name": "the project's"}},
                                   f"{label}: {RUNS_JSON} {where}")
    except ProjectError as exc:
        raise _reworded(exc, "project.json") from None
    return run_history.Run(number=number, when=when, kind=record["kind"], label=record["label"],
                           ended=record["ended"], graph=model.graph, training=model.training, after=after,
                           changes=list(changes), first_epoch=record.get("first_epoch", 0),
                           epochs=[dict(e) for e in epochs], test=test, seconds=float(record.get("seconds", 0)),
                           parameters=record.get("parameters", 0), steps_per_epoch=record.get("steps_per_epoch", 0))


def _run_arrays(run: run_history.Run, has_weights: bool, arrays: dict[str, np.ndarray], where: str, label: str,
                used: set[str], fit_weights: bool = True):
    """Run ``run``'s per-step curve and weights from ``runs.npz``, checked; marks their keys ``used``."""
    curve = {part: arrays.get(run_history.array_key(run.number, part)) for part in ("global_step", "loss")}
    used.update(run_history.array_key(run.number, part) for part, value in curve.items() if value is not None)
    if all(v is None for v in curve.values()):
        numbers, losses = np.zeros(0, np.int64), np.zeros(0, np.float32)
    else:
        try:
            numbers, losses = _check_steps({k: v for k, v in curve.items() if v is not None},
                                           f"{label}: {RUNS_NPZ} run {run.number}")
        except ProjectError as exc:
            raise _reworded(exc, "steps.npz") from None
    prefix = run_history.array_key(run.number, "weights/")
    weights = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
    used.update(prefix + name for name in weights)
    if has_weights != bool(weights):
        raise ProjectError(f"{label}: {RUNS_JSON} {where}.has_weights is {str(has_weights).lower()} but "
                           f"{RUNS_NPZ} holds {'no' if not weights else 'its'} weights")
    if weights:
        try:
            _check_weights(Project(graph=run.graph, weights=weights), analyse(run.graph) if fit_weights else None,
                           f"{label}: {RUNS_NPZ} run {run.number}")
        except ProjectError as exc:
            raise _reworded(exc, "weights.npz") from None
    return numbers, losses, weights


def _reworded(exc: ProjectError, member: str) -> ProjectError:
    """A check written for a project's own ``member``, its message reworded for the run history."""
    return ProjectError(str(exc).replace(f": {member} ", ": ").replace(f"{member} ", ""))
