"""Every block type, registered by its ``type_name`` (the name project files use).

To add a block: write a ``Layer`` subclass in a module here, decorate it with ``@register``,
and add the module to ``_MODULES`` below. The palette, the inspector, project files and the
command line pick it up from the registry. Then give it: a float64 finite-difference gradient
check and a closed-form or NumPy reference for its forward (``tests/compute``, with
``tests/gradcheck.py``); shape errors in words (``ShapeError``, ``describe_shape``); an ONNX
emitter in ``studio/export_onnx.EMITTERS`` with a case in ``tests/studio/test_export_onnx.py``
and a row in ``docs/onnx.md``; and, if it has parameters, their names and shapes in its
docstring (the weights file's keys, ``docs/file-format.md``).
"""
from __future__ import annotations

import importlib

from gatescope.compute.layers.base import Layer, Setting, SettingsError, ShapeError, describe_shape

REGISTRY: dict[str, type[Layer]] = {}

CATEGORIES = ("Input", "Convolution", "Pooling", "Dense", "Recurrent", "Merge", "Output")


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make ``cls`` available under ``cls.type_name``."""
    if not cls.type_name or cls.category not in CATEGORIES:
        raise TypeError(f"{cls.__name__} needs a type_name and a category from {CATEGORIES}")
    if cls.type_name in REGISTRY and REGISTRY[cls.type_name] is not cls:
        raise TypeError(f"block type {cls.type_name} registered twice")
    REGISTRY[cls.type_name] = cls
    return cls


def create(type_name: str, settings: dict | None = None) -> Layer:
    """A new layer of ``type_name``; KeyError-free: unknown names raise SettingsError."""
    cls = REGISTRY.get(type_name)
    if cls is None:
        raise SettingsError(f"unknown block type {type_name!r}")
    return cls(**(settings or {}))


_MODULES = (
    "core",
    "embedding",
    "activations",
    "heads",
    "recurrent",
    "conv",
    "pooling",
    "normalization",
    "merge",
)
for _name in _MODULES:
    importlib.import_module(f"gatescope.compute.layers.{_name}")

__all__ = ["Layer", "Setting", "SettingsError", "ShapeError", "REGISTRY", "CATEGORIES",
           "register", "create", "describe_shape"]
