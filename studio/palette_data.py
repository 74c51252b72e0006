"""The engine's registry, analysis and datasets turned into the plain data the widgets take.

No Qt here: ``widgets`` never see a Layer, a BlockInfo or a Dataset, only dicts, strings and
NumPy arrays built by these functions.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.datasets import BUILTINS, Dataset, builtin_names
from gatescope.compute.graph import Analysis, Block, GraphSpec
from gatescope.compute.layers.base import Setting
from gatescope.compute.augment import LIMITS as AUGMENT_LIMITS
from gatescope.compute.optim import OPTIMIZERS, SCHEDULES
from gatescope.compute.train import WHOLE_RANGES
from gatescope.studio.wording import article, plural

# Short forms of the settings that say most about a block, for the line under its title
# (a count with its noun goes through ``plural``: "1 unit", "8 filters").
_COUNTED = {"filters": "filter", "units": "unit"}
_DETAIL_FORMS = {
    "hidden_size": "{} hidden", "kernel_size": "kernel {}",
    "size": "size {}", "stride": "stride {}", "rate": "rate {}", "shape": "{}", "padding": "{}",
    "slope": "slope {}", "return_sequences": "all steps",
}

# Parameters of bundled datasets whose values are a known few (shown as choices in the data panel).
DATASET_CHOICES = {"digits": {"layout": ["image", "vector", "rows"]}}
# Registered sources that read a person's own files: offered as own data (a video folder is a
# format of the file loader), not in the list of bundled datasets.
OWN_DATA_SOURCES = ("video-folder",)


def palette_blocks() -> list[dict]:
    """Every registered block type: ``{"type", "category", "summary"}``."""
    return [{"type": name, "category": cls.category, "summary": cls.summary}
            for name, cls in layer_registry.REGISTRY.items()]


def categories() -> list[str]:
    return list(layer_registry.CATEGORIES)


def setting_field(setting: Setting) -> dict:
    """One layer setting as a form field (see ``widgets.forms``)."""
    return {"name": setting.name, "kind": setting.kind, "label": setting.label or setting.name,
            "help": setting.help, "minimum": setting.minimum, "maximum": setting.maximum,
            "choices": list(setting.choices), "default": setting.default}


def block_fields(block_type: str) -> list[dict]:
    """The form fields of ``block_type``'s settings (empty for an unknown type)."""
    cls = layer_registry.REGISTRY.get(block_type)
    return [setting_field(s) for s in cls.settings_spec] if cls else []


def default_settings(block_type: str) -> dict[str, Any]:
    """Every setting of ``block_type`` at its default."""
    cls = layer_registry.REGISTRY[block_type]
    return {s.name: s.default for s in cls.settings_spec}


def block_summary(block_type: str) -> str:
    cls = layer_registry.REGISTRY.get(block_type)
    return cls.summary if cls else f"unknown block type {block_type}"


