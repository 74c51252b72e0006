"""Variants of a model trained side by side, step by step, on the same batches (issue 19).

The lectures' claims are comparisons (the LSTM keeps a gradient alive where the plain RNN loses
it; the GRU does as well with fewer parameters). ``LockStep`` makes such a comparison fair and
watchable: every variant gets its own ``compute.train.Trainer`` (the one training loop; nothing
here trains by itself), and ``run()`` advances them in turn, one event at a time, always the
variant that is least far along, so their curves grow together. What makes the steps comparable:

* the same data order: a trainer's batches are a function of its seed and the epoch alone
  (``Trainer.epoch_batches``), so variants with the same seed, batch size and split read the same
  batch at every step; ``same_batches`` checks this on the batches themselves;
* the same initial weights wherever they can be the same: an array of a later variant is
  replaced by an earlier variant's when it belongs to the same block id under the same name,
  has the same shape and comes from the same initialisation rule (the two blocks, initialised
  from one fixed generator, give equal values). So the Dense head after an LSTM swapped for a GRU
  starts from the same weights in both, while a changed ``forget_bias_init`` keeps its own bias.
  Variants with different seeds share nothing (a different seed is asked for on purpose).

Probes: after the start and after every epoch of each variant, ``run`` makes one forward and
backward pass of ``PROBE_SAMPLES`` fixed validation samples with the recurrent layers' probes on
and yields what they recorded (gates, states, ``||dL/dh_t||``) as a ``probe`` event. The pass
changes no weight and happens between steps, so a variant's curve is exactly the curve of that
variant trained alone (the tests check this bit for bit).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.datasets import Dataset
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.train import Control, Event, Trainer, TrainSettings, collect_probes

PROBE_SAMPLES = 8        # validation samples each probe pass records
ENDINGS = ("finished", "stopped", "failed")


@dataclass
class Variant:
    """One model to compare: a label to show, its graph and its training settings."""

    label: str
    graph: GraphSpec
    settings: TrainSettings


def _initialisation(model: Model, block_id: str) -> dict[str, np.ndarray]:
    """What ``block_id`` of ``model`` is initialised to from one fixed generator: equal results
    for two blocks mean one initialisation rule for those arrays."""
    block = model.spec.block(block_id)
    layer = layer_registry.create(block.type, block.settings)
    return layer.initial_params(model.analysis.info[block_id].in_shapes, np.random.default_rng(0))


def share_initial_weights(variants: list[Variant], models: list[Model]) -> list[list[str]]:
    """Give each model the initial arrays of an earlier one wherever they can be the same (see the
    module docstring); returns, per model, the names (``block/array``) it took from an earlier one."""
    rules: dict[tuple[int, str], dict[str, np.ndarray]] = {}

    def rule(k: int, block_id: str) -> dict[str, np.ndarray]:
        if (k, block_id) not in rules:
            rules[k, block_id] = _initialisation(models[k], block_id)
        return rules[k, block_id]

    shared: list[list[str]] = []
    for k, (variant, model) in enumerate(zip(variants, models)):
        taken: list[str] = []
        for name, array in model.arrays().items():
            block_id, array_name = name.split("/", 1)
            for j in range(k):
                if variants[j].settings.seed != variant.settings.seed:
                    continue
                earlier = models[j].arrays().get(name)
                if earlier is None or tuple(earlier.shape) != tuple(array.shape):
                    continue
                if np.array_equal(rule(k, block_id).get(array_name), rule(j, block_id).get(array_name)):
                    array[...] = earlier
                    taken.append(name)
                    break
        shared.append(taken)
    return shared


class LockStep:
    """Trains ``variants`` on ``dataset`` in lock-step (see the module docstring).

    ``models[i]`` and ``trainers[i]`` belong to ``variants[i]``; ``initial_weights[i]`` are the
    host arrays it starts from; ``shared[i]`` the array names it took from an earlier variant;
    ``step_seconds[i]`` the time each of its training steps took, ``seconds[i]`` their sum and
    ``steps_done[i]`` their number.
    ``xp``/``device_name``: where the models compute (``compute.backend.select_device``).
    """

    def __init__(self, variants: list[Variant], dataset: Dataset, xp=np, device_name: str = "cpu",
                 probe_samples: int = PROBE_SAMPLES):
        if not variants:
            raise ValueError("a comparison needs at least one variant")
        self.variants = list(variants)
        self.dataset = dataset
        self.models = [Model(v.graph, seed=v.settings.seed, xp=xp) for v in self.variants]
        self.shared = share_initial_weights(self.variants, self.models)
        self.initial_weights = [m.state_dict() for m in self.models]
        self.trainers = [Trainer(m, dataset, v.settings, None, device_name)
                         for m, v in zip(self.models, self.variants)]
        self.step_seconds: list[list[float]] = [[] for _ in self.variants]
        split = self.trainers[0].split
        pool = split.val if len(split.val) else split.train
        chosen = np.asarray(pool)[:probe_samples]
        self.probe_x, self.probe_y = dataset.x[chosen], dataset.y[chosen]

    def same_batches(self, epochs: int) -> bool:
        """True when every variant reads the very same batches at every step of the next
        ``epochs`` epochs (compared index by index, not assumed from the settings)."""
        plans = {t.batch_plan() for t in self.trainers}
        if len(plans) > 1:
            return False
        for offset in range(max(0, epochs)):
            runs = [t.epoch_batches(t.state.epochs_done + offset) for t in self.trainers]
            for batches in zip(*runs):
                if any(not np.array_equal(b, batches[0]) for b in batches[1:]):
                    return False
        return True

    def probe(self, index: int) -> dict[str, dict[str, np.ndarray]]:
        """One forward and backward pass of the probe samples through model ``index`` with its
        recurrent layers recording; ``block_id -> probe arrays`` (host copies). No weight
        changes, and the layers are left with probes off and zero gradients."""
        model = self.models[index]
        recording = [layer for layer in model.layers.values() if hasattr(layer, "probe_data")]
        if not recording or not len(self.probe_x):
            return {}
        for layer in recording:
            layer.probe = list(range(len(self.probe_x)))
            layer.probe_data = {}
        try:
            model.zero_grads()
            with np.errstate(over="ignore", invalid="ignore"):
                model.forward(self.probe_x, training=False)
                model.loss(self.probe_y)
                model.backward()
            return collect_probes(model)
        finally:
            for layer in recording:
                layer.probe = None
                layer.probe_data = {}
            model.zero_grads()

    def run(self, epochs: int | None = None, control: Control | None = None) -> Iterator[tuple[int, Event]]:
        """Train every variant ``epochs`` epochs (default: each its own ``settings.epochs``),
        yielding ``(variant index, event)``: each trainer's events (start, step, epoch, and one
        of finished, stopped, failed), and ``probe`` events ``{"epoch": epochs done, "probes":
        ...}`` after the start and after every epoch. The next event always comes from the
        variant with the smallest share of its steps done (the first of equals), so the variants
        move step by step together; one that ends drops out and the others go on. ``control``
        pauses all of them between steps; its stop ends each variant after the same share of
        its run (those behind the leader first catch up)."""
        control = control or Control()
        # Each trainer has a control of its own: a stop asked for mid-round lets the variants
        # behind the leader catch up first, so every variant stops after the same share of its run.
        own = {i: Control() for i in range(len(self.trainers))}
        runs = {i: trainer.run(epochs, own[i]) for i, trainer in enumerate(self.trainers)}
        totals = {i: 0 for i in runs}

        def share(k: int) -> float:
            return len(self.step_seconds[k]) / totals[k] if totals[k] else 0.0

        stop_at = None
        while runs:
            control.wait_while_paused()
            if control.stop_requested:
                stop_at = max(share(k) for k in runs) if stop_at is None else stop_at
                for k in runs:
                    if share(k) >= stop_at - 1e-12:
                        own[k].stop()
            i = min(runs, key=lambda k: (share(k), k))
            started = time.perf_counter()
            try:
                event = next(runs[i])
            except StopIteration:
                del runs[i]
                continue
            if event.kind == "step":
                self.step_seconds[i].append(time.perf_counter() - started)
            yield i, event
            if event.kind == "start":
                totals[i] = max(1, event.data["steps_per_epoch"] * event.data["epochs"])
            if event.kind in ("start", "epoch"):
                yield i, Event("probe", {"epoch": self.trainers[i].state.epochs_done, "probes": self.probe(i)})
            elif event.kind in ENDINGS:
                del runs[i]

    @property
    def steps_done(self) -> list[int]:
        return [len(times) for times in self.step_seconds]

    @property
    def seconds(self) -> list[float]:
        return [float(sum(times)) for times in self.step_seconds]

    def seconds_per_step(self, index: int) -> float | None:
        """The median seconds of one training step of variant ``index`` (None before its first).
        The median, not the mean: a variant's first step also compiles or loads its kernels, and
        on a shared machine a step now and then waits for another process (on the 2-core
        development machine under load, a 64-unit LSTM's first step took 712 ms, its median 211 ms)."""
        times = self.step_seconds[index]
        return float(np.median(times)) if times else None
