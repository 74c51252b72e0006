"""Optimizers (SGD with momentum and Nesterov, Adam, AdamW), learning-rate schedules and
global-norm gradient clipping.

An optimizer updates a model's trainable parameters in place from their gradients. Its state
(momentum buffers, Adam moments, the step count) round-trips through ``state_dict`` so that a
saved and reopened project resumes exactly where it stopped.

Each parameter's update is one call of the kernel contract (``compute.kernels.sgd_update``,
``adam_update``), in place: a fused CUDA kernel on a GPU, one numba pass on the CPU, the NumPy
twin for float64 parameters or without numba.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module, to_numpy

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def learning_rate(base: float, schedule: str, epoch: int, total_epochs: int,
                  step_epochs: int = 10, gamma: float = 0.1) -> float:
    """The learning rate for 0-based ``epoch``.

    constant: ``base``. step: ``base * gamma ** (epoch // step_epochs)``. cosine:
    ``base * (1 + cos(pi * epoch / total_epochs)) / 2``, annealed over the planned epochs.
    """
    if schedule == "constant":
        return base
    if schedule == "step":
        return base * gamma ** (epoch // max(1, step_epochs))
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(epoch, total_epochs) / max(1, total_epochs)))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def global_norm(grads: list[Any]) -> float:
    """``sqrt(sum of squares)`` over every gradient array (one host sync)."""
    if not grads:
        return 0.0
    xp = get_array_module(grads[0])
    return float(xp.sqrt(sum((g * g).sum() for g in grads)))


def clip_by_global_norm(grads: list[Any], max_norm: float, norm: float) -> None:
    """Scale every gradient in place by ``max_norm / norm`` when ``norm`` exceeds ``max_norm``."""
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale


class Optimizer:
    """Base: holds per-parameter slots by parameter name and the step count."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: list[tuple[str, Any, Any]], weight_decay: float = 0.0):
        self.params = params
        self.weight_decay = weight_decay
        self.step_count = 0
        self.state: dict[str, dict[str, Any]] = {
            name: {slot: get_array_module(p).zeros_like(p) for slot in self.slots} for name, p, _ in params}

    def step(self, lr: float) -> None:
        """One update of every parameter with learning rate ``lr``."""
        self.step_count += 1
        for name, p, g in self.params:
            self.update(p, g, self.state[name], lr)

    def update(self, p, g, state: dict[str, Any], lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host arrays: ``name/slot`` for every slot, and ``step_count``."""
        out = {f"{name}/{slot}": to_numpy(a).copy() for name, slots in self.state.items() for slot, a in slots.items()}
        out["step_count"] = np.array(self.step_count, dtype=np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``state_dict()``; ValueError naming a missing, misshapen or unusable slot."""
        check_state(state)
        for name, slots in self.state.items():
            for slot, a in slots.items():
                key = f"{name}/{slot}"
                if key not in state or tuple(state[key].shape) != tuple(a.shape):
                    raise ValueError(f"the saved optimizer state lacks {key} or has the wrong shape")
                a[...] = get_array_module(a).asarray(state[key], dtype=a.dtype)
        self.step_count = int(state.get("step_count", 0))


def check_state(state: dict[str, np.ndarray]) -> None:
    """ValueError naming the first array of a saved optimizer state that cannot be resumed from:
    a ``step_count`` that is not one whole number from 0 to 2^53, or slot values (momentum
    buffers, Adam moments) that are not finite floats."""
    for key, value in state.items():
        value = np.asarray(value)
        if key == "step_count":
            if value.shape != () or value.dtype.kind not in "iu" or not 0 <= int(value) <= 2**53:
                shown = repr(value.item()) if value.shape == () else f"an array of shape {value.shape}"
                raise ValueError(f"the saved optimizer step_count must be one whole number 0 or more, not {shown}")
        elif value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ValueError(f"the saved optimizer state {key} holds non-finite or non-float values")


class SGD(Optimizer):
    """``v = momentum v + g``; ``p -= lr v`` (Nesterov: ``p -= lr (g + momentum v)``).
    Weight decay adds ``weight_decay * p`` to the gradient (L2)."""

    slots = ("velocity",)

    def __init__(self, params, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, p, g, state, lr):
        kernels.sgd_update(p, g, state["velocity"] if self.momentum else None, lr, self.momentum,
                           self.nesterov, self.weight_decay)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight decay as L2 added to the gradient.
    ``decoupled=True`` is AdamW (Loshchilov & Hutter 2019): ``p -= lr * weight_decay * p`` apart."""

    slots = ("m", "v")

    def __init__(self, params, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, weight_decay)
        self.beta1, self.beta2, self.eps, self.decoupled = beta1, beta2, eps, decoupled

    def update(self, p, g, state, lr):
        t = self.step_count
        kernels.adam_update(p, g, state["m"], state["v"], lr, self.beta1, self.beta2, self.eps,
                            self.weight_decay, 1 - self.beta1 ** t, 1 - self.beta2 ** t, self.decoupled)


def make_optimizer(name: str, params, momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0) -> Optimizer:
    """The optimizer ``name`` (sgd, adam, adamw) over ``params`` from ``Model.parameters()``."""
    if name == "sgd":
        return SGD(params, momentum, nesterov, weight_decay)
    if name == "adam":
        return Adam(params, weight_decay=weight_decay)
    if name == "adamw":
        return Adam(params, weight_decay=weight_decay, decoupled=True)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
