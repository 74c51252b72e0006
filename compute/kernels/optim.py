"""The optimizer updates, in place: the kernel contract for ``optim.cu``, its numba kernels
and their NumPy twins (``compute.optim`` calls these for every parameter).

A NumPy Adam step is about a dozen passes over the parameter, each with its temporary; the
numba kernel is one pass, and a call costs about a microsecond instead of a dozen NumPy calls
(which is what a small model's many small parameters pay).
"""
from __future__ import annotations

import math

from gatescope.compute import jit
from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.kernels.common import ONE


def _sgd_twin(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    g = grad + weight_decay * param if weight_decay else grad
    if velocity is None:
        param -= lr * g
        return
    velocity *= momentum
    velocity += g
    param -= lr * (g + momentum * velocity) if nesterov else lr * velocity


@jit.kernel(twin=_sgd_twin)
def _sgd(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    for k in range(param.size):
        p = param[k]
        g = grad[k] + weight_decay * p
        step = g
        if velocity is not None:
            v = momentum * velocity[k] + g
            velocity[k] = v
            step = g + momentum * v if nesterov else v
        param[k] = p - lr * step


def sgd_update(param, grad, velocity, lr: float, momentum: float = 0.0, nesterov: bool = False,
               weight_decay: float = 0.0):
    """SGD step in place, as ``compute.optim.SGD``: g' = g + wd p; v = momentum v + g';
    p -= lr v (Nesterov: p -= lr (g' + momentum v)). ``velocity`` (same shape as ``param``)
    is updated in place; pass None for plain SGD (momentum 0). Returns None."""
    device = runtime.on_device(param)
    dtype = runtime.work_dtype(param, "param", device)
    runtime.in_place(param, "param", param.shape, dtype)
    grad = runtime.check(grad, "grad", param.shape, dtype)
    if velocity is not None:
        runtime.in_place(velocity, "velocity", param.shape, dtype)
    elif momentum != 0:
        raise ValueError("momentum needs a velocity buffer")
    if device:
        runtime.launch("optim", "sgd_update", param.size,
                       (param, grad, velocity, runtime.i64(param.size), runtime.f32(lr),
                        runtime.f32(momentum), runtime.f32(weight_decay), runtime.i32(bool(nesterov))), param)
        return
    flat = [None if a is None else a.reshape(-1) for a in (param, grad, velocity)]
    scalar = dtype.type                                   # float32 scalars keep numba in float32
    runtime.cpu(_sgd, param, *flat, scalar(lr), scalar(momentum), scalar(weight_decay), bool(nesterov))


def _adam_twin(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bias_correction1,
               bias_correction2, decoupled):
    xp = get_array_module(param)
    if decoupled:
        param -= lr * weight_decay * param
        g = grad
    else:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    # p -= lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - beta1^t), v_hat likewise
    param -= lr * (m / bias_correction1) / (xp.sqrt(v / bias_correction2) + eps)


@jit.kernel(twin=_adam_twin)
def _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bias_correction1,
          bias_correction2, decoupled):
    for k in range(param.size):
        p = param[k]
        g = grad[k]
        if decoupled:
            p -= lr * weight_decay * p
        else:
            g += weight_decay * p
        m_t = beta1 * m[k] + (ONE - beta1) * g
        v_t = beta2 * v[k] + (ONE - beta2) * g * g
        m[k] = m_t
        v[k] = v_t
        param[k] = p - lr * (m_t / bias_correction1) / (math.sqrt(v_t / bias_correction2) + eps)


def adam_update(param, grad, m, v, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, bias_correction1: float, bias_correction2: float,
                decoupled: bool = False):
    """Adam (``decoupled=False``, L2 weight decay) or AdamW step in place, as
    ``compute.optim.Adam``. ``m`` and ``v`` are the moment buffers (same shape as ``param``);
    ``bias_correction1`` = 1 - beta1^t and ``bias_correction2`` = 1 - beta2^t for step t.
    Returns None."""
    device = runtime.on_device(param)
    dtype = runtime.work_dtype(param, "param", device)
    runtime.in_place(param, "param", param.shape, dtype)
    grad = runtime.check(grad, "grad", param.shape, dtype)
    runtime.in_place(m, "m", param.shape, dtype)
    runtime.in_place(v, "v", param.shape, dtype)
    scalars = tuple(dtype.type(s) for s in (lr, beta1, beta2, eps, weight_decay, bias_correction1,
                                            bias_correction2))
    if device:
        runtime.launch("optim", "adam_update", param.size,
                       (param, grad, m, v, runtime.i64(param.size), *scalars,
                        runtime.i32(bool(decoupled))), param)
        return
    runtime.cpu(_adam, param, param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                *scalars, bool(decoupled))
