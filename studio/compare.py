"""Comparisons of a project's variants, without the window (issue 19).

* ``swap_options(graph, block_id)``: what a block can be swapped for: the block types of its
  palette group (``LSTM:peephole`` and ``LSTM:coupled`` for LSTM's variants) that fit where it
  is, the graph analysed with each in its place.
* ``variants_for(graph, training, choice)``: the ``compute.lockstep.Variant`` of every option of a
  ``studio.compare_choice.CompareChoice``, each checked: a swap to a type that cannot replace the
  block, a setting the block lacks or a value it cannot take is one ``ChoiceError`` naming what can.
* ``compare_events(job, control)``: the variants trained in lock-step (``compute.lockstep``) as a
  generator of coalesced host-only events for the window (``studio.compare_view``) and the
  command line (``gatescope compare``); its last event carries each variant's ``VariantResult``.
* ``variant_project(base, result)``: a variant as a project of its own, with its weights and run.
"""
from __future__ import annotations

import copy
import logging
import re
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.backend import DeviceError, select_device
from gatescope.compute.datasets import Dataset, DataError, load
from gatescope.compute.graph import Block, GraphError, GraphSpec, analyse
from gatescope.compute.layers.base import SettingsError
from gatescope.compute.lockstep import LockStep, Variant
from gatescope.compute.train import Control, TrainSettings, TrainState
from gatescope.studio import runs as run_history
from gatescope.studio.compare_choice import TRAINING, VARIANT_MARK, ChoiceError, CompareChoice
from gatescope.studio.inside_math import gate_health, unwrap_probes
from gatescope.studio.palette_data import block_name
from gatescope.studio.project import Project
from gatescope.studio.session import dataset_reference
from gatescope.studio.training_run import MAX_UPDATES_PER_S, YIELD_S, RunEvent, test_result

log = logging.getLogger(__name__)

VARIANT_SETTING = "variant"      # a type's setting whose choices are its variants (LSTM's)


# ----------------------------------------------------------------------------- swaps
def _split_option(option: str) -> tuple[str, str]:
    type_name, _, variant = option.partition(VARIANT_MARK)
    return type_name, variant


def swap_label(option: str) -> str:
    """How a swap option reads in a legend: ``"LSTM:peephole"`` -> ``"peephole LSTM"``."""
    type_name, variant = _split_option(option)
    return f"{variant} {type_name}" if variant else type_name


def _options_of(type_name: str) -> list[str]:
    """A type and its variants as swap options: ``LSTM``, ``LSTM:peephole``, ``LSTM:coupled``."""
    cls = layer_registry.REGISTRY[type_name]
    spec = {s.name: s for s in cls.settings_spec}
    if VARIANT_SETTING not in spec:
        return [type_name]
    default = spec[VARIANT_SETTING].default
    return [type_name] + [f"{type_name}{VARIANT_MARK}{c}" for c in spec[VARIANT_SETTING].choices if c != default]


def swapped_block(block: Block, option: str) -> Block:
    """``block`` as the type (and variant) ``option`` names: the settings the new type shares
    with the old keep their values (hidden size, return sequences, truncation...), the others
    take the new type's defaults. KeyError for an unknown type."""
    type_name, variant = _split_option(option)
    spec = {s.name: s for s in layer_registry.REGISTRY[type_name].settings_spec}
    settings = {}
    for name, value in block.settings.items():
        if name in spec and name != VARIANT_SETTING:
            try:
                spec[name].coerce(value)
            except SettingsError:
                continue
            settings[name] = value
    if variant:
        settings[VARIANT_SETTING] = variant
    return Block(block.id, type_name, settings)


def _with_block(graph: GraphSpec, block: Block) -> GraphSpec:
    return GraphSpec([block if b.id == block.id else copy.deepcopy(b) for b in graph.blocks], list(graph.wires))


def swap_options(graph: GraphSpec, block_id: str) -> list[str]:
    """Every option ``block_id`` can be swapped for (its own type among them): the types of its
    palette group, with their variants, that leave the graph with no problem."""
    block = graph.block(block_id)
    cls = layer_registry.REGISTRY.get(block.type)
    if cls is None:
        return []
    options = []
    for type_name, other in layer_registry.REGISTRY.items():
        if other.category != cls.category:
            continue
        for option in _options_of(type_name):
            if analyse(_with_block(graph, swapped_block(block, option))).ok:
                options.append(option)
    return options


