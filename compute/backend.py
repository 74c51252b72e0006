"""Chooses the array module: CuPy on an NVIDIA GPU when one answers, NumPy otherwise.

CuPy is imported inside ``try/except Exception`` and the error is remembered; it is raised
only when GPU work is asked for (Chainer's ``backends/cuda.py`` habit). Ops take
``xp = get_array_module(x)`` and write one array code path for both.

``GATESCOPE_DEVICE`` = ``auto`` (default) | ``cpu`` | ``gpu`` chooses; ``--device`` on the
command line overrides it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")

try:  # CuPy is optional: the gpu extra.
    import cupy  # type: ignore[import-not-found]

    _cupy_import_error: Exception | None = None
except Exception as exc:  # noqa: BLE001 - any failure means "no GPU path", remembered for later
    cupy = None
    _cupy_import_error = exc


class DeviceError(RuntimeError):
    """The device a person asked for cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Device:
    """The device training runs on: ``name`` is ``cpu`` or ``gpu``, ``xp`` its array module."""

    name: str
    xp: object
    reason: str
    description: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"


def gpu_unavailable_reason() -> str | None:
    """Why the GPU cannot be used here, or None when it can."""
    if cupy is None:
        return ("CuPy is not installed (install the gpu extra: pip install 'gatescope[gpu]'); "
                f"import said: {_cupy_import_error}")
    try:
        if not cupy.is_available():
            return "CuPy is installed but no CUDA device answers (no NVIDIA GPU, or no driver)"
        cupy.zeros(1, dtype=numpy.float32) + 1  # a first allocation and launch must succeed
    except Exception as exc:  # noqa: BLE001 - driver too old, out of memory, ...
        return f"the CUDA device did not accept a first allocation ({exc}); the driver may be too old"
    return None


_announced: set[str] = set()


def select_device(requested: str | None = None) -> Device:
    """Resolve ``requested`` (or ``GATESCOPE_DEVICE``, default ``auto``) to a Device.

    ``gpu`` where there is none raises DeviceError naming the cause; ``auto`` falls back to the
    CPU and says so once in the log.
    """
    choice = (requested or os.environ.get("GATESCOPE_DEVICE") or "auto").strip().lower()
    if choice not in DEVICES:
        raise DeviceError(f"unknown device {choice!r}: choose one of auto, cpu, gpu")
    if choice == "cpu":
        return Device("cpu", numpy, "asked for the CPU", _cpu_description())
    reason = gpu_unavailable_reason()
    if reason is None:
        name = _gpu_description()
        device = Device("gpu", cupy, f"CuPy found {name}", name)
    elif choice == "gpu":
        raise DeviceError(f"the GPU was asked for but cannot be used: {reason}")
    else:
        device = Device("cpu", numpy, f"no GPU: {reason}", _cpu_description())
    key = f"{choice}:{device.name}"
    if key not in _announced:
        _announced.add(key)
        log.info("GateScope computes on the %s (%s)", device.name.upper(), device.reason)
    return device


def _cpu_description() -> str:
    return f"CPU ({os.cpu_count()} cores, NumPy {numpy.__version__})"


def _gpu_description() -> str:
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return f"GPU {name} (CuPy {cupy.__version__})"
    except Exception:  # noqa: BLE001 - a description must never fail
        return "GPU (CuPy)"


def get_array_module(*arrays):
    """``cupy`` if any of ``arrays`` lives on the GPU, else ``numpy``."""
    if cupy is not None:
        return cupy.get_array_module(*arrays)
    return numpy


def to_numpy(array):
    """A host NumPy copy of ``array`` (a no-op for NumPy arrays)."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return numpy.asarray(array)
