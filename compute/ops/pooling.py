"""Max and average pooling of planes on the CPU: numba kernels (``compute.jit``) with NumPy twins.

Every pool works on ``planes`` (B, H, W): the pooling layers view an image batch (N, C, H, W)
as N*C planes and a sequence batch (N, T, F) as N planes pooled by ``size x 1`` windows (as the
CUDA pooling kernels of ``compute.kernels`` do). Windows are 'valid' (no padding), ``(kh, kw)``
wide, ``(sy, sx)`` apart: ``Ho = (H - kh) // sy + 1``.

Each kernel takes the range ``[first, last)`` of planes it pools, so that
``compute.ops.threads`` can run it on every core.

Max pooling records, for every output, the offset ``u*kw + v`` of its window's first maximum
(row by row), which is where backward sends the gradient; overlapping windows add theirs.

The twins visit the window the im2col way, one strided slice of every plane per offset; the
kernels go over each window once, which on the examples' small maps is what counts (NumPy pays
a fixed cost per slice: 8x8 maps give runs of four pixels).
"""
from __future__ import annotations

from gatescope.compute import jit


def _offsets(kh: int, kw: int, sy: int, sx: int, out_h: int, out_w: int):
    """``(k, rows, cols)`` for each window offset ``k = u*kw + v``: the slices of a plane that
    offset visits for every output."""
    for u in range(kh):
        for v in range(kw):
            yield u * kw + v, slice(u, u + sy * (out_h - 1) + 1, sy), slice(v, v + sx * (out_w - 1) + 1, sx)


def _max_forward_twin(planes, kh, kw, sy, sx, out, where, first, last):
    planes, out, where = planes[first:last], out[first:last], where[first:last]
    _, out_h, out_w = out.shape
    where[...] = 0
    for k, rows, cols in _offsets(kh, kw, sy, sx, out_h, out_w):
        candidate = planes[:, rows, cols]
        if k == 0:
            out[...] = candidate
            continue
        better = candidate > out              # strictly greater: the first maximum wins ties
        out[better] = candidate[better]
        where[better] = k


def _max_backward_twin(grad, where, kh, kw, sy, sx, dx, first, last):
    grad, where, dx = grad[first:last], where[first:last], dx[first:last]
    _, out_h, out_w = grad.shape
    dx[...] = 0
    for k, rows, cols in _offsets(kh, kw, sy, sx, out_h, out_w):
        dx[:, rows, cols] += grad * (where == k)


def _avg_forward_twin(planes, kh, kw, sy, sx, out, first, last):
    planes, out = planes[first:last], out[first:last]
    _, out_h, out_w = out.shape
    out[...] = 0
    for _, rows, cols in _offsets(kh, kw, sy, sx, out_h, out_w):
        out += planes[:, rows, cols]
    out *= 1.0 / (kh * kw)


def _avg_backward_twin(grad, kh, kw, sy, sx, dx, first, last):
    grad, dx = grad[first:last], dx[first:last]
    _, out_h, out_w = grad.shape
    share = grad * (1.0 / (kh * kw))
    dx[...] = 0
    for _, rows, cols in _offsets(kh, kw, sy, sx, out_h, out_w):
        dx[:, rows, cols] += share


@jit.kernel(twin=_max_forward_twin)
def max_forward(planes, kh, kw, sy, sx, out, where, first, last):
    """``out`` (B, Ho, Wo): the largest value of each window of ``planes`` (B, H, W);
    ``where`` (B, Ho, Wo) int32: its offset ``u*kw + v`` (the first, on ties). (Window by
    window, 7.5 ns an output on 2048 16x16 planes with 2x2 windows; a row of outputs per window
    offset, updating ``out`` as it goes, took 21 ns.)"""
    _, out_h, out_w = out.shape
    for b in range(first, last):
        for i in range(out_h):
            for j in range(out_w):
                best = planes[b, i * sy, j * sx]
                at = 0
                for u in range(kh):
                    for v in range(kw):
                        value = planes[b, i * sy + u, j * sx + v]
                        if value > best:               # strictly: the first maximum wins ties
                            best = value
                            at = u * kw + v
                out[b, i, j] = best
                where[b, i, j] = at


@jit.kernel(twin=_max_backward_twin)
def max_backward(grad, where, kh, kw, sy, sx, dx, first, last):
    """``dx`` (B, H, W): each pixel the sum of ``grad`` (B, Ho, Wo) over the windows it won."""
    _, out_h, out_w = grad.shape
    dx[first:last] = 0
    for b in range(first, last):
        for i in range(out_h):
            for j in range(out_w):
                at = where[b, i, j]
                dx[b, i * sy + at // kw, j * sx + at % kw] += grad[b, i, j]


@jit.kernel(twin=_avg_forward_twin)
def avg_forward(planes, kh, kw, sy, sx, out, first, last):
    """``out`` (B, Ho, Wo): the mean of each window of ``planes`` (B, H, W), a row at a time."""
    _, out_h, out_w = out.shape
    scale = 1.0 / (kh * kw)
    out[first:last] = 0
    for b in range(first, last):
        for i in range(out_h):
            for u in range(kh):
                for v in range(kw):
                    for j in range(out_w):
                        out[b, i, j] += planes[b, i * sy + u, j * sx + v]
            for j in range(out_w):
                out[b, i, j] *= scale


@jit.kernel(twin=_avg_backward_twin)
def avg_backward(grad, kh, kw, sy, sx, dx, first, last):
    """``dx`` (B, H, W): each pixel the sum of its windows' ``grad`` (B, Ho, Wo) / (kh*kw)."""
    _, out_h, out_w = grad.shape
    scale = 1.0 / (kh * kw)
    dx[first:last] = 0
    for b in range(first, last):
        for i in range(out_h):
            for u in range(kh):
                for v in range(kw):
                    for j in range(out_w):
                        dx[b, i * sy + u, j * sx + v] += grad[b, i, j] * scale