def swappable_blocks(graph: GraphSpec) -> list[str]:
    """The blocks of ``graph`` whose palette group has another type (or whose type has variants):
    those that may have something to be swapped for (``swap_options`` says what, at a cost)."""
    groups: dict[str, int] = {}
    for type_name, cls in layer_registry.REGISTRY.items():
        groups[cls.category] = groups.get(cls.category, 0) + len(_options_of(type_name))
    return [b.id for b in graph.blocks if b.type in layer_registry.REGISTRY
            and groups[layer_registry.REGISTRY[b.type].category] > 1]


def _or_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _block_of(graph: GraphSpec, block_id: str) -> Block:
    try:
        return graph.block(block_id)
    except KeyError:
        names = ", ".join(f"{b.id} ({b.type})" for b in graph.blocks)
        raise ChoiceError(f"the model has no block {block_id}; its blocks are {names}") from None


def _swap_variants(graph: GraphSpec, training: TrainSettings, choice: CompareChoice) -> list[Variant]:
    block = _block_of(graph, choice.block)
    options = swap_options(graph, block.id)
    variants = []
    for option in choice.options:
        if option not in options:
            others = [o for o in options if o != option]
            can = f"it can be swapped for {_or_list(others)}" if others else "nothing else fits where it is"
            raise ChoiceError(f"{swap_label(option)} cannot replace {block_name(graph, block.id)}: {can} "
                              f"(blocks of its group, {layer_registry.REGISTRY[block.type].category}, that fit there)")
        variants.append(Variant(swap_label(option), _with_block(graph, swapped_block(block, option)),
                                TrainSettings(**training.to_dict())))
    return variants


# ----------------------------------------------------------------------------- settings
TRUE_WORDS, FALSE_WORDS = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


def typed_value(kind: str, value: Any) -> Any:
    """A value as typed on the command line (text) read as a setting of ``kind`` (``int``,
    ``float``, ``bool``, ``shape``, ``padding``; text stays text for ``str`` and ``choice``);
    values already typed pass through. ValueError naming the kind for text that is not one."""
    if not isinstance(value, str) or kind in ("str", "choice"):
        return value
    text = value.strip()
    if kind == "bool":
        if text.lower() in TRUE_WORDS + FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise ValueError(f"{text!r} is not true or false")
    readers = {"int": (int, "a whole number"), "float": (float, "a number"),
               "shape": (lambda t: tuple(int(part) for part in t.lower().split("x")), "sizes such as 8x8"),
               "padding": (lambda t: t if t in ("valid", "same") else int(t), "valid, same or a whole number")}
    if kind not in readers:
        raise ValueError(f"settings of kind {kind} cannot be typed")
    read, wanted = readers[kind]
    try:
        return read(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {wanted}") from None


def _kind_of_training(name: str) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(getattr(TrainSettings(), name))]


def _vary_variants(graph: GraphSpec, training: TrainSettings, choice: CompareChoice) -> list[Variant]:
    setting = choice.setting
    variants = []
    if choice.block == TRAINING:
        names = [f.name for f in fields(TrainSettings)]
        if setting not in names:
            raise ChoiceError(f"there is no training setting {setting}; they are {', '.join(names)}")
        kind = _kind_of_training(setting)
    else:
        block = _block_of(graph, choice.block)
        spec = {s.name: s for s in layer_registry.REGISTRY[block.type].settings_spec}
        if setting not in spec:
            raise ChoiceError(f"{block_name(graph, block.id)} has no setting {setting}; its settings are "
                              f"{', '.join(spec) or 'none'} (training.{setting} for a training setting)")
        kind = spec[setting].kind
    for raw in choice.options:
        where = f"{choice.block}.{setting}={run_history.show_value(raw)}"
        try:
            value = typed_value(kind, raw)
            if choice.block == TRAINING:
                values = dict(training.to_dict(), **{setting: float(value) if kind == "float" else value})
                settings = TrainSettings.from_dict(values)
                variant_graph = copy.deepcopy(graph)
            else:
                value = spec[setting].coerce(value)
                settings = TrainSettings(**training.to_dict())
                changed = Block(block.id, block.type, dict(block.settings, **{setting: value}))
                variant_graph = _with_block(graph, changed)
                problem = analyse(variant_graph).first_error()
                if problem:
                    raise ValueError(problem)
        except (ValueError, TypeError) as exc:
            raise ChoiceError(f"{where}: {exc}") from None
        variants.append(Variant(f"{setting} {run_history.show_value(value)}", variant_graph, settings))
    return variants


