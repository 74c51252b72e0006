"""The SimpleRNN step, forward and backward: the kernel contract for ``rnn.cu``, its numba
kernels and their NumPy twins. Arrays are (B, H); ``activation`` is ``tanh`` or ``relu``."""
from __future__ import annotations

from gatescope.compute import jit
from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.kernels.common import ONE, ZERO, tanh

RNN_ACTIVATIONS = {"tanh": 0, "relu": 1}


def _forward_twin(pre, rec, h, relu):
    xp = get_array_module(pre)
    a = pre + rec
    h[...] = xp.maximum(a, 0) if relu else xp.tanh(a)


@jit.kernel(twin=_forward_twin)
def _forward(pre, rec, h, relu):
    batch, units = h.shape
    for b in range(batch):
        a, r, out = pre[b], rec[b], h[b]
        if relu:
            for u in range(units):
                out[u] = max(a[u] + r[u], ZERO)
        else:
            for u in range(units):
                out[u] = tanh(a[u] + r[u])


def _backward_twin(dh, dh_next, h, d_pre, relu):
    total = dh + dh_next
    d_pre[...] = total * (h > 0) if relu else total * (1 - h * h)


@jit.kernel(twin=_backward_twin)
def _backward(dh, dh_next, h, d_pre, relu):
    batch, units = h.shape
    for b in range(batch):
        d, d_next, y, out = dh[b], dh_next[b], h[b], d_pre[b]
        if relu:
            for u in range(units):
                out[u] = (d[u] + d_next[u]) if y[u] > ZERO else ZERO
        else:
            for u in range(units):
                out[u] = (d[u] + d_next[u]) * (ONE - y[u] * y[u])


def _activation(activation: str) -> int:
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(RNN_ACTIVATIONS)}")
    return RNN_ACTIVATIONS[activation]


def simple_rnn_forward(pre, rec, activation: str = "tanh", out=None):
    """h_t = act(pre + rec) for one SimpleRNN step; ``pre`` (B, H) = x_t W + b, ``rec`` (B, H)
    = h_{t-1} U. Returns h (B, H), written into ``out`` when given."""
    code = _activation(activation)
    device = runtime.on_device(pre)
    dtype = runtime.work_dtype(pre, "pre", device)
    pre = runtime.check(pre, "pre", None, dtype)
    rec = runtime.check(rec, "rec", pre.shape, dtype)
    h = runtime.output(out, pre, pre.shape, "h", dtype)
    if device:
        runtime.launch("rnn", "simple_rnn_forward", pre.size,
                       (pre, rec, h, runtime.i64(pre.size), runtime.i32(code)), pre)
    else:
        runtime.cpu(_forward, pre, pre, rec, h, bool(code))
    return h


def simple_rnn_backward(dh, dh_next, h, activation: str = "tanh", out=None):
    """d_pre = (dh + dh_next) * act'(pre), the slope read off the output ``h``; all (B, H).
    ``dh`` comes from above, ``dh_next`` (None: zero) from step t+1's recurrent GEMM. Returns
    d_pre, written into ``out`` when given."""
    code = _activation(activation)
    device = runtime.on_device(dh)
    dtype = runtime.work_dtype(dh, "dh", device)
    h = runtime.check(h, "h", None, dtype)
    dh = runtime.check(dh, "dh", h.shape, dtype)
    dh_next = runtime.optional(dh_next, "dh_next", h.shape, dtype)
    d_pre = runtime.output(out, dh, h.shape, "d_pre", dtype)
    if device:
        runtime.launch("rnn", "simple_rnn_backward", h.size,
                       (dh, dh_next, h, d_pre, runtime.i64(h.size), runtime.i32(code)), dh)
    else:
        dh_next = runtime.zeros(dh, h.shape) if dh_next is None else dh_next
        runtime.cpu(_backward, dh, dh, dh_next, h, d_pre, bool(code))
    return d_pre
