"""Softmax cross-entropy over rows of logits (N, K) with integer labels (N,): the kernel
contract for ``loss.cu`` and the NumPy twins, which run on the CPU.

The softmax is computed once, in the head's forward (before the labels are known), and keeps
each row's max and log-sum; the loss is then a gather, ``log sum - (x[label] - max)``, on
every path. (A loss read off the probabilities, ``-log(max(p, 1e-12))``, is capped at 27.6
and understated every badly wrong sample: issue 16.)
"""
from __future__ import annotations

import numpy

from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime


def _labels(labels, rows: int):
    if labels.shape != (rows,):
        raise ValueError(f"labels must be ({rows},), not {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, not {labels.dtype}")
    return get_array_module(labels).ascontiguousarray(labels, dtype=numpy.int32)


def softmax_forward(logits):
    """Softmax per row, numerically stable.

    Takes ``logits`` (N, K). Returns ``(probs, stats)``: the probabilities (N, K) and each
    row's ``(max, log sum exp(x - max))`` (N, 2), which :func:`cross_entropy_loss` turns into
    the loss by a gather.
    """
    device = runtime.on_device(logits)
    logits = runtime.check(logits, "logits", None, runtime.work_dtype(logits, "logits", device))
    rows, classes = logits.shape
    if not device:
        xp = get_array_module(logits)
        top = logits.max(axis=1)
        exps = xp.exp(logits - top[:, None])              # every exp() is in (0, 1]
        sums = exps.sum(axis=1)
        return exps / sums[:, None], xp.stack([top, xp.log(sums)], axis=1).astype(logits.dtype)
    probs = runtime.empty(logits, logits.shape)
    stats = runtime.empty(logits, (rows, 2))
    runtime.launch("loss", "softmax_forward", rows,
                   (logits, probs, stats, runtime.i32(rows), runtime.i32(classes)), logits)
    return probs, stats


def cross_entropy_loss(logits, stats, labels):
    """The cross-entropy of each row, ``log sum - (logits[label] - max)`` = -log softmax[label].

    Takes ``logits`` (N, K), ``stats`` (N, 2) from :func:`softmax_forward` and integer
    ``labels`` (N,). Returns ``loss`` (N,), NaN for a label outside [0, K).
    """
    device = runtime.on_device(logits)
    dtype = runtime.work_dtype(logits, "logits", device)
    logits = runtime.check(logits, "logits", None, dtype)
    rows, classes = logits.shape
    stats = runtime.check(stats, "stats", (rows, 2), dtype)
    labels = _labels(labels, rows)
    if not device:
        xp = get_array_module(logits)
        valid = (labels >= 0) & (labels < classes)
        picked = xp.take_along_axis(logits, xp.where(valid, labels, 0)[:, None].astype(xp.int64), axis=1)[:, 0]
        return xp.where(valid, stats[:, 1] - (picked - stats[:, 0]), xp.nan).astype(dtype)
    loss = runtime.empty(logits, (rows,))
    runtime.launch("loss", "cross_entropy_loss", rows,
                   (logits, stats, labels, loss, runtime.i32(rows), runtime.i32(classes)), logits)
    return loss


def softmax_cross_entropy_backward(probs, labels, scale: float | None = None):
    """Gradient of the loss with respect to the logits: (probs - onehot(labels)) * scale.

    Takes ``probs`` (N, K) from the forward and ``labels`` (N,); ``scale`` defaults to 1/N,
    the gradient of the mean loss. Returns ``d_logits`` (N, K).
    """
    device = runtime.on_device(probs)
    probs = runtime.check(probs, "probs", None, runtime.work_dtype(probs, "probs", device))
    rows, classes = probs.shape
    labels = _labels(labels, rows)
    scale = 1.0 / rows if scale is None else scale
    if not device:
        xp = get_array_module(probs)
        onehot = labels[:, None] == xp.arange(classes)[None, :]
        return ((probs - onehot) * scale).astype(probs.dtype)
    d_logits = runtime.empty(probs, probs.shape)
    runtime.launch("loss", "softmax_cross_entropy_backward", probs.size,
                   (probs, labels, d_logits, runtime.i64(probs.size), runtime.i32(classes),
                    runtime.f32(scale)), probs)
    return d_logits