def typed_choice(graph: GraphSpec, choice: CompareChoice) -> CompareChoice:
    """``choice`` with a vary's values read as its setting's kind (``"0.5"`` -> ``0.5``) where they
    can be, as a project file keeps them; values that cannot be, and swaps, stay as they are."""
    if choice.kind != "vary":
        return choice
    if choice.block == TRAINING:
        if choice.setting not in {f.name for f in fields(TrainSettings)}:
            return choice
        kind = _kind_of_training(choice.setting)
    else:
        try:
            block = graph.block(choice.block)
        except KeyError:
            return choice
        spec = {s.name: s for s in layer_registry.REGISTRY[block.type].settings_spec}
        if choice.setting not in spec:
            return choice
        kind = spec[choice.setting].kind
    try:
        values = tuple(typed_value(kind, v) for v in choice.options)
    except ValueError:
        return choice
    if kind == "float":
        values = tuple(float(v) for v in values)
    return replace(choice, options=values)


def variants_for(graph: GraphSpec, training: TrainSettings, choice: CompareChoice) -> list[Variant]:
    """The variants ``choice`` makes of the model ``graph`` trained with ``training``, in its
    order, each label unique; ChoiceError (one sentence, naming what can be done) if any cannot be."""
    problem = analyse(graph).first_error()
    if problem:
        raise ChoiceError(f"the model has a problem to fix first: {problem}")
    variants = _swap_variants(graph, training, choice) if choice.kind == "swap" else \
        _vary_variants(graph, training, choice)
    seen: dict[str, int] = {}
    for variant in variants:
        seen[variant.label] = seen.get(variant.label, 0) + 1
        if seen[variant.label] > 1:
            variant.label = f"{variant.label} ({seen[variant.label]})"
    return variants


# ----------------------------------------------------------------------------- the run
@dataclass
class CompareJob:
    """What a comparison needs, copied away from the document. ``dataset``: the loaded dataset,
    else ``dataset_ref`` is loaded on the worker thread. ``epochs``: for every variant (None:
    each its own ``epochs`` setting)."""

    variants: list[Variant]
    dataset_ref: dict[str, Any]
    epochs: int | None = None
    dataset: Dataset | None = None
    device: str = "auto"


@dataclass
class VariantResult:
    """What one variant gave: its training state and weights (host arrays), the held-out test
    result (``{"loss", "accuracy", "samples"}`` or None), the seconds its steps took, their
    number and mean, its parameter count, how it ended and why."""

    label: str
    graph: GraphSpec
    settings: TrainSettings
    state: TrainState
    weights: dict[str, np.ndarray]
    test: dict[str, Any] | None
    seconds: float
    steps: int
    seconds_per_step: float | None
    parameters: int
    ended: str
    message: str
    shared: list[str] = field(default_factory=list)


def _probe_summary(lockstep: LockStep, index: int, probes: dict) -> dict[str, dict[str, Any]]:
    """Per recurrent block of variant ``index``: its type, ``grad_hidden`` / ``grad_cell``
    (``||dL/dh_t||``, ``||dL/dC_t||`` over the probe samples, ``(T,)``; None where the block has
    no cell) and the gate ``health`` (``studio.inside_math.gate_health``, forward direction)."""
    graph = lockstep.variants[index].graph
    out = {}
    for block_id, data in probes.items():
        data = unwrap_probes(data)
        if "grad_hidden_norm_batch" not in data:
            continue
        cell = data.get("grad_cell_norm_batch")
        out[block_id] = {"type": graph.block(block_id).type,
                         "grad_hidden": np.asarray(data["grad_hidden_norm_batch"], dtype=np.float64),
                         "grad_cell": None if cell is None else np.asarray(cell, dtype=np.float64),
                         "health": gate_health(data)}
    return out


