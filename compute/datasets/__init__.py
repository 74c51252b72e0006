"""Datasets: the container every source produces, and the registry of bundled and generated ones.

A dataset is arrays, never code: ``x`` batch-first as the model's Input block expects, ``y``
integer labels (classification; one per sample, or one per step for sequence targets) or
float targets (regression). Sources register a builder under a name; a project refers to a
dataset by ``{"kind": "builtin", "name": ..., "params": {...}}`` or
``{"kind": "file", "path": ..., "format": ...}``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class DataError(ValueError):
    """Data that cannot be used; the message names the problem and what to do."""


@dataclass
class Dataset:
    """Arrays and what they mean.

    ``x``: float32 samples, batch first. ``y``: int64 labels or float32 targets.
    ``task``: ``classification`` or ``regression``. ``class_names``: label -> name.
    ``x_test``/``y_test``: a fixed test set when the source has one (else split from x, y).
    ``vocab``: characters of a text dataset (one-hot index -> character), for generation.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: str = "classification"
    class_names: list[str] = field(default_factory=list)
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    vocab: list[str] = field(default_factory=list)
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        validate_arrays(self.x, self.y, self.task, self.name)
        if self.x_test is not None:
            validate_arrays(self.x_test, self.y_test, self.task, self.name + " (test part)")
            if self.x_test.shape[1:] != self.x.shape[1:]:
                raise DataError(f"{self.name}: test samples have shape {self.x_test.shape[1:]} but "
                                f"training samples {self.x.shape[1:]}; they must match")
        if self.task == "classification" and not self.class_names:
            self.class_names = [str(i) for i in range(self.n_classes)]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def n_classes(self) -> int:
        if self.task != "classification":
            return 0
        ys = [self.y] + ([self.y_test] if self.y_test is not None else [])
        return int(max(int(a.max()) for a in ys if a.size) + 1)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y.reshape(-1), minlength=self.n_classes)


def validate_arrays(x: np.ndarray, y: np.ndarray, task: str, name: str) -> None:
    """DataError naming the first problem: lengths, non-finite values, bad labels."""
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(f"{name}: x and y must be arrays")
    if x.ndim < 2:
        raise DataError(f"{name}: x must hold samples along its first axis, with at least one "
                        f"value each; it has shape {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{name}: x has {len(x)} samples but y has {len(y)} labels; they must agree")
    if len(x) == 0:
        raise DataError(f"{name}: there are no samples")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{name}: x must be numbers, not {x.dtype}")
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
        raise DataError(f"{name}: x holds NaN or Inf values (first in sample {bad}); clean or drop them")
    if task == "classification":
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all() or \
                    not np.array_equal(y, np.round(y)):
                raise DataError(f"{name}: class labels must be whole numbers 0, 1, 2, ...; y holds {y.dtype} values")
        if y.size and y.min() < 0:
            raise DataError(f"{name}: class labels must be 0 or more; found {int(y.min())}")
    else:
        if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
            raise DataError(f"{name}: regression targets must be finite numbers")


@dataclass
class Split:
    """Index arrays into a dataset's x: train, validation, test (test may come from x_test)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """A seeded shuffle of ``range(n)`` cut into train / validation / test."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise DataError(f"{n} samples are too few for a {val_fraction:.0%} validation and "
                        f"{test_fraction:.0%} test split")
    return Split(order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test])


# ----------------------------------------------------------------------------- registry
Builder = Callable[..., Dataset]
BUILTINS: dict[str, tuple[Builder, str]] = {}


def register_builtin(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(**params) -> Dataset`` is available as builtin ``name``."""
    def deco(fn: Builder) -> Builder:
        BUILTINS[name] = (fn, description)
        return fn
    return deco


def load(ref: dict[str, Any]) -> Dataset:
    """The dataset a project's reference names; DataError if it cannot be had.

    ``params`` must be an object of named settings; each source checks their values and
    bounds (``checks``), so a file can never ask for more than GateScope holds.
    """
    _load_sources()
    if not isinstance(ref, dict):
        raise DataError(f"a dataset reference must be an object, not {ref!r}")
    kind = ref.get("kind")
    params = ref.get("params", {})
    params = {} if params is None else params
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise DataError(f"the dataset's params must be an object of named settings, not {params!r}")
    if kind == "builtin":
        name = ref.get("name")
        if not isinstance(name, str) or name not in BUILTINS:
            raise DataError(f"unknown bundled dataset {name!r}; choose one of {', '.join(sorted(BUILTINS))}")
        try:
            return BUILTINS[name][0](**params)
        except TypeError as exc:
            raise DataError(f"dataset {name}: bad parameters ({exc})") from None
    if kind == "file":
        from gatescope.compute.datasets import files
        fmt = ref.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise DataError(f"the data file's format must be a name such as 'csv', not {fmt!r}")
        return files.load_file(ref.get("path", ""), fmt, **params)
    raise DataError(f"a dataset reference must have kind 'builtin' or 'file', not {kind!r}")


_SOURCE_MODULES = ("digits", "files", "video", "sequences")


def _load_sources() -> None:
    for mod in _SOURCE_MODULES:
        importlib.import_module(f"gatescope.compute.datasets.{mod}")


def builtin_names() -> list[str]:
    _load_sources()
    return sorted(BUILTINS)
