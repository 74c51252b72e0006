"""Compile the CPU kernels ahead of the first training (``prepare``).

numba compiles a kernel at its first call for the argument types it gets, and keeps the
machine code in the user's cache directory (``compute.jit``). Without this, the first
training step after an install stalls while every kernel it meets compiles. ``prepare()``
calls each function of the kernel contract once on tiny float32 NumPy arrays of the layouts
the layers pass (C-contiguous rows, float32 pins and scalars), so every specialisation the
layers use is compiled, or loaded from the cache, before a person presses Train.

It touches no Qt and holds no lock of its own: run it on a background thread at start-up (a
training that starts meanwhile waits on numba's compiler lock for a kernel still compiling,
then runs). Measured costs are in the README (issue 16).
"""
from __future__ import annotations

import logging
import time

import numpy

from gatescope.compute import jit

log = logging.getLogger(__name__)


def _calls():
    """Every contract function once, on tiny inputs, per variant the layers use; what every
    model needs first (the optimizers), then the LSTM and SimpleRNN (the bundled examples'
    cells), then the rest, convolutions last: a training that starts meanwhile finds its kernels sooner."""
    from gatescope.compute import kernels
    rng = numpy.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(numpy.float32)

    param = arr(5)
    kernels.adam_update(param, arr(5), numpy.zeros(5, numpy.float32), numpy.zeros(5, numpy.float32),
                        1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001)
    kernels.sgd_update(param, arr(5), numpy.zeros(5, numpy.float32), 0.1, 0.9)
    kernels.sgd_update(param, arr(5), None, 0.1)
    batch, units = 2, 3
    state = (batch, units)
    for variant, width in (("standard", 4), ("peephole", 4), ("coupled", 3)):
        peephole = arr(3, units) if variant == "peephole" else None
        gates, c, _ = kernels.lstm_forward(arr(batch, width * units), arr(batch, width * units), arr(*state),
                                           peephole, variant)
        d_pre, _ = kernels.lstm_backward(arr(*state), None, None, gates, arr(*state), c, peephole, variant)
        if variant == "peephole":
            kernels.lstm_peephole_grad(d_pre, arr(*state), c, numpy.zeros((3, units), numpy.float32))
        if variant == "standard":
            h = kernels.simple_rnn_forward(arr(*state), arr(*state))
            kernels.simple_rnn_backward(arr(*state), None, h)
    x_gates, h_gates = arr(batch, 3 * units), arr(batch, 3 * units)
    gates, _ = kernels.gru_pytorch_forward(x_gates, h_gates, arr(*state), b_hn=arr(units))
    kernels.gru_pytorch_backward(arr(*state), None, gates, arr(*state), h_gates, b_hn=arr(units))
    gates, _ = kernels.gru_cho_forward_rz(x_gates, arr(batch, 2 * units), arr(*state))
    kernels.gru_cho_forward_n(x_gates, arr(*state), arr(*state), gates)
    d_gates, dh_prev = kernels.gru_cho_backward_n(arr(*state), None, gates, arr(*state))
    kernels.gru_cho_backward_r(arr(*state), gates, arr(*state), d_gates, dh_prev)
    from gatescope.compute.ops import embedding as embedding_ops
    embedding_ops.scatter_rows(numpy.array([0, 1, 0]), arr(3, 2), numpy.zeros((2, 2), numpy.float32), -1)
    _convolution_calls(arr)


def _convolution_calls(arr):
    """Conv2D by each algorithm and the four pooling kernels, forward and backward, through the
    layers themselves: the Winograd kernels are the slowest of all to compile (about 20 s)."""
    from gatescope.compute.layers import create
    from gatescope.compute.ops import conv as conv_ops
    x = arr(2, 4, 8, 8)
    weight = arr(4, 4, 3, 3)
    for method in conv_ops.ALGORITHMS:
        y, saved = conv_ops.conv2d_forward(x, weight, arr(4), 1, (1, 1, 1, 1), {}, method)
        conv_ops.conv2d_backward(arr(*y.shape), saved, weight, x.shape, 1, (1, 1, 1, 1), True, {})
    for name in ("MaxPool2D", "AvgPool2D"):
        layer = create(name, {"size": 2})
        layer.build([x.shape[1:]], numpy.random.default_rng(0), numpy, numpy.float32)
        out = layer.forward([x], True)
        layer.backward(numpy.ones_like(out))


def prepare() -> dict:
    """Compile (or load from numba's cache) every CPU kernel for float32.

    Returns ``{"seconds": wall time, "kernels": how many kernels ran compiled, "numba": True
    when the compiled kernels run, "note": why the NumPy twins run instead (None when they
    do not)}``. Safe to call from any thread, and again (later calls return in microseconds).
    """
    start = time.perf_counter()
    _calls()
    seconds = time.perf_counter() - start
    ready = [k for k in jit.kernels() if k.compiled and k.signatures()]
    report = {"seconds": seconds, "kernels": len(ready), "numba": jit.available(), "note": jit.why_not()}
    log.info("CPU kernels ready in %.2f s (%d compiled%s)", seconds, len(ready),
             "" if report["note"] is None else f"; {report['note']}")
    return report
