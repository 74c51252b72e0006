"""A new project from a dataset: what the data holds, and a model and training settings that fit it.

Qt-free: ``gatescope new`` and File > New from Data… both build projects here.

``data_kind(shape)`` names what a sample is (vector, sequence, image, clip); ``describe(dataset)``
says what was found in lines a person reads (samples, shape, task, classes and their counts,
the loader's warnings); ``TEMPLATES`` holds the models, each for the kinds of data it takes;
``new_project(dataset, ref, template, ...)`` returns the project, its Input shaped as the data,
its last Dense as wide as the classes (or targets), its Classify block naming the classes.

Every template standardises its input the way a careful practitioner does before anything
else: vectors and sequences go through a BatchNorm first (per feature; the running mean and
variance then stand in for the training set's at prediction time), so features measured in
thousands and features measured in thousandths learn at the same pace. Images and clips are
read as 0..1 pixels and need no more.

Training settings follow the data's size: Adam, a batch of 32 (16 below 400 training samples,
64 above 20,000), about 1,500 steps in all (8 to 40 epochs) on a cosine schedule, gradient
clipping at 5 for the recurrent templates, early stopping after 6 epochs without a better
validation loss (the best weights are kept), 15% validation and 15% test. (On the digits the
conv template reached 98.2% test accuracy after 36 epochs with a patience of 10; the epochs
after the best one only cost time.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gatescope.compute.datasets import Dataset
from gatescope.compute.graph import GraphSpec
from gatescope.compute.layers.base import describe_shape
from gatescope.compute.train import TrainSettings
from gatescope.studio.layout import layered_positions
from gatescope.studio.project import Project
from gatescope.studio.wording import article, plural

KINDS = {1: "vector", 2: "sequence", 3: "image", 4: "clip"}
STEPS_TARGET = 1500
EPOCH_RANGE = (8, 40)
PATIENCE = 6


class TemplateError(ValueError):
    """A template that does not fit the data; the message names the templates that do."""


def data_kind(sample_shape: tuple[int, ...]) -> str:
    """``vector`` (F,), ``sequence`` (T, F), ``image`` (C, H, W) or ``clip`` (T, C, H, W)."""
    return KINDS.get(len(sample_shape), f"rank-{len(sample_shape)} array")


Blocks = list[tuple[str, dict]]


@dataclass(frozen=True)
class Template:
    """``body(shape, per_step)`` gives the blocks between the Input and the last Dense."""

    name: str
    summary: str
    kinds: tuple[str, ...]
    body: Callable[[tuple[int, ...], bool], Blocks]
    recurrent: bool = False
    per_step: bool = False          # can predict one label per time step


def _mlp(shape, per_step) -> Blocks:
    first = [("BatchNorm", {})] if len(shape) in (1, 2) else []
    flat = [] if len(shape) == 1 else [("Flatten", {})]
    return first + flat + [("Dense", {"units": 128}), ("ReLU", {}), ("Dropout", {"rate": 0.1}),
                           ("Dense", {"units": 64}), ("ReLU", {})]


def _as_sequence(shape) -> Blocks:
    """Standardised vectors read as sequences of one feature; sequences standardised per feature."""
    if len(shape) == 1:
        return [("BatchNorm", {}), ("Reshape", {"shape": [shape[0], 1]})]
    return [("BatchNorm", {})]


def _cnn1d(shape, per_step) -> Blocks:
    """Two convolutions along the steps. A vector's positions are different features, so where
    each pattern was found matters: its maps are flattened into a dense layer. A sequence's
    steps are alike: its maps are averaged over time. (On the digits as vectors the averaged
    form reached 79% test accuracy, the flattened one is in docs/own-data.md.)"""
    steps = shape[0]
    pool = [("MaxPool1D", {"size": 2})] if steps >= 8 and not per_step else []
    if per_step:
        end = []
    elif len(shape) == 1:
        end = [("Flatten", {}), ("Dense", {"units": 64}), ("ReLU", {})]
    else:
        end = [("GlobalAvgPool", {})]
    return _as_sequence(shape) + [
        ("Conv1D", {"filters": 32, "kernel_size": 3, "padding": "same"}), ("ReLU", {}), *pool,
        ("Conv1D", {"filters": 64, "kernel_size": 3, "padding": "same"}), ("ReLU", {}), *end]


def _recurrent(kind: str) -> Callable[[tuple[int, ...], bool], Blocks]:
    def body(shape, per_step) -> Blocks:
        return _as_sequence(shape) + [(kind, {"hidden_size": 64, "return_sequences": per_step})]
    return body


def _pools(height: int, width: int, most: int) -> int:
    """How many 2x2 max-pools keep both sides at 4 pixels or more (at most ``most``)."""
    count = 0
    while count < most and min(height, width) >= 8:
        height, width, count = height // 2, width // 2, count + 1
    return count


def _conv_stack(height: int, width: int, filters: tuple[int, ...]) -> tuple[Blocks, int, int]:
    blocks: Blocks = []
    for i, f in enumerate(filters):
        blocks += [("Conv2D", {"filters": f, "kernel_size": 3, "padding": "same"}), ("ReLU", {})]
        if _pools(height, width, 1):
            blocks.append(("MaxPool2D", {"size": 2}))
            height, width = height // 2, width // 2
    return blocks, height, width


def _cnn(shape, per_step) -> Blocks:
    _, height, width = shape
    convs, h, w = _conv_stack(height, width, (16, 32, 64) if min(height, width) >= 32 else (16, 32))
    channels = next(s["filters"] for t, s in reversed(convs) if t == "Conv2D")
    flat = [("Flatten", {})] if channels * h * w <= 4096 else [("GlobalAvgPool", {})]
    return convs + flat + [("Dense", {"units": 64}), ("ReLU", {})]


def _cnn_lstm(shape, per_step) -> Blocks:
    _, _, height, width = shape
    convs, h, w = _conv_stack(height, width, (8, 16))
    channels = 16
    flat = [("Flatten", {})] if channels * h * w <= 1024 else [("GlobalAvgPool", {})]
    return convs + flat + [("LSTM", {"hidden_size": 32, "return_sequences": per_step})]


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("mlp", "dense layers on standardised features (vectors; sequences and images flattened)",
             ("vector", "sequence", "image"), _mlp),
    Template("cnn1d", "1-D convolutions along a sequence (a vector is read as a sequence of one feature)",
             ("vector", "sequence"), _cnn1d, per_step=True),
    Template("gru", "a GRU reads the sequence step by step (a vector as a sequence of one feature)",
             ("vector", "sequence"), _recurrent("GRU"), recurrent=True, per_step=True),
    Template("lstm", "an LSTM reads the sequence step by step (a vector as a sequence of one feature)",
             ("vector", "sequence"), _recurrent("LSTM"), recurrent=True, per_step=True),
    Template("cnn", "convolutions, ReLU and max-pooling on images, then a dense head",
             ("image",), _cnn),
    Template("cnn-lstm", "the same small CNN on every frame of a clip, its features read in order by an LSTM",
             ("clip",), _cnn_lstm, recurrent=True, per_step=True),
)}
DEFAULTS = {"vector": "mlp", "sequence": "lstm", "image": "cnn", "clip": "cnn-lstm"}


def templates_for(kind: str) -> list[str]:
    return [name for name, t in TEMPLATES.items() if kind in t.kinds]


def list_templates() -> list[str]:
    """One line per template: its name, what it is, which data it takes."""
    width = max(len(name) for name in TEMPLATES)
    return [f"{name:<{width}}  {t.summary} [{', '.join(t.kinds)}]" for name, t in TEMPLATES.items()]


def _per_step(dataset: Dataset) -> bool:
    """True when the labels (or targets) are one per time step of a sequence or clip: y is
    (N, T) for classes, (N, T) or (N, T, D) for numbers."""
    if len(dataset.sample_shape) not in (2, 4):
        return False
    extra = dataset.y.shape[1:]
    return len(extra) >= 1 and extra[0] == dataset.sample_shape[0] and \
        (dataset.task == "regression" or len(extra) == 1)


def choose(dataset: Dataset, name: str | None = None) -> Template:
    """The template ``name`` (default: the one for this kind of data); TemplateError when it
    does not fit, naming those that do."""
    kind = data_kind(dataset.sample_shape)
    fitting = templates_for(kind)
    if not fitting:
        raise TemplateError(f"no template takes samples of shape {dataset.sample_shape}; build the model "
                            "in the Build view")
    if name is None:
        name = DEFAULTS[kind]
    if name not in TEMPLATES:
        raise TemplateError(f"there is no template {name!r}; choose one of {', '.join(TEMPLATES)}")
    template = TEMPLATES[name]
    if kind not in template.kinds:
        raise TemplateError(f"the {name} template takes {' or '.join(t + 's' for t in template.kinds)}, but these "
                            f"samples are {kind}s ({describe_shape(dataset.sample_shape)}); for {kind}s choose "
                            f"{', '.join(fitting)}")
    if _per_step(dataset) and not template.per_step:
        per_step = [n for n in fitting if TEMPLATES[n].per_step]
        raise TemplateError(f"the labels are one per time step, which the {name} template cannot give; "
                            f"choose {', '.join(per_step)}")
    return template


def describe(dataset: Dataset) -> list[str]:
    """What was found, in lines: samples and their shape, the task, the classes and their counts
    (or the targets' range), a test part, the loader's warnings."""
    lines = [f"{plural(len(dataset.x), 'sample')}, each {article(describe_shape(dataset.sample_shape))}"]
    if dataset.x_test is not None:
        lines.append(f"a separate test part of {plural(len(dataset.x_test), 'sample')}")
    if dataset.task == "classification":
        counts = dataset.class_counts()
        pairs = ", ".join(f"{name} {int(c)}" for name, c in zip(dataset.class_names, counts))
        per = " per time step" if _per_step(dataset) else ""
        lines.append(f"classification, {plural(dataset.n_classes, 'class', 'classes')}{per}: {pairs}")
    else:
        target = dataset.y.shape[1:]
        what = "one number" if not target or int(math.prod(target)) == 1 else f"targets of shape {target}"
        lines.append(f"regression: {what} per sample, from {float(dataset.y.min()):.4g} "
                     f"to {float(dataset.y.max()):.4g}")
    lines += [f"note: {w}" for w in dataset.meta.get("warnings", [])]
    return lines


def training_settings(dataset: Dataset, template: Template, epochs: int | None = None,
                      batch_size: int | None = None, learning_rate: float | None = None) -> TrainSettings:
    """Settings that suit the data's size (see the module docstring); the given values win."""
    has_test = dataset.x_test is not None
    n_train = int(len(dataset.x) * (0.85 if has_test else 0.7))
    batch = batch_size or (16 if n_train < 400 else 64 if n_train > 20000 else 32)
    steps = max(1, n_train // batch)
    chosen = epochs or int(min(max(math.ceil(STEPS_TARGET / steps), EPOCH_RANGE[0]), EPOCH_RANGE[1]))
    return TrainSettings(epochs=chosen, batch_size=batch, optimizer="adam",
                         learning_rate=learning_rate or 1e-3, schedule="cosine",
                         clip_norm=5.0 if template.recurrent else 0.0, early_stopping=PATIENCE,
                         val_fraction=0.15, test_fraction=0.0 if has_test else 0.15, seed=0)


def build_graph(dataset: Dataset, template: Template) -> GraphSpec:
    """Input shaped as the samples -> the template's body -> Dense (classes or targets) -> head."""
    shape = tuple(dataset.sample_shape)
    per_step = _per_step(dataset)
    if dataset.task == "classification":
        names = [n.replace(",", " ") for n in dataset.class_names]
        outputs, head = dataset.n_classes, ("Classify", {"class_names": ",".join(names)})
    else:
        target = dataset.y.shape[2:] if per_step else dataset.y.shape[1:]
        outputs, head = int(math.prod(target)) if target else 1, ("Regress", {})
    settings = {"shape": list(shape)}
    if len(shape) == 4:
        settings.update(normalize="unit", clip_stride=1)
    return GraphSpec.chain(("Input", settings), *template.body(shape, per_step), ("Dense", {"units": outputs}), head)


def new_project(dataset: Dataset, ref: dict, template: str | None = None, name: str = "untitled",
                epochs: int | None = None, batch_size: int | None = None,
                learning_rate: float | None = None) -> Project:
    """A project for ``dataset`` (read through the reference ``ref``) with ``template`` (default:
    the one for the data's kind); TemplateError when the template does not fit."""
    chosen = choose(dataset, template)
    graph = build_graph(dataset, chosen)
    source = Path(str(ref.get("path", ""))).name or dataset.name
    return Project(name=name, graph=graph, positions=layered_positions(graph, {}),
                   training=training_settings(dataset, chosen, epochs, batch_size, learning_rate),
                   dataset=dict(ref),
                   description=f"Made from {source} with the {chosen.name} template: {chosen.summary}. "
                               + " ".join(describe(dataset)[:3]))