def compare_events(job: CompareJob, control: Control, min_interval_s: float = 1.0 / MAX_UPDATES_PER_S,
                   pause_s: float = YIELD_S) -> Iterator[RunEvent]:
    """Train ``job``'s variants in lock-step, yielding ``studio.training_run.RunEvent`` s:

    * ``("started", {"variants": [{"label", "parameters", "steps_per_epoch", "epochs",
      "shared"}], "same_batches", "device_description", "task", "class_names"})``;
    * ``("steps", {"variants": {index: {"global_steps", "losses", "accuracies", "grad_norms"}},
      "done", "total"})``: every step since the last one sent (NumPy arrays; accuracies NaN for a
      regression; the gradient's global norm before any clipping), at most ``1 / min_interval_s``
      times a second; ``done``/``total``: steps per variant; ``seconds_per_step``: each
      variant's median so far (None before its first);
    * ``("epoch", {"variant", "record"})``: a variant's epoch record;
    * ``("probe", {"variant", "epoch", "blocks"})``: gradients through time and gate health of
      its recurrent blocks after ``epoch`` epochs (see ``_probe_summary``);
    * ``("variant_ended", {"variant", "kind", "message"})``;
    * ``("ended", {"kind", "message", "results"})``, last: ``results`` a ``VariantResult`` per
      variant, or None when none could start.

    ``pause_s`` after each step hands the interpreter to the GUI thread (0 on the command line).
    Never raises: a failure ends the comparison with an ``ended`` event of kind ``failed``."""
    try:
        device = select_device(job.device)
        dataset = job.dataset if job.dataset is not None else load(job.dataset_ref)
        lockstep = LockStep(job.variants, dataset, device.xp, device.name)
    except (DeviceError, DataError, GraphError, ValueError) as exc:
        yield RunEvent("ended", {"kind": "failed", "message": str(exc), "results": None})
        return
    except Exception as exc:  # noqa: BLE001 - reported to the person, with the details logged
        log.error("the comparison could not start:\n%s", traceback.format_exc())
        yield RunEvent("ended", {"kind": "failed", "message": f"the comparison could not start: "
                                 f"{type(exc).__name__}: {exc}", "results": None})
        return
    yield from _compare(job, control, lockstep, device.description, min_interval_s, pause_s)


def _compare(job: CompareJob, control: Control, lockstep: LockStep, device_description: str,
             min_interval_s: float, pause_s: float) -> Iterator[RunEvent]:
    count = len(job.variants)
    planned = [job.epochs if job.epochs is not None else v.settings.epochs for v in job.variants]
    plans = [t.batch_plan() for t in lockstep.trainers]
    totals = [steps * epochs for (steps, _), epochs in zip(plans, planned)]
    yield RunEvent("started", {
        "variants": [{"label": v.label, "parameters": int(m.analysis.total_params), "steps_per_epoch": plan[0],
                      "epochs": epochs, "shared": list(shared)}
                     for v, m, plan, epochs, shared in zip(job.variants, lockstep.models, plans, planned,
                                                           lockstep.shared)],
        "same_batches": lockstep.same_batches(min(planned)), "device_description": device_description,
        "task": lockstep.models[0].task, "class_names": list(lockstep.dataset.class_names)})
    pending: dict[int, tuple[list, list, list, list]] = {}
    endings: dict[int, tuple[str, str]] = {}
    last_sent = time.perf_counter()

    def flush() -> RunEvent | None:
        nonlocal pending, last_sent
        last_sent = time.perf_counter()
        if not pending:
            return None
        payload = {i: {"global_steps": np.asarray(s, dtype=np.int64), "losses": np.asarray(l, dtype=np.float64),
                       "accuracies": np.asarray(a, dtype=np.float64), "grad_norms": np.asarray(g, dtype=np.float64)}
                   for i, (s, l, a, g) in pending.items()}
        pending = {}
        return RunEvent("steps", {"variants": payload, "done": list(lockstep.steps_done), "total": totals,
                                  "seconds_per_step": [lockstep.seconds_per_step(k) for k in range(count)]})

    try:
        for i, event in lockstep.run(job.epochs, control):
            kind, data = event.kind, event.data
            if kind == "step":
                steps, losses, accuracies, norms = pending.setdefault(i, ([], [], [], []))
                steps.append(int(data["global_step"]))
                losses.append(float(data["loss"]))
                accuracies.append(np.nan if data.get("accuracy") is None else float(data["accuracy"]))
                norms.append(float(data["grad_norm"]))
                if time.perf_counter() - last_sent >= min_interval_s:
                    sent = flush()
                    if sent is not None:
                        yield sent
                if pause_s:
                    time.sleep(pause_s)
            elif kind == "epoch":
                sent = flush()
                if sent is not None:
                    yield sent
                record = {k: v for k, v in data.items() if k not in ("confusion", "val_predictions")}
                yield RunEvent("epoch", {"variant": i, "record": record})
            elif kind == "probe":
                yield RunEvent("probe", {"variant": i, "epoch": data["epoch"],
                                         "blocks": _probe_summary(lockstep, i, data["probes"])})
            elif kind in ("finished", "stopped", "failed"):
                sent = flush()
                if sent is not None:
                    yield sent
                endings[i] = (kind, data.get("message", kind))
                yield RunEvent("variant_ended", {"variant": i, "kind": kind, "message": endings[i][1]})
    except Exception as exc:  # noqa: BLE001 - a bug or a surprise in a layer: report it, keep nothing
        log.error("the comparison failed:\n%s", traceback.format_exc())
        yield RunEvent("ended", {"kind": "failed", "message": f"the comparison failed: {type(exc).__name__}: {exc}",
                                 "results": None})
        return
    results = [_result(lockstep, i, *endings.get(i, ("finished", "training finished"))) for i in range(count)]
    if control.stop_requested:
        kind, message = "stopped", "stopped; each variant keeps the weights of its last step"
    elif all(r.ended == "failed" for r in results):
        kind, message = "failed", "every variant failed: " + "; ".join(f"{r.label}: {r.message}" for r in results)
    else:
        failed = [r.label for r in results if r.ended == "failed"]
        kind = "finished"
        message = "the comparison finished" + (f" ({_or_list(failed)} failed)" if failed else "")
    yield RunEvent("ended", {"kind": kind, "message": message, "results": results})


