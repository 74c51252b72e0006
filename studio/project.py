"""Project files: one ``NAME.gscope`` zip holding the model, its weights, training state and layout.

The format is documented in ``docs/file-format.md`` (a contract, DESIGN section 5). Loading
never executes or unpickles anything: JSON is checked key by key, arrays are read with
``allow_pickle=False`` after their headers are checked against the sizes they declare. A file
that is not a zip, is truncated, has members missing or escaping (``../``), wrong JSON types,
unknown block types, a newer schema, misshapen arrays or absurd declared sizes raises
``ProjectError`` with one clear sentence; nothing is written and nothing else changes. Saves
are atomic: a temporary file in the same folder, then a rename.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.graph import Block, GraphSpec, Model, Wire, analyse
from gatescope.compute.train import TrainSettings, TrainState
from gatescope.studio import runs as run_history
from gatescope.studio.compare_choice import ChoiceError, CompareChoice
from gatescope.studio.compare_choice import from_json as compare_from_json

SCHEMA_VERSION = 1
FORMAT_NAME = "gatescope-project"
SUFFIX = ".gscope"

MEMBERS_REQUIRED = ("project.json",)
MAX_JSON_BYTES = 16 * 2**20
MAX_ARRAYS_BYTES = 4 * 2**30
MAX_COMPRESSION_RATIO = 1000


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
    """Write ``project`` to ``path`` atomically; returns the path. ProjectError if it cannot."""
    path = Path(path)
    payload = _pack(project)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ProjectError(f"cannot save to {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; keep the old file's mode or the umask's
        os.replace(tmp, path)  # atomic: the old file stays whole until the new one is complete
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ProjectError(f"cannot save {path}: {exc.strerror or exc}") from None
    project.path = path
    return path


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _pack(project: Project) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.json", json.dumps(project.to_json(), indent=2, allow_nan=False))
        z.writestr("history.json", json.dumps(_finite(project.history), indent=1, allow_nan=False))
        z.writestr("weights.npz", _npz_bytes(project.weights))
        z.writestr("optimizer.npz", _npz_bytes(project.optimizer))
        if len(project.step_numbers):
            z.writestr("steps.npz", _npz_bytes({"global_step": project.step_numbers, "loss": project.step_losses}))
        _pack_runs(z, project)
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
    """Read and fully check a project file; ProjectError with one clear sentence if it cannot."""
    path = Path(path)
    label = path.name
    if not path.exists():
        raise ProjectError(f"{path} does not exist")
    if path.is_dir():
        raise ProjectError(f"{path} is a folder, not a project file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
    project = parse_project(data, label)
    project.path = path
    return project


def parse_project(data: bytes, label: str = "the file") -> Project:
    """A Project from the bytes of a ``.gscope`` file (see ``load_project``)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ProjectError(f"{label} is not a GateScope project: it is not a zip archive "
                           "(it may be damaged, or a different kind of file)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = _check_members(z, label)
            raw_json = _read_member(z, infos["project.json"], label)
            meta = _parse_json(raw_json, label, "project.json")
            history = _parse_json(_read_member(z, infos["history.json"], label), label, "history.json") \
                if "history.json" in infos else []
            weights = _read_npz(_read_member(z, infos["weights.npz"], label), label, "weights.npz") \
                if "weights.npz" in infos else {}
            optimizer = _read_npz(_read_member(z, infos["optimizer.npz"], label), label, "optimizer.npz") \
                if "optimizer.npz" in infos else {}
            steps = _read_npz(_read_member(z, infos["steps.npz"], label), label, "steps.npz") \
                if "steps.npz" in infos else {}
            runs_members = _read_runs_members(z, infos, label)
    except zipfile.BadZipFile as exc:
        raise ProjectError(f"{label} is damaged: its zip structure is broken ({exc}); "
                           "open a backup or the autosave copy") from None
    except (EOFError, zlib_error()) as exc:
        raise ProjectError(f"{label} is damaged: a member is truncated or corrupt ({exc})") from None
    project = _project_from_json(meta, label)
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ProjectError(f"{label}: history.json must be a list of epoch records")
    project.history = history
    project.weights, project.optimizer = weights, optimizer
    if steps:
        project.step_numbers, project.step_losses = _check_steps(steps, label)
    _check_weights(project, label)
    project.runs, project.keep_run_weights = _runs_from_members(*runs_members, label)
    return project


def _check_steps(arrays: dict[str, np.ndarray], label: str) -> tuple[np.ndarray, np.ndarray]:
    """``steps.npz``'s ``global_step`` and ``loss``: two 1-D arrays of one length, whole step
    numbers that increase (the per-step loss curve; see docs/file-format.md)."""
    numbers, losses = arrays.get("global_step"), arrays.get("loss")
    if numbers is None or losses is None or set(arrays) != {"global_step", "loss"}:
        raise ProjectError(f"{label}: steps.npz must hold exactly the arrays global_step and loss "
                           f"(it holds {', '.join(sorted(arrays)) or 'none'})")
    if numbers.ndim != 1 or losses.ndim != 1 or len(numbers) != len(losses):
        raise ProjectError(f"{label}: steps.npz global_step {numbers.shape} and loss {losses.shape} must be "
                           "two lists of the same length")
    if numbers.dtype.kind not in "iu" or (len(numbers) and (numbers[0] < 0 or np.any(np.diff(numbers) <= 0))):
        raise ProjectError(f"{label}: steps.npz global_step must be whole step numbers that increase")
    return numbers.astype(np.int64), losses.astype(np.float32)


def zlib_error() -> type[BaseException]:
    import zlib
    return zlib.error


def _check_members(z: zipfile.ZipFile, label: str) -> dict[str, zipfile.ZipInfo]:
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in z.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise ProjectError(f"{label} has a member named {name!r} that points outside the project; "
                               "refusing to open it")
        if info.file_size > MAX_ARRAYS_BYTES or (info.compress_size and
                                                 info.file_size / info.compress_size > MAX_COMPRESSION_RATIO
                                                 and info.file_size > 2**20):
            raise ProjectError(f"{label} declares a member {name!r} of {info.file_size:,} bytes, which is absurd "
                               "for a project; refusing to open it")
        total += info.file_size
        infos[name] = info
    if total > MAX_ARRAYS_BYTES:
        raise ProjectError(f"{label} declares {total:,} bytes in all, more than a project can hold; refusing it")
    for required in MEMBERS_REQUIRED:
        if required not in infos:
            raise ProjectError(f"{label} is not a complete GateScope project: it has no {required}")
    if infos["project.json"].file_size > MAX_JSON_BYTES:
        raise ProjectError(f"{label}: project.json declares {infos['project.json'].file_size:,} bytes, "
                           "far more than a project description needs; refusing it")
    return infos


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    with z.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ProjectError(f"{label}: member {info.filename} is not the size it declares")
    return data


def _parse_json(raw: bytes, label: str, member: str):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectError(f"{label}: {member} is not valid JSON ({exc})") from None


def _read_npz(raw: bytes, label: str, member: str) -> dict[str, np.ndarray]:
    """Arrays of an npz, each header checked against its stored size before reading; no pickles."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as inner:
            for info in inner.infolist():
                name = info.filename
                if not name.endswith(".npy"):  # names may hold '/': nothing is extracted to disk
                    raise ProjectError(f"{label}: {member} holds {name!r}, which is not an array")
                if info.file_size > MAX_ARRAYS_BYTES:
                    raise ProjectError(f"{label}: {member} declares an array {name!r} of {info.file_size:,} bytes")
                with inner.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ProjectError(f"{label}: {member}/{name} has an unknown array format {version}")
                    if dtype.kind not in "fiu" or dtype.hasobject:
                        raise ProjectError(f"{label}: {member}/{name} holds {dtype} values; "
                                           "only numbers are allowed")
                    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if need > info.file_size:
                        raise ProjectError(f"{label}: {member}/{name} declares shape {shape}, larger than "
                                           "the data stored; the file is damaged")
                with inner.open(info) as f:
                    arrays[name[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    except zipfile.BadZipFile as exc:
        raise ProjectError(f"{label}: {member} is damaged ({exc})") from None
    except ProjectError:
        raise
    except ValueError as exc:
        raise ProjectError(f"{label}: {member} holds an unreadable array ({exc})") from None
    return arrays


def _project_from_json(meta: Any, label: str) -> Project:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ProjectError(f"{label}: project.json {what}")

    need(isinstance(meta, dict), "must be a JSON object")
    need(meta.get("format") == FORMAT_NAME, f"does not say format {FORMAT_NAME!r}; this is not a GateScope project")
    version = meta.get("schema_version")
    need(isinstance(version, int) and not isinstance(version, bool) and version >= 1,
         "has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise ProjectError(f"{label} was saved by a newer GateScope (file schema {version}; this version reads "
                           f"up to {SCHEMA_VERSION}); update GateScope to open it")
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
        need(b["id"] not in seen, f"has two blocks with id {b['id']!r}")
        seen.add(b["id"])
        need(isinstance(b.get("type"), str), f"graph.blocks[{i}].type must be a string")
        if b["type"] not in layer_registry.REGISTRY:
            raise ProjectError(f"{label}: block {b['id']!r} has the unknown type {b['type']!r}; it may come "
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
        need(isinstance(port, int) and not isinstance(port, bool) and 0 <= port < 64,
             f"graph.wires[{i}].port must be a small whole number")
        spec_wires.append(Wire(w["src"], w["dst"], port))
    positions = meta.get("positions", {})
    need(isinstance(positions, dict), "positions must be an object")
    pos = {}
    for k, v in positions.items():
        need(isinstance(v, list) and len(v) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                         and math.isfinite(c) for c in v),
             f"positions[{k!r}] must be two numbers")
        pos[k] = (float(v[0]), float(v[1]))
    try:
        training = TrainSettings.from_dict(meta.get("training", {}))
    except ValueError as exc:
        raise ProjectError(f"{label}: project.json training: {exc}") from None
    dataset = meta.get("dataset", {})
    need(isinstance(dataset, dict) and dataset.get("kind") in ("builtin", "file"),
         "dataset must be an object with kind 'builtin' or 'file'")
    panels = meta.get("panels", {})
    need(isinstance(panels, dict), "panels must be an object")
    trainer = meta.get("trainer", {"epochs_done": 0})
    need(isinstance(trainer, dict) and isinstance(trainer.get("epochs_done", 0), int)
         and trainer.get("epochs_done", 0) >= 0, "trainer.epochs_done must be a whole number")
    need(isinstance(trainer.get("steps_per_epoch", 0), int) and not isinstance(trainer.get("steps_per_epoch", 0), bool)
         and trainer.get("steps_per_epoch", 0) >= 0, "trainer.steps_per_epoch must be a whole number")
    if "last_run" in trainer:
        try:
            trainer = dict(trainer, last_run=_checked_last_run(trainer["last_run"]))
        except ValueError as exc:
            raise ProjectError(f"{label}: project.json trainer.last_run: {exc}") from None
    name = meta.get("name", "untitled")
    need(isinstance(name, str), "name must be a string")
    description = meta.get("description", "")
    need(isinstance(description, str), "description must be a string")
    return Project(name=name, graph=GraphSpec(spec_blocks, spec_wires), positions=pos, training=training,
                   dataset=dataset, panels=panels, description=description, trainer=trainer,
                   compare=_checked_compare(meta.get("compare"), label))


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


def _check_weights(project: Project, label: str) -> None:
    """Saved arrays must belong to blocks of the graph and have the shapes those blocks need."""
    if not project.weights:
        return
    ids = {b.id for b in project.graph.blocks}
    for key in project.weights:
        if key.split("/")[0] not in ids:
            raise ProjectError(f"{label}: weights.npz holds {key!r}, but the graph has no block "
                               f"{key.split('/')[0]!r}")
    analysis = analyse(project.graph)
    if not analysis.ok:
        return  # an unfinished graph opens as it is; its weights are checked when it can be built
    model = Model(project.graph)
    try:
        model.load_state_dict(project.weights)
    except ValueError as exc:
        raise ProjectError(f"{label}: {exc}") from None
    for key, value in project.weights.items():
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ProjectError(f"{label}: weights.npz array {key!r} holds non-finite or non-float values")


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
    meta = _parse_json(_read_member(z, infos[RUNS_JSON], label), label, RUNS_JSON)
    arrays = _read_npz(_read_member(z, infos[RUNS_NPZ], label), label, RUNS_NPZ) if RUNS_NPZ in infos else {}
    return meta, arrays


def _runs_from_members(meta: Any, arrays: dict[str, np.ndarray], label: str) -> tuple[list[run_history.Run], bool]:
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
                                                                      where, label, used)
        runs.append(run)
    stray = sorted(set(arrays) - used)
    if stray:
        raise ProjectError(f"{label}: {RUNS_NPZ} holds {stray[0]!r}, which belongs to no run of {RUNS_JSON}")
    return runs, keep


def _whole(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= 2**53


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= run_history.MAX_TEXT


def _run_from_json(record: dict, where: str, need, label: str) -> run_history.Run:
    known = {"number", "when", "kind", "label", "ended", "graph", "training", "after", "changes", "first_epoch",
             "epochs", "test", "seconds", "parameters", "steps_per_epoch", "has_weights"}
    unknown = sorted(set(record) - known)
    need(not unknown, where, f"has unknown keys {', '.join(unknown)}")
    number = record.get("number")
    need(_whole(number, 1), f"{where}.number", "must be a whole number of 1 or more")
    when = record.get("when")
    need(isinstance(when, str) and len(when) <= 64, f"{where}.when", "must be a date and time")
    try:
        _dt.datetime.fromisoformat(when)
    except ValueError:
        need(False, f"{where}.when", f"must be an ISO 8601 date and time, not {when!r}")
    need(record.get("kind") in run_history.KINDS, f"{where}.kind", f"must be {' or '.join(run_history.KINDS)}")
    need(record.get("ended") in run_history.ENDINGS, f"{where}.ended", f"must be {', '.join(run_history.ENDINGS)}")
    need(_text(record.get("label")), f"{where}.label", "must be a string")
    after = record.get("after")
    need(after is None or (_whole(after, 1) and after < number), f"{where}.after",
         "must be null or the number of an earlier run")
    changes = record.get("changes", [])
    need(isinstance(changes, list) and len(changes) <= run_history.MAX_CHANGES and all(_text(c) for c in changes),
         f"{where}.changes", f"must be a list of at most {run_history.MAX_CHANGES} strings")
    need(_whole(record.get("first_epoch", 0)), f"{where}.first_epoch", "must be a whole number")
    epochs = record.get("epochs", [])
    need(isinstance(epochs, list) and len(epochs) <= run_history.MAX_EPOCHS, f"{where}.epochs",
         f"must be a list of at most {run_history.MAX_EPOCHS:,} epoch records")
    for k, epoch in enumerate(epochs):
        need(isinstance(epoch, dict) and set(epoch) <= set(run_history.EPOCH_KEYS), f"{where}.epochs[{k}]",
             f"must be an object with keys among {', '.join(run_history.EPOCH_KEYS)}")
        need(_whole(epoch.get("epoch"), 1), f"{where}.epochs[{k}].epoch", "must be a whole number of 1 or more")
        for key in run_history.EPOCH_KEYS[1:]:
            need(epoch.get(key) is None or _finite_number(epoch[key]), f"{where}.epochs[{k}].{key}",
                 "must be a finite number or null")
    try:
        test = _checked_last_run({"test": record.get("test")})["test"]
    except ValueError as exc:
        raise ProjectError(f"{label}: {RUNS_JSON} {where}: {exc}") from None
    need(_finite_number(record.get("seconds", 0)) and record.get("seconds", 0) >= 0, f"{where}.seconds",
         "must be a finite number of 0 or more")
    need(_whole(record.get("parameters", 0)), f"{where}.parameters", "must be a whole number")
    need(_whole(record.get("steps_per_epoch", 0)), f"{where}.steps_per_epoch", "must be a whole number")
    need(isinstance(record.get("has_weights", False), bool), f"{where}.has_weights", "must be true or false")
    # The model and settings a run trained are checked exactly as a project's own are (a run
    # keeps no dataset of its own: the project's is the one it trained on).
    try:
        model = _project_from_json({"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION,
                                    "graph": record.get("graph"), "training": record.get("training", {}),
                                    "dataset": {"kind": "builtin"}}, f"{label}: {RUNS_JSON} {where}")
    except ProjectError as exc:
        raise _reworded(exc, "project.json") from None
    return run_history.Run(number=number, when=when, kind=record["kind"], label=record["label"],
                           ended=record["ended"], graph=model.graph, training=model.training, after=after,
                           changes=list(changes), first_epoch=record.get("first_epoch", 0),
                           epochs=[dict(e) for e in epochs], test=test, seconds=float(record.get("seconds", 0)),
                           parameters=record.get("parameters", 0), steps_per_epoch=record.get("steps_per_epoch", 0))


def _run_arrays(run: run_history.Run, has_weights: bool, arrays: dict[str, np.ndarray], where: str, label: str,
                used: set[str]):
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
        if not np.isfinite(losses).all():
            raise ProjectError(f"{label}: {RUNS_NPZ} run {run.number}'s losses must be finite")
    prefix = run_history.array_key(run.number, "weights/")
    weights = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
    used.update(prefix + name for name in weights)
    if has_weights != bool(weights):
        raise ProjectError(f"{label}: {RUNS_JSON} {where}.has_weights is {str(has_weights).lower()} but "
                           f"{RUNS_NPZ} holds {'no' if not weights else 'its'} weights")
    if weights:
        try:
            _check_weights(Project(graph=run.graph, weights=weights), f"{label}: {RUNS_NPZ} run {run.number}")
        except ProjectError as exc:
            raise _reworded(exc, "weights.npz") from None
    return numbers, losses, weights


def _reworded(exc: ProjectError, member: str) -> ProjectError:
    """A check written for a project's own ``member``, its message reworded for the run history."""
    return ProjectError(str(exc).replace(f": {member} ", ": ").replace(f"{member} ", ""))
