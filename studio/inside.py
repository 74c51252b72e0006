"""The "inside the network" controller: what the gates, cell-state, gradient, gate-health,
convolution and text-generation panels show, and when.

``InsideController`` runs the model on one probe sample (a test sample chosen by index) with
probes on, forward and backward with the sample's target, on its own copy of the model (so a
training run on another thread is never disturbed) and fills the panels from what the layers
recorded. The copy gets the newest weights: those of the live model being trained when there
is one, else the project's saved weights, else a fresh initialisation. A run takes place on the
probe worker (``studio.worker``; always while training), or on the GUI thread when the last one
took under 20 ms; requests that arrive while one runs are merged into one more run.

During training, ``on_training_event`` takes the trainer's events: every step event that
carries probes (the trainer gathers them at most every 0.2 s) updates the gate health from
the training batch and starts a probe run with the live weights at most every
``live_interval_s``, and never more often than keeps the refreshes' own cost (the probe run
on its thread plus filling the panels on the GUI thread, measured on each refresh) within
``LIVE_BUDGET`` of the time: a model whose probe run takes 100 ms is refreshed every 2 s, not
every second, so the panels follow the learning at a bounded rate and cost. ``refresh()``
recomputes at once (after a gate override is changed in the inspector, say).

``install_inside_panels(window)`` adds the panels to the main window (``studio.app.MainWindow``)
as docks and wires them to its signals and hooks.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from gatescope.compute.backend import to_numpy
from gatescope.compute.datasets import Dataset, DataError
from gatescope.compute.generate import ask, generate
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.layers import REGISTRY
from gatescope.compute.layers.recurrent import pinned_gates
from gatescope.compute.train import collect_probes
from gatescope.studio.inside_math import (describe_input, gate_health, health_findings, label_text, pinned_notes,
                                probe_pool, sample_probe, unwrap_probes)
from gatescope.studio.project import Project
from gatescope.studio.wording import plural
from gatescope.studio.worker import Worker
from gatescope.widgets.inside.cell_state import EMPTY_NO_BLOCK as CELL_NO_BLOCK
from gatescope.widgets.inside.cell_state import CellStatePanel
from gatescope.widgets.inside.common import InputSequence, gate_label
from gatescope.widgets.inside.conv_features import EMPTY_NO_BLOCK as CONV_NO_BLOCK
from gatescope.widgets.inside.conv_features import ConvFeaturesPanel
from gatescope.widgets.inside.gate_health import EMPTY as HEALTH_EMPTY
from gatescope.widgets.inside.gate_health import GateHealthPanel
from gatescope.widgets.inside.gates import EMPTY_NO_BLOCK as GATES_NO_BLOCK
from gatescope.widgets.inside.gates import GatesPanel
from gatescope.widgets.inside.gradients import EMPTY as GRADIENTS_EMPTY
from gatescope.widgets.inside.gradients import GradientsPanel
from gatescope.widgets.inside.text_generation import TextGenerationPanel

RECURRENT, CONVOLUTION = "Recurrent", "Convolution"   # the block categories the panels follow
SYNC_LIMIT_S = 0.02          # a probe run quicker than this may run on the GUI thread
TRAINING_PROBE_SAMPLES = 8   # batch samples the trainer records for the gate health
LIVE_BUDGET = 0.05           # share of the time live refreshes may spend while training
BACKWARD_KEY = "::backward"  # a bidirectional block's backward direction in the gates panel's list
WAITING_FOR_DATASET = ("The probe sample comes from the project's dataset, which is loading "
                       "(the Data panel says when it is ready, or why it cannot be read).")


def category_of(type_name: str | None) -> str | None:
    """A block type's category in the registry (``Recurrent``, ``Convolution``, ...)."""
    return getattr(REGISTRY.get(type_name), "category", None)


def is_recurrent(layer) -> bool:
    return hasattr(layer, "gate_names") and hasattr(layer, "probe")


def family_of(type_name: str) -> str:
    return "GRU" if type_name == "GRU" else "LSTM"


@dataclass
class ProbeRequest:
    """What one probe run needs, taken on the GUI thread so the worker reads nothing shared."""

    graph: dict
    weights: list[tuple[dict[str, np.ndarray], str]]   # candidates, best first: (arrays, described)
    weights_source: str
    x: np.ndarray
    y: np.ndarray
    sample: int
    seed: int
    prepare_s: float = 0.0                            # GUI-thread seconds taken to make it