def _result(lockstep: LockStep, i: int, ended: str, message: str) -> VariantResult:
    variant, trainer, model = lockstep.variants[i], lockstep.trainers[i], lockstep.models[i]
    return VariantResult(label=variant.label, graph=copy.deepcopy(variant.graph),
                         settings=TrainSettings(**variant.settings.to_dict()), state=copy.deepcopy(trainer.state),
                         weights=model.state_dict(), test=test_result(trainer), seconds=lockstep.seconds[i],
                         steps=lockstep.steps_done[i], seconds_per_step=lockstep.seconds_per_step(i),
                         parameters=int(model.analysis.total_params), ended=ended, message=message,
                         shared=list(lockstep.shared[i]))


# ----------------------------------------------------------------------------- results as projects and runs
def slug(label: str) -> str:
    """A label as a file name's part: ``"peephole LSTM"`` -> ``"peephole-lstm"``."""
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-.") or "variant"


def result_run(runs: list[run_history.Run], result: VariantResult, keep_weights: bool) -> run_history.Run:
    """``result`` as the next run of a history (kind ``compare``, labelled with the variant)."""
    return run_history.new_run(runs, kind="compare", label=result.label, ended=result.ended, graph=result.graph,
                               training=result.settings, state=result.state, first_epoch=0, test=result.test,
                               seconds=result.seconds, parameters=result.parameters,
                               weights=result.weights if keep_weights else None)


def variant_project(base: Project, result: VariantResult, compared_with: list[str] | None = None) -> Project:
    """Variant ``result`` of ``base`` as a project of its own (no file yet): its model, settings,
    trained weights and its run; the dataset as ``base`` names it, a file's path made absolute."""
    others = [label for label in (compared_with or []) if label != result.label]
    description = (f"{result.label}: a variant of {base.name}" +
                   (f", trained in lock-step with {_or_list(others)}." if others else ".") +
                   (f"\n\n{base.description}" if base.description else ""))
    project = Project(name=f"{base.name}-{slug(result.label)}", description=description,
                      graph=copy.deepcopy(result.graph), positions=dict(base.positions),
                      training=TrainSettings(**result.settings.to_dict()), dataset=dataset_reference(base),
                      panels={k: v for k, v in base.panels.items()}, keep_run_weights=base.keep_run_weights)
    project.take_train_state(result.state, result.weights,
                             last_run={"planned_epochs": result.state.epochs_done, "ended": result.ended,
                                       "test": result.test})
    project.runs = [result_run([], result, project.keep_run_weights)]
    return project


def with_model(project: Project, graph: GraphSpec, training: TrainSettings, state: TrainState,
               weights: dict[str, np.ndarray], ended: str, test: dict | None) -> Project:
    """``project`` with another model: ``graph`` trained with ``training`` to ``state`` and
    ``weights`` (a variant made the project's model, a run restored). Its file, name, dataset,
    run history, comparison and layout stay; blocks new to the canvas are placed when it opens."""
    changed = replace(project, graph=copy.deepcopy(graph), training=TrainSettings(**training.to_dict()),
                      positions={k: v for k, v in project.positions.items() if k in {b.id for b in graph.blocks}},
                      runs=list(project.runs))
    changed.take_train_state(state, weights, last_run={"planned_epochs": state.epochs_done, "ended": ended,
                                                       "test": test})
    return changed