def _short(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def block_detail(block: Block) -> str:
    """The key settings of ``block`` in a few words, e.g. ``'8 filters, kernel 3, stride 1'``."""
    cls = layer_registry.REGISTRY.get(block.type)
    if cls is None:
        return "unknown type"
    parts = []
    for setting in cls.settings_spec:
        value = block.settings.get(setting.name, setting.default)
        if setting.name == "stride" and value == 0:  # pooling's "0 = the window size"
            value = block.settings.get("size", 2)
        if setting.name in _COUNTED and isinstance(value, int):
            parts.append(plural(value, _COUNTED[setting.name]))
            continue
        form = _DETAIL_FORMS.get(setting.name)
        if form is None or (setting.kind == "bool" and not value):
            continue
        parts.append(form.format(_short(value)))
    return ", ".join(parts[:3])


def input_port_count(block: Block, graph: GraphSpec) -> int:
    """How many input ports to draw: a merge shows its wired ports plus one spare (at least two)."""
    cls = layer_registry.REGISTRY.get(block.type)
    if cls is None:
        return 1
    if cls.n_inputs is not None:
        return cls.n_inputs
    used = [w.port for w in graph.wires if w.dst == block.id]
    return max(2, (max(used) + 2) if used else 2)


def canvas_blocks(graph: GraphSpec, positions: dict[str, tuple[float, float]]) -> list[dict]:
    """The graph's blocks as the canvas takes them."""
    out = []
    for block in graph.blocks:
        cls = layer_registry.REGISTRY.get(block.type)
        x, y = positions.get(block.id, (0.0, 0.0))
        out.append({"id": block.id, "type": block.type, "category": cls.category if cls else "",
                    "detail": block_detail(block), "inputs": input_port_count(block, graph),
                    "port_names": list(cls.port_names) if cls else [],
                    "has_output": cls is None or cls.category != "Output", "x": x, "y": y})
    return out


def canvas_wires(graph: GraphSpec) -> list[tuple[str, str, int]]:
    return [(w.src, w.dst, w.port) for w in graph.wires]


def shape_text(shape: tuple[int, ...] | None, time_distributed: bool = False) -> str:
    """``(8, 6, 6)`` -> ``'8x6x6'`` with what it is (image, sequence, ...)."""
    if shape is None:
        return ""
    from gatescope.compute.layers.base import describe_shape
    text = describe_shape(tuple(shape))
    return text + (" (per step)" if time_distributed else "")


def params_text(count: int) -> str:
    return "no parameters" if count == 0 else plural(count, "parameter")


def block_status(analysis: Analysis) -> dict[str, dict]:
    """Per-block results as the canvas and inspector show them."""
    out = {}
    for bid, info in analysis.info.items():
        ok = not info.error
        out[bid] = {"shape": shape_text(info.out_shape, info.time_distributed) if ok else "",
                    "params": params_text(info.param_count) if info.out_shape is not None and ok else "",
                    "formula": info.param_formula if ok else "",
                    "size_formula": info.size_formula if ok else "",
                    "error": info.error, "warning": info.warning}
    return out


def block_name(graph: GraphSpec, block_id: str) -> str:
    """A block as the canvas shows it: its type and its id ("LSTM b1")."""
    try:
        return f"{graph.block(block_id).type} {block_id}"
    except KeyError:
        return block_id


def problems(analysis: Analysis, graph: GraphSpec) -> list[str]:
    """Every problem of the graph, one sentence each, a block's named as the canvas shows it
    ("LSTM b1: is part of a cycle; ...")."""
    return list(analysis.graph_errors) + [f"{block_name(graph, bid)}: {info.error}"
                                          for bid, info in analysis.info.items() if info.error]


def first_problem(analysis: Analysis, graph: GraphSpec) -> str | None:
    found = problems(analysis, graph)
    return found[0] if found else None


def model_summary(analysis: Analysis, graph: GraphSpec) -> str:
    """One paragraph for the inspector when no block is selected."""
    if not analysis.info:
        return "The model is empty. Drag an Input block from the palette to start."
    lines = [f"{plural(len(analysis.info), 'block')}, {plural(analysis.total_params, 'parameter')}."]
    found = problems(analysis, graph)
    if found:
        lines.append(f"{plural(len(found), 'problem')}: " + found[0])
    else:
        lines.append("The model is complete and can be trained.")
    lines.append("Select a block to see and change its settings.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------- training
def training_fields() -> list[dict]:
    """Form fields of the training settings a person usually changes."""
    return [
        {"name": "epochs", "kind": "int", "label": "Epochs", "minimum": 1, "maximum": WHOLE_RANGES["epochs"][1],
         "help": "Passes over the training data each time Train is pressed; a trained model goes on from where it is."},
        {"name": "batch_size", "kind": "int", "label": "Batch size", "minimum": 1,
         "maximum": WHOLE_RANGES["batch_size"][1],
         "help": "Samples per step."},
        {"name": "optimizer", "kind": "choice", "label": "Optimizer", "choices": list(OPTIMIZERS),
         "help": "sgd (with momentum), adam or adamw."},
        {"name": "learning_rate", "kind": "float", "label": "Learning rate", "minimum": 1e-9, "maximum": 10.0,
         "help": "Step size of the optimizer."},
        {"name": "schedule", "kind": "choice", "label": "Schedule", "choices": list(SCHEDULES),
         "help": "How the learning rate changes over epochs: constant, step (x gamma every few epochs) or cosine."},
        {"name": "clip_norm", "kind": "float", "label": "Gradient clipping", "minimum": 0.0, "maximum": 1e6,
         "help": "Global-norm clipping threshold; 0 turns it off. Try 1 to 5 for recurrent models."},
        {"name": "weight_decay", "kind": "float", "label": "Weight decay", "minimum": 0.0, "maximum": 1.0,
         "help": "L2 penalty on the weights (decoupled for adamw)."},
        {"name": "val_fraction", "kind": "float", "label": "Validation share", "minimum": 0.0, "maximum": 0.89,
         "help": "Share of the samples kept aside to check the model each epoch."},
        {"name": "early_stopping", "kind": "int", "label": "Early stopping", "minimum": 0, "maximum": WHOLE_RANGES["early_stopping"][1],
         "help": "Stop after this many epochs without a better validation loss; 0 turns it off."},
        {"name": "seed", "kind": "int", "label": "Seed", "minimum": 0, "maximum": WHOLE_RANGES["seed"][1],
         "help": "Fixes the initial weights and the shuffling: the same seed gives the same run."},
        {"name": "device", "kind": "choice", "label": "Device", "choices": ["auto", "cpu", "gpu"],
         "help": "auto uses the GPU when CuPy finds one, else the CPU."},
    ] + augmentation_fields()


def augmentation_fields() -> list[dict]:
    """The augmentation settings (``compute.augment``): training images and clips only."""
    limits = AUGMENT_LIMITS
    return [
        {"name": "augment_shift", "kind": "float", "label": "Augment: shift", "minimum": 0.0,
         "maximum": limits["augment_shift"],
         "help": "Images and clips: move each training sample up to this share of its height and width; 0 is off."},
        {"name": "augment_scale", "kind": "float", "label": "Augment: zoom", "minimum": 0.0,
         "maximum": limits["augment_scale"],
         "help": "Zoom each training sample by 1 - s to 1 + s (0.5: half to one and a half times); "
                 "zooming out also slows what moves in a clip. 0 is off."},
        {"name": "augment_flip", "kind": "bool", "label": "Augment: mirror",
         "help": "Mirror half the training samples left to right. Only where a mirrored sample keeps its label: "
                 "not for left against right."},
        {"name": "augment_brightness", "kind": "float", "label": "Augment: brightness", "minimum": 0.0,
         "maximum": limits["augment_brightness"],
         "help": "Change brightness and contrast by up to this share of each sample's range; 0 is off."},
        {"name": "augment_noise", "kind": "float", "label": "Augment: noise", "minimum": 0.0,
         "maximum": limits["augment_noise"],
         "help": "Add noise of this share of each sample's range; 0 is off."},
        {"name": "augment_speed", "kind": "float", "label": "Augment: speed", "minimum": 0.0,
         "maximum": limits["augment_speed"],
         "help": "Clips: play each training clip at a speed from 1 - s to 1, from a random start; 0 is off."},
    ]


# ----------------------------------------------------------------------------- data
def dataset_sources() -> list[dict]:
    """Bundled datasets with their parameters (name -> default) for the data panel."""
    out = []
    for name in builtin_names():
        if name in OWN_DATA_SOURCES:
            continue
        builder, description = BUILTINS[name]
        params = {p.name: p.default for p in inspect.signature(builder).parameters.values()
                  if p.default is not inspect.Parameter.empty}
        out.append({"name": name, "description": description, "params": params,
                    "choices": DATASET_CHOICES.get(name, {})})
    return out


def dataset_view(dataset: Dataset, n_train: int, n_val: int, n_test: int, n_samples: int = 12
                 ) -> tuple[dict, list[np.ndarray], list[str]]:
    """``(summary, samples, labels)`` for the data panel: host copies only."""
    shape = dataset.sample_shape
    from gatescope.compute.layers.base import describe_shape
    lines = [f"{plural(len(dataset.x), 'sample')}, each {article(describe_shape(shape))}",
             f"Task: {dataset.task}" + (f", {plural(dataset.n_classes, 'class', 'classes')}"
                                        if dataset.task == "classification" else ""),
             f"Split: {n_train:,} train, {n_val:,} validation, {n_test:,} test"]
    if dataset.description:
        lines.append(dataset.description)
    summary: dict[str, Any] = {"title": dataset.name, "lines": lines, "kind": "image",
                               "warnings": list(dataset.meta.get("warnings", []))}
    if dataset.task == "classification":
        summary["class_counts"] = [int(c) for c in dataset.class_counts()]
        summary["class_names"] = list(dataset.class_names)
    picks = np.linspace(0, len(dataset.x) - 1, min(n_samples, len(dataset.x))).astype(int)
    samples, labels = [], []
    for i in picks:
        x = np.asarray(dataset.x[i], dtype=np.float32)
        if x.ndim == 3:
            image = x[0] if x.shape[0] == 1 else x.mean(axis=0)  # colour images shown as grey
        elif x.ndim == 4:
            image = x[0].mean(axis=0)
        elif x.ndim == 2:
            image = x
            summary["kind"] = "sequence" if x.shape[1] <= 4 else "image"
        else:
            side = int(np.ceil(np.sqrt(x.size)))
            image = np.pad(x.reshape(-1), (0, side * side - x.size)).reshape(side, side)
        samples.append(np.array(image, copy=True))
        y = dataset.y[i]
        if dataset.task == "classification" and np.ndim(y) == 0:
            labels.append(dataset.class_names[int(y)] if int(y) < len(dataset.class_names) else str(int(y)))
        else:
            labels.append("")
    return summary, samples, labels


def gallery_view(dataset: Dataset, indices: np.ndarray) -> tuple[str, list, list[str]]:
    """``(kind, samples, captions)`` of ``dataset.x[indices]`` as the samples panel draws them
    (``widgets.sample_gallery``): characters and word ids (a dataset listing ``meta["words"]``)
    as text, other sequences as lines, images as grey or colour tiles, clips as frames."""
    samples, captions = [], []
    kind = "sequence"
    words = dataset.meta.get("words") or []
    for i in indices:
        x = np.asarray(dataset.x[int(i)], dtype=np.float32)
        captions.append(f"#{int(i)}")
        if x.ndim == 1 and words:
            kind = "text"
            samples.append(" ".join(words[int(k)] if 0 <= k < len(words) else "?" for k in x))
        elif x.ndim == 2 and dataset.vocab and x.shape[1] == len(dataset.vocab):
            kind = "text"
            samples.append("".join(dataset.vocab[int(k)] if row.any() else "" for k, row in zip(x.argmax(1), x)))
        elif x.ndim == 3:
            kind = "image"
            samples.append(np.moveaxis(x, 0, -1) if x.shape[0] == 3 else (x[0] if x.shape[0] == 1 else x.mean(0)))
        elif x.ndim == 4:
            kind = "clip"
            samples.append(np.moveaxis(x, 1, -1) if x.shape[1] == 3 else (x[:, 0] if x.shape[1] == 1 else x.mean(1)))
        else:
            samples.append(x.reshape(len(x), -1) if x.ndim == 2 else x.reshape(-1, 1))
    return kind, samples, captions


def cell_samples(targets: np.ndarray, predictions: np.ndarray, true_class: int, predicted_class: int
                 ) -> np.ndarray:
    """Positions (in the validation split) of the samples whose true class is ``true_class`` and
    predicted class ``predicted_class``; for per-step targets, the samples with such a step."""
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    hit = (targets == true_class) & (predictions == predicted_class)
    if hit.ndim > 1:
        hit = hit.reshape(len(hit), -1).any(axis=1)
    return np.flatnonzero(hit)