@dataclass
class ProbeResult:
    """What a probe run found: per recurrent block its probe data (unwrapped) and settings, per
    conv block its filters and the sample's feature maps."""

    request: ProbeRequest
    recurrent: dict[str, dict[str, Any]] = field(default_factory=dict)
    conv: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    loss: float | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class GenerationResult:
    prefix: str
    text: str = ""
    probabilities: np.ndarray | None = None
    vocab: list[str] = field(default_factory=list)
    error: str | None = None


class InsideController(QObject):
    """Fills the inside-the-network panels for the current project, model and selection.

    ``panels``: name -> panel widget (``gates``, ``cell_state``, ``gradients``,
    ``gate_health``, ``convolution``, ``text_generation``).

    Signals: ``blockFlagged(block_id, message)`` when the gate health of a recurrent block
    finds a problem (``message`` says what) or finds it gone (``message`` empty);
    ``refreshed()`` after the panels were filled from a probe run.

    ``loads_datasets``: when True (the default) the controller loads the project's dataset
    itself the first time it needs one; the main window sets it False and hands over the
    dataset it loads on its own thread (``set_dataset``), so the GUI never waits on a read.
    """

    blockFlagged = Signal(str, str)
    refreshed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.gates = GatesPanel()
        self.cell_state = CellStatePanel()
        self.gradients = GradientsPanel()
        self.gate_health = GateHealthPanel()
        self.convolution = ConvFeaturesPanel()
        self.text_generation = TextGenerationPanel()
        self.panels = {"gates": self.gates, "cell_state": self.cell_state, "gradients": self.gradients,
                       "gate_health": self.gate_health, "convolution": self.convolution,
                       "text_generation": self.text_generation}
        self.project: Project | None = None
        self.live_model: Model | None = None
        self.dataset: Dataset | None = None
        self.recurrent_block: str | None = None
        self.recurrent_direction = ""               # "" forward, "_rev" the backward direction
        self._direction_keys: dict[str, tuple[str, str]] = {}   # list key -> (block, direction)
        self.conv_block: str | None = None
        self.sample = 0
        self.training = False
        self.live_interval_s = 1.0  # live refreshes while training: often enough to watch, rare enough to cost little
        self.live_budget = LIVE_BUDGET
        self.flags: dict[str, str] = {}
        self.loads_datasets = True
        self._closed = False
        self._generated_once = False                # the automatic generation of a trained text model
        self.last_result: ProbeResult | None = None
        self.last_error: str | None = None
        self._training_probes: dict[str, dict[str, Any]] = {}
        self._training_step: int | None = None
        self._probe_training = False
        self._pool: tuple[np.ndarray, np.ndarray] | None = None
        self.worker = Worker("inside-probe", self)
        self._in_flight = 0
        self._pending: ProbeRequest | None = None
        self._last_run_s: float | None = None
        self._last_live_request = 0.0
        self._refresh_cost_s = 0.0                  # the last refresh's probe run + panel filling
        self._model_cache: tuple[str, Model] | None = None
        self._fresh_weights: dict[str, np.ndarray] = {}
        self.gates.blockChosen.connect(self._on_block_chosen)
        self.convolution.blockChosen.connect(self._on_conv_chosen)
        self.gates.sampleChanged.connect(self.set_probe_sample)
        self.gates.nextSampleRequested.connect(self.next_test_sample)
        self.text_generation.generateRequested.connect(self.generate)
        self._show_empty()

    # ----------------------------------------------------------------- inputs from the app
    def set_project(self, project: Project | None, dataset: Dataset | None = None,
                    model: Model | None = None) -> None:
        """Look inside ``project`` from now on (its dataset is loaded when first needed)."""
        project_changed = self.project is not project
        self.project = project
        self.live_model = model
        if project_changed:
            self.gradients.clear_current()
            self.flags_clear()
            self._training_probes = {}
            self._generated_once = False
        if dataset is not None or project_changed:
            self.set_dataset(dataset)
        self._pick_default_blocks()
        self.refresh()

    def set_dataset(self, dataset: Dataset | None) -> None:
        """The dataset probe samples come from (None: load the project's own when needed)."""
        self.dataset = dataset
        self._pool = None

    def set_model(self, model: Model | None, probe_training: bool = True) -> None:
        """The live model (the one being trained), whose weights the probe runs read.

        With ``probe_training`` its recurrent layers record the first few samples of a batch
        for the gate health, but only now and then: recording is switched on for one step
        at the start and with each live refresh, and off again once the probes have arrived,
        so the steps in between run with probes off and cost nothing extra.
        """
        self.live_model = model
        self._probe_training = probe_training and model is not None
        self._arm_training_probes(self._probe_training)

    def _arm_training_probes(self, on: bool) -> None:
        """Turn recording on (for the next step) or off in the live model's recurrent layers."""
        if self.live_model is None:
            return
        for layer in self.live_model.layers.values():
            if is_recurrent(layer):
                layer.probe = list(range(TRAINING_PROBE_SAMPLES)) if on else None
                if not on:
                    layer.probe_data = {}            # so the trainer stops sending stale probes

    def graph_changed(self) -> None:
        """The graph or a block setting changed (a gate override, say): recompute at once."""
        self._pick_default_blocks()
        self.refresh()

    def select_blocks(self, block_ids) -> None:
        """The canvas selection changed: follow its recurrent and its convolution block."""
        if isinstance(block_ids, str):
            block_ids = [block_ids]
        if self.project is None:
            return
        types = {b.id: b.type for b in self.project.graph.blocks}
        changed = False
        for bid in block_ids or []:
            if category_of(types.get(bid)) == RECURRENT and bid != self.recurrent_block:
                self.recurrent_block, self.recurrent_direction, changed = bid, "", True
            elif category_of(types.get(bid)) == CONVOLUTION and bid != self.conv_block:
                self.conv_block, changed = bid, True
        if changed:
            if self.last_result is not None:
                self._apply(self.last_result)
            else:
                self.refresh()

    def set_probe_sample(self, index: int) -> None:
        """Probe test sample number ``index``."""
        self.sample = max(0, int(index))
        self.gates.set_sample(self.sample)
        self.refresh()

    def next_test_sample(self) -> None:
        """Probe the next test sample (back to the first after the last)."""
        pool = self._probe_pool()
        count = len(pool[0]) if pool is not None else 1
        self.set_probe_sample((self.sample + 1) % max(1, count))

    def on_training_event(self, event) -> None:
        """Take one trainer event (``compute.train.Event`` or ``(kind, data)``)."""
        kind, data = (event.kind, event.data) if hasattr(event, "kind") else event
        if kind == "start":
            self.training = True
            # The panels show the weights training starts from already; the first live
            # refresh comes one interval in (a run shorter than that costs nothing here).
            self._last_live_request = time.perf_counter()
        elif kind == "step":
            self._training_step = data.get("global_step")
            if data.get("probes"):
                self._training_probes = {bid: unwrap_probes(p) for bid, p in data["probes"].items()}
                self._arm_training_probes(False)
                self._show_health()
            self._live_refresh()
        elif kind == "epoch":
            self._live_refresh()                    # short epochs: within the same bounded rate
        elif kind in ("finished", "stopped", "failed"):
            self.training = False
            self._training_probes = {}
            self.refresh()

    def _live_refresh(self) -> None:
        """A refresh while training, if the last one is at least ``live_interval()`` ago."""
        now = time.perf_counter()
        if now - self._last_live_request >= self.live_interval():
            self._last_live_request = now
            self._arm_training_probes(self._probe_training)
            self.refresh()

    def live_interval(self) -> float:
        """Seconds between live refreshes while training: ``live_interval_s``, stretched so
        that the last refresh's cost is at most ``live_budget`` (``LIVE_BUDGET``) of it."""
        return max(self.live_interval_s, self._refresh_cost_s / self.live_budget)

    def training_hook(self, model: Model) -> None:
        """For ``TrainingJob.model_hooks``: called with the model a run builds (on its thread);
        turns on its probes and makes its weights the ones probe runs read."""
        self.set_model(model)

    def on_training_started(self, data: dict | None = None) -> None:
        self.on_training_event(("start", data or {}))

    def on_training_steps(self, payload: dict) -> None:
        """A coalesced ``TrainingWorker.steps`` payload: ``last`` (the newest step) and maybe ``probes``."""
        data = dict(payload.get("last", {}))
        if "probes" in payload:
            data["probes"] = payload["probes"]
        self.on_training_event(("step", data))

    def on_training_epoch(self, record: dict | None = None) -> None:
        self.on_training_event(("epoch", record or {}))

    def on_training_ended(self, kind: str, message: str = "", result: Any = None) -> None:
        self.on_training_event((kind, {"message": message}))

    # ----------------------------------------------------------------- probe runs
    @property
    def busy(self) -> bool:
        """True while a probe run or a generation is under way or queued."""
        return self._in_flight > 0 or self._pending is not None

    def refresh(self) -> None:
        """Recompute every panel now: one probe run with the newest weights and settings."""
        if self._closed:
            return
        started = time.perf_counter()
        request = self._make_request()
        if request is None:
            self._show_empty()
            return
        request.prepare_s = time.perf_counter() - started
        if self._in_flight:
            self._pending = request                 # merged: only the newest waits
            return
        self._start(request)

    def _start(self, request: ProbeRequest) -> None:
        if not self.training and self._last_run_s is not None and self._last_run_s < SYNC_LIMIT_S:
            # Tiny model, idle: no thread needed. While training, always the worker thread: a
            # run on the GUI thread competes with the trainer and stalls the event loop.
            self._apply(self._run_probe(request))
            return
        self._submit(self._run_probe, request)

    def _submit(self, job, *args) -> None:
        """Run ``job(*args)`` (a probe run or a generation: both return their result and never
        raise) on the probe worker; its result comes back to ``_on_job_done`` on the GUI thread."""
        if self._closed:
            return
        self._in_flight += 1
        self.worker.submit(job, *args, done=self._on_job_done, failed=self._on_job_failed)

    def _on_job_failed(self, message: str, details: str) -> None:
        # The jobs catch everything themselves; this keeps the count right should one not.
        self._in_flight -= 1
        self.last_error = message

    def _on_job_done(self, result) -> None:
        self._in_flight -= 1
        if isinstance(result, GenerationResult):
            self._show_generation(result)
        else:
            self._apply(result)
        if self._pending is not None and not self._in_flight:
            request, self._pending = self._pending, None
            self._start(request)

    def _make_request(self) -> ProbeRequest | None:
        project = self.project
        if project is None or not project.graph.blocks:
            return None
        pool = self._probe_pool()
        if pool is None:
            return None
        x_pool, y_pool = pool
        self.gates.set_sample_count(len(x_pool))
        self.sample = min(self.sample, len(x_pool) - 1)
        self.gates.set_sample(self.sample)
        graph = project.graph.to_dict()
        weights = []
        if self.live_model is not None:
            weights.append((self.live_model.state_dict(),
                            "the weights being trained" if self.training else "the weights of the last training run"))
        if project.weights:
            weights.append((project.weights, "the saved weights"))
        return ProbeRequest(copy.deepcopy(graph), weights, "untrained (fresh) weights",
                            x_pool[self.sample:self.sample + 1],
                            y_pool[self.sample:self.sample + 1], self.sample, project.training.seed)

    def _probe_pool(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self._pool is not None:
            return self._pool
        project = self.project
        if project is None:
            return None
        dataset = self.dataset
        if dataset is None and not self.loads_datasets:
            self.last_error = WAITING_FOR_DATASET
            return None
        if dataset is None:
            from gatescope.studio.session import load_dataset
            try:
                dataset = load_dataset(project)
            except (DataError, OSError) as exc:
                self.last_error = f"the dataset cannot be loaded: {exc}"
                return None
            self.dataset = dataset
        s = project.training
        try:
            self._pool = probe_pool(dataset, s.val_fraction, s.test_fraction, s.seed)
        except DataError as exc:
            self.last_error = str(exc)
            return None
        return self._pool

    def _model_for(self, request: ProbeRequest) -> tuple[Model, str]:
        """The controller's own model for ``request.graph`` with the request's weights."""
        key = json.dumps(request.graph, sort_keys=True)
        if self._model_cache is None or self._model_cache[0] != key:
            self._model_cache = (key, Model(GraphSpec.from_dict(request.graph), seed=request.seed))
            self._fresh_weights = self._model_cache[1].state_dict()
        model = self._model_cache[1]
        for weights, source in request.weights:
            try:
                model.load_state_dict(weights)
                return model, source
            except ValueError:
                continue                            # made for another version of the graph
        model.load_state_dict(self._fresh_weights)
        if request.weights:
            return model, "untrained (fresh) weights: the trained ones do not fit the changed model"
        return model, "untrained (fresh) weights"

    def _run_probe(self, request: ProbeRequest) -> ProbeResult:
        """One forward and backward pass of the probe sample with probes on (any thread)."""
        result = ProbeResult(request)
        started = time.perf_counter()
        try:
            model, source = self._model_for(request)
            request.weights_source = source
            recurrent = [bid for bid, layer in model.layers.items() if is_recurrent(layer)]
            for bid in recurrent:
                model.layers[bid].probe = [0]
                model.layers[bid].probe_data = {}
            try:
                model.zero_grads()
                model.forward(request.x, training=False)
                result.loss = model.loss(request.y)
                model.backward()
            except (ValueError, IndexError, TypeError) as exc:
                result.error = f"the model cannot run the probe sample: {exc}"
            probes = collect_probes(model)
            for bid in recurrent:
                layer = model.layers[bid]
                result.recurrent[bid] = {"type": model.spec.block(bid).type, "settings": dict(layer.settings),
                                         "probes": unwrap_probes(probes.get(bid, {}))}
                layer.probe = None
            for bid, layer in model.layers.items():
                if layer.category == CONVOLUTION and "W" in layer.params:
                    maps = model.output_of(bid) if bid in model._outputs else None
                    result.conv[bid] = (to_numpy(layer.params["W"]).copy(),
                                        None if maps is None else to_numpy(maps)[0].copy())
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the panels, never raised on a thread
            result.error = f"{type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - started
        return result

    # ----------------------------------------------------------------- showing
    def _apply(self, result: ProbeResult | None) -> None:
        if result is None:
            return
        started = time.perf_counter()
        self._last_run_s = result.seconds
        self.last_result = result
        self.last_error = result.error
        self._show_recurrent(result)
        self._show_conv(result)
        self._show_health()
        self._update_generation_availability()
        self._refresh_cost_s = result.seconds + result.request.prepare_s + (time.perf_counter() - started)
        self.refreshed.emit()

    def _caption(self, result: ProbeResult) -> str:
        request = result.request
        text = f"test sample #{request.sample}, {label_text(request.y[0], self.dataset)}; {request.weights_source}"
        if result.loss is not None:
            text += f"; loss on this sample {result.loss:.4g}"
        if self.training and self._training_step is not None:
            text += f" (training step {self._training_step + 1})"
        return text

    def _input_sequence(self, x: np.ndarray, steps: int) -> InputSequence | None:
        described = describe_input(x, self.dataset.vocab if self.dataset is not None else None)
        if described is None or len(described[1]) != steps:
            return None
        return InputSequence(*described)

    def _show_recurrent(self, result: ProbeResult) -> None:
        blocks = []
        self._direction_keys = {}
        for bid, info in result.recurrent.items():
            units = info['settings'].get('hidden_size', info['settings'].get('filters'))
            label = f"{info['type']} {bid} ({plural(int(units), 'unit') if units is not None else 'units unknown'})"
            if info["settings"].get("bidirectional"):
                # A bidirectional block is two layers: each direction is a choice of its own.
                backward = f"{bid}{BACKWARD_KEY}"
                self._direction_keys[backward] = (bid, "_rev")
                blocks += [(bid, f"{label}, forward"), (backward, f"{label}, backward")]
            else:
                blocks.append((bid, label))
        if self.recurrent_block not in result.recurrent:
            self.recurrent_block = blocks[0][0] if blocks else None
        if self.recurrent_direction and not result.recurrent.get(self.recurrent_block, {}).get(
                "settings", {}).get("bidirectional"):
            self.recurrent_direction = ""
        current = self.recurrent_block
        if current is not None and self.recurrent_direction:
            current = f"{current}{BACKWARD_KEY}"
        self.gates.set_blocks(blocks, current)
        if result.error and not any(info["probes"] for info in result.recurrent.values()):
            for panel in (self.gates, self.cell_state):
                panel.show_message(result.error)
            return
        if self.recurrent_block is None:
            self.gates.show_message(GATES_NO_BLOCK)
            self.cell_state.show_message(CELL_NO_BLOCK)
            self.gradients.show_message("This model has no recurrent block: gradients through time need an "
                                        "RNN, LSTM or GRU block.")
            return
        caption = self._caption(result)
        info = result.recurrent[self.recurrent_block]
        view = sample_probe(info["probes"], direction=self.recurrent_direction) if info["probes"] else None
        if view is None or view.hidden is None:
            self.gates.show_message(result.error or "The block recorded nothing; press Refresh.")
            return
        steps = view.hidden.shape[0]
        sequence = self._input_sequence(result.request.x[0], steps)
        family = family_of(info["type"])
        pins = pinned_gates(info["settings"])
        bidirectional = ""
        if info["settings"].get("bidirectional"):
            bidirectional = (" (backward direction: it reads the sequence from the last step to the first)"
                             if self.recurrent_direction else " (forward direction)")
        if view.gates:
            notes = {name: f"pinned to {value:g} by an override" for name, value in pins.items() if name in view.gates}
            self.gates.set_gates(view.gates, family, sequence, f"{self.recurrent_block}{bidirectional}: {caption}",
                                 notes)
        else:
            self.gates.show_message(f"{self.recurrent_block} is a {info['type']}: it has no gates "
                                    "(h_t = tanh(x_t W + h_(t-1) U + b)). Its hidden state is in the Cell state "
                                    "panel; select an LSTM or GRU block to see gates.")
        self.cell_state.set_states(view.hidden, view.cell, sequence, f"{self.recurrent_block}{bidirectional}: {caption}")
        project_name = self.project.name if self.project is not None else "model"
        for bid, other in result.recurrent.items():
            directions = [("", "")]
            if other["settings"].get("bidirectional"):
                directions = [("", " forward"), ("_rev", " backward")]
            for direction, words in directions:
                probe = sample_probe(other["probes"], direction=direction) if other["probes"] else None
                if probe is None or probe.grad_hidden is None:
                    continue
                t = np.arange(len(probe.grad_hidden))
                name = f"{project_name} · {other['type']} {bid}{words}"
                key = f"{project_name}/{bid}{direction}"
                self.gradients.set_curve(f"{key}/grad_h", f"{name}: ‖∂L/∂h_t‖", t, probe.grad_hidden)
                if probe.grad_cell is not None:
                    self.gradients.set_curve(f"{key}/grad_c", f"{name}: ‖∂L/∂C_t‖", t, probe.grad_cell, dashed=True)
        self.gradients.set_caption(caption)

    def _show_conv(self, result: ProbeResult) -> None:
        if self.conv_block not in result.conv:
            self.conv_block = next(iter(result.conv), None)
        if self.project is not None:
            types = {b.id: b.type for b in self.project.graph.blocks}
            self.convolution.set_blocks([(bid, f"{types.get(bid, 'Conv')} {bid}") for bid in result.conv],
                                        self.conv_block)
        if self.conv_block is None:
            self.convolution.show_message(CONV_NO_BLOCK)
            return
        filters, maps = result.conv[self.conv_block]
        block_type = self.project.graph.block(self.conv_block).type if self.project is not None else "Conv"
        shape = "x".join(str(s) for s in filters.shape[2:])
        self.convolution.set_filters(filters, f"{self.conv_block} · {block_type}: {filters.shape[0]} filters of "
                                     f"{shape} over {filters.shape[1]} input channel(s); {result.request.weights_source}")
        self.convolution.set_feature_maps(maps, f"feature maps of test sample #{result.request.sample}")

    def _show_health(self) -> None:
        """Gate health of every recurrent block (from the training batch while training), flags."""
        from_training = bool(self._training_probes)
        sources = self._training_probes if from_training else (
            {bid: info["probes"] for bid, info in self.last_result.recurrent.items()} if self.last_result else {})
        settings = {bid: info["settings"] for bid, info in self.last_result.recurrent.items()} \
            if self.last_result else {}
        types = {b.id: b.type for b in self.project.graph.blocks} if self.project is not None else {}
        for bid, probes in sources.items():
            health = gate_health(probes)
            if not health:
                continue
            pins = pinned_gates(settings.get(bid, {}))
            findings = health_findings(health, pins)
            backward = gate_health(probes, direction="_rev") if settings.get(bid, {}).get("bidirectional") else {}
            backward_findings = health_findings(backward, pins) if backward else []
            # The block's flag on the canvas speaks for both directions.
            message = "; ".join(findings + [f"backward direction: {f}" for f in backward_findings])
            if self.flags.get(bid, "") != message:
                self.flags[bid] = message
                self.blockFlagged.emit(bid, message)
            if bid == self.recurrent_block:
                if self.recurrent_direction and backward:
                    health, findings = backward, backward_findings
                samples = len(np.atleast_1d(probes.get("samples", [0])))
                where = (f"{samples} samples of the training batch at step {(self._training_step or 0) + 1}"
                         if from_training else f"test sample #{self.sample}")
                if pins:
                    where += "; pinned: " + ", ".join(f"{gate_label(g, family_of(types.get(bid, '')))} = {v:g}"
                                                      for g, v in pins.items())
                direction = (" (backward direction)" if self.recurrent_direction else " (forward direction)") \
                    if backward else ""
                self.gate_health.set_health(health, findings, family_of(types.get(bid, "")), f"{bid}{direction}: {where}",
                                            notes=pinned_notes(health, pins))
        if self.recurrent_block is None or self.recurrent_block not in sources:
            self.gate_health.show_message(HEALTH_EMPTY)
        elif not gate_health(sources[self.recurrent_block]):
            self.gate_health.show_message(f"{self.recurrent_block} has no gates to check: select an LSTM or GRU block.")

    def flags_clear(self) -> None:
        for bid in [b for b, m in self.flags.items() if m]:
            self.blockFlagged.emit(bid, "")
        self.flags = {}

    def _show_empty(self) -> None:
        if self.project is None:
            message = "Open or build a model to look inside it."
        else:
            message = self.last_error
        defaults = ((self.gates, GATES_NO_BLOCK), (self.cell_state, CELL_NO_BLOCK),
                    (self.gradients, GRADIENTS_EMPTY), (self.gate_health, HEALTH_EMPTY),
                    (self.convolution, CONV_NO_BLOCK))
        for panel, default in defaults:
            panel.show_message(message or default)
        self._update_generation_availability()

    def _pick_default_blocks(self) -> None:
        if self.project is None:
            self.recurrent_block = self.conv_block = None
            return
        ids = {b.id: b.type for b in self.project.graph.blocks}
        if category_of(ids.get(self.recurrent_block)) != RECURRENT:
            self.recurrent_block = next((b for b, t in ids.items() if category_of(t) == RECURRENT), None)
            self.recurrent_direction = ""
        if category_of(ids.get(self.conv_block)) != CONVOLUTION:
            self.conv_block = next((b for b, t in ids.items() if category_of(t) == CONVOLUTION), None)

    def _on_block_chosen(self, key: str) -> None:
        """A choice in the gates panel's list: a block, or one direction of a bidirectional one."""
        if not key:
            return
        block_id, direction = self._direction_keys.get(key, (key, ""))
        if (block_id, direction) != (self.recurrent_block, self.recurrent_direction):
            self.recurrent_block, self.recurrent_direction = block_id, direction
            if self.last_result is not None:
                self._apply(self.last_result)

    def _on_conv_chosen(self, block_id: str) -> None:
        """A choice in the filters panel's list of convolution blocks."""
        if block_id and block_id != self.conv_block:
            self.conv_block = block_id
            if self.last_result is not None:
                self._apply(self.last_result)

    # ----------------------------------------------------------------- text generation
    def can_generate(self) -> tuple[bool, str]:
        """Whether the current model reads one-hot characters and predicts them; if not, why."""
        from gatescope.widgets.inside.text_generation import EMPTY_NO_MODEL
        dataset, project = self.dataset, self.project
        if project is not None and dataset is not None and dataset.meta.get("answer"):
            return True, ""           # an encoder-decoder: the prefix is its question
        if project is None or dataset is None or not dataset.vocab:
            return False, EMPTY_NO_MODEL
        result = self.last_result
        if result is None:
            return False, EMPTY_NO_MODEL
        shape = tuple(np.asarray(result.request.x).shape[1:])
        if len(shape) != 2 or shape[1] != len(dataset.vocab) or dataset.task != "classification":
            return False, EMPTY_NO_MODEL
        return True, ""

    def _update_generation_availability(self) -> None:
        available, why = self.can_generate()
        if available:
            self.text_generation.set_available(True)
            if (not self._generated_once and not self.training and self.project is not None
                    and self.project.weights):
                # A trained character model opened: show what it writes, as a person would ask first.
                self._generated_once = True
                panel = self.text_generation
                recipe = self.dataset.meta.get("answer") if self.dataset is not None else None
                if recipe and recipe.get("example"):
                    panel.prefix_edit.setText(recipe["example"])    # an encoder-decoder: ask it a question
                self.generate(panel.prefix_edit.text(), panel.temperature_spin.value(), panel.length_spin.value())
        else:
            self.text_generation.set_available(False, why)

    def generate(self, prefix: str, temperature: float, length: int) -> None:
        """Continue ``prefix`` by ``length`` characters at ``temperature`` (on the worker thread)."""
        if self._closed:
            return
        available, why = self.can_generate()
        if not available:
            self.text_generation.set_available(False, why)
            return
        request = self._make_request()
        self.text_generation.set_busy(True)
        recipe = self.dataset.meta.get("answer")
        if recipe:
            self._submit(self._answer_job, request, dict(recipe), prefix, float(temperature))
            return
        vocab = list(self.dataset.vocab)
        self._submit(self._generate_job, request, vocab, prefix, float(temperature), int(length))

    def _answer_job(self, request: ProbeRequest, recipe: dict, question: str, temperature: float) -> GenerationResult:
        """An encoder-decoder's answer to ``question``, its characters fed back (``compute.generate.ask``)."""
        result = GenerationResult(question, vocab=list(recipe["vocab"]))
        try:
            model, _ = self._model_for(request)
            answer, result.probabilities = ask(model, recipe, question, temperature, np.random.default_rng())
            result.text = question + answer
        except ValueError as exc:
            result.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported in the panel, never raised on a thread
            result.error = f"{type(exc).__name__}: {exc}"
        return result

    def _generate_job(self, request: ProbeRequest, vocab: list[str], prefix: str, temperature: float,
                      length: int) -> GenerationResult:
        result = GenerationResult(prefix, vocab=vocab)
        try:
            model, _ = self._model_for(request)
            for layer in model.layers.values():
                if is_recurrent(layer):
                    layer.probe = None
            text, probabilities = generate(model, vocab, prefix, length, temperature, np.random.default_rng())
            result.text, result.probabilities = text, probabilities
        except ValueError as exc:
            result.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported in the panel, never raised on a thread
            result.error = f"{type(exc).__name__}: {exc}"
        return result

    def _show_generation(self, result: GenerationResult) -> None:
        self.text_generation.set_busy(False)
        if result.error:
            self.text_generation.show_error(result.error)
            return
        self.text_generation.set_result(result.prefix, result.text[len(result.prefix):], result.probabilities,
                                        result.vocab)

    def shutdown(self) -> None:
        """Stop the worker thread (waits for a run under way); later requests are ignored."""
        self._closed = True
        self.worker.shutdown()


# Panel titles and where each starts in the Inside view: the gates and the filters share the
# central area as tabs; the others are docks on the right (studio.views.DEFAULT_ARRANGEMENT).
PANEL_TITLES = {
    "gates": ("Gates", "centre"),
    "convolution": ("Filters and feature maps", "centre"),
    "cell_state": ("Cell state", "right"),
    "gradients": ("Gradients through time", "right"),
    "gate_health": ("Gate health", "right"),
    "text_generation": ("Text generation", "right"),
}


def install_inside_panels(window) -> InsideController:
    """Add the inside-the-network panels to the main window as docks and wire them to it.

    ``window`` is a ``studio.app.MainWindow`` (or anything with the same hooks): each panel
    becomes a dock through ``add_panel``; the controller follows

    * ``projectChanged(project)``: look inside the newly opened project;
    * ``datasetLoaded(dataset)``: the window's dataset (loaded on its thread) gives the probe
      samples, so the controller never reads a dataset on the GUI thread;
    * ``graphAnalysed(analysis)``: any edit, a gate override pinned in the inspector say,
      recomputes the panels at once;
    * ``selectionChanged(ids)``: a recurrent block selected on the canvas is the one the gates
      and cell-state panels show, a convolution block the one whose filters are shown;
    * ``add_model_hook``: each training run's model records probes for the gate health and
      lends its weights to the probe runs; ``trainingStarted`` / ``trainingStep`` (with
      ``probes``) / ``trainingEpoch`` / ``trainingEnded`` keep the panels following the run at a
      bounded rate;
    * the controller's ``blockFlagged(block_id, message)`` goes to ``window.set_block_flag``,
      which marks a block with stuck gates on the canvas (an empty message clears it).

    Returns the controller (``shutdown()`` it when the window goes).
    """
    controller = InsideController(window)
    controller.loads_datasets = False
    for key, (title, area) in PANEL_TITLES.items():
        window.add_panel(title, controller.panels[key], "inside", area)

    def follow_project(project: Project) -> None:
        controller.set_project(project, window.current_dataset())
        controller.select_blocks(window.selected_block() or [])
        # In front: the gates of the first recurrent block, or the filters of a model without one.
        window.raise_panel(PANEL_TITLES["gates" if controller.recurrent_block or not controller.conv_block
                                              else "convolution"][0])

    def follow_dataset(dataset: Dataset) -> None:
        controller.set_dataset(dataset)
        # A character model's headline is its text; any other recurrent model's, its memory.
        window.raise_panel(PANEL_TITLES["text_generation" if dataset.vocab else "cell_state"][0])
        controller.graph_changed()

    def follow_graph(_analysis) -> None:
        if controller.project is window.project:    # a project being opened arrives by projectChanged
            controller.graph_changed()

    window.projectChanged.connect(follow_project)
    window.datasetLoaded.connect(follow_dataset)
    window.graphAnalysed.connect(follow_graph)
    window.selectionChanged.connect(controller.select_blocks)
    window.add_model_hook(controller.training_hook)
    window.trainingStarted.connect(controller.on_training_started)
    window.trainingStep.connect(controller.on_training_steps)
    window.trainingEpoch.connect(controller.on_training_epoch)
    window.trainingEnded.connect(controller.on_training_ended)
    controller.blockFlagged.connect(window.set_block_flag)
    follow_project(window.project)
    return controller
