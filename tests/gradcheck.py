"""Float64 central-difference gradient checks shared by the layer tests.

``check_layer`` compares a layer's analytic gradients (of every input and every parameter)
against ``(L(v + eps) - L(v - eps)) / 2 eps`` for the scalar ``L = sum(forward(x) * R)`` with
a fixed random ``R``, so every output element contributes with its own weight.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.layers.base import Layer


def numeric_grad(f, v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar ``f()`` with respect to ``v``, perturbed in place."""
    grad = np.zeros_like(v)
    flat, gflat = v.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_layer(layer: Layer, inputs: list[np.ndarray], seed: int = 0, training: bool = True,
                rtol: float = 1e-5, atol: float = 1e-7, build: bool = True) -> None:
    """Assert the layer's backward matches finite differences for all inputs and parameters.

    ``inputs`` are float64 batch-first arrays. With ``build``, the layer is built for their
    per-sample shapes first (parameters drawn from ``seed``), in float64.
    """
    rng = np.random.default_rng(seed)
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    if build:
        layer.build([x.shape[1:] for x in inputs], rng, np, np.float64)
    out = layer.forward(inputs, training)
    weights = rng.standard_normal(out.shape)

    def loss() -> float:
        return float((layer.forward(inputs, training) * weights).sum())

    layer.zero_grads()
    layer.forward(inputs, training)
    d_inputs = layer.backward(weights.copy())
    analytic_params = {k: g.copy() for k, g in layer.grads.items()}
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(d_inputs[i], numeric_grad(loss, x), rtol=rtol, atol=atol,
                                   err_msg=f"{layer.type_name}: gradient of input {i}")
    for name, p in layer.params.items():
        np.testing.assert_allclose(analytic_params[name], numeric_grad(loss, p), rtol=rtol, atol=atol,
                                   err_msg=f"{layer.type_name}: gradient of parameter {name}")
