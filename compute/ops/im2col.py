"""The copies around im2col + GEMM on the CPU: im2col, col2im and the reorder of two leading
axes, as numba kernels (``compute.jit``) with their NumPy twins.

Layout (``compute.ops.conv``): ``col`` (C, kh, kw, N, Ho, Wo) with ``col[c, u, v, n, i, j] =
xpad[n, c, i*s + u, j*s + v]``. Both im2col versions write only the entries whose pixel lies
inside the image: the padding entries are those of a zero-filled buffer that no call writes
(``compute.ops.workspace.zero_bordered``), so no padded copy of ``x`` is made.

Which output rows and columns a tap (u, v) reaches inside the image is :func:`tap_ranges`,
computed once in Python and handed to kernel and twin alike.

The twins are Chainer's CPU im2col (one strided slice copy per tap, ``chainer/utils/conv.py``);
a strided NumPy copy pays a fixed cost per innermost run of Wo pixels, which the kernels do
not (the issue 17 measurement: numba im2col 0.21-0.88x the GEMM it feeds against 0.49-1.48x,
a numba reorder 0.02-0.29x against 0.05-0.56x, on the bench's CPU shapes).
"""
from __future__ import annotations

import numpy

from gatescope.compute import jit


def _tap_range(out_len: int, in_len: int, offset: int, stride: int) -> tuple[int, int]:
    """Output indices ``[lo, hi)`` whose input index ``i*stride + offset`` lies in ``[0, in_len)``."""
    lo = max(0, -(offset // stride))                   # ceil(-offset / stride) when offset < 0
    hi = min(out_len, (in_len - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def tap_ranges(kernel: int, out_len: int, in_len: int, pad_before: int, stride: int) -> numpy.ndarray:
    """``(kernel, 2)`` int64: for each tap ``u``, the output range ``[lo, hi)`` it reads inside
    the image along one axis (input index ``i*stride + u - pad_before``)."""
    return numpy.array([_tap_range(out_len, in_len, u - pad_before, stride) for u in range(kernel)],
                       dtype=numpy.int64).reshape(kernel, 2)


def _im2col_twin(x, stride, top, left, rows, cols, col):
    source = x.transpose(1, 0, 2, 3)  # channel-major, so each tap's copy is (C, N, Ho', Wo')
    for u, (i0, i1) in enumerate(rows):
        for v, (j0, j1) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                col[:, u, v, :, i0:i1, j0:j1] = source[:, :, ys:ys + stride * (i1 - i0):stride,
                                                       xs:xs + stride * (j1 - j0):stride]


def _col2im_twin(col, stride, top, left, rows, cols, dx):
    dx[...] = 0
    target_all = dx.transpose(1, 0, 2, 3)
    for u, (i0, i1) in enumerate(rows):
        for v, (j0, j1) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                target_all[:, :, ys:ys + stride * (i1 - i0):stride,
                           xs:xs + stride * (j1 - j0):stride] += col[:, u, v, :, i0:i1, j0:j1]


def _swap_leading_twin(source, out):
    out[...] = source.transpose(1, 0, 2)


@jit.kernel(twin=_im2col_twin)
def im2col_into(x, stride, top, left, rows, cols, col):
    """Fills the in-image entries of ``col`` (C, kh, kw, N, Ho, Wo) from ``x`` (N, C, H, W)
    (any strides), a run of ``cols[v]`` output columns at a time; ``rows``/``cols`` are
    :func:`tap_ranges`. Returns nothing."""
    c_count, kh, kw, n_count = col.shape[:4]
    for c in range(c_count):
        for u in range(kh):
            i0, i1 = rows[u, 0], rows[u, 1]
            for v in range(kw):
                j0, j1 = cols[v, 0], cols[v, 1]
                for n in range(n_count):
                    for i in range(i0, i1):
                        y = i * stride + u - top
                        for j in range(j0, j1):
                            col[c, u, v, n, i, j] = x[n, c, y, j * stride + v - left]


@jit.kernel(twin=_col2im_twin)
def col2im_into(col, stride, top, left, rows, cols, dx):
    """The adjoint of :func:`im2col_into`: ``dx`` (N, C, H, W) is set to the sum, for every
    pixel, of the column entries copied from it. Returns nothing."""
    c_count, kh, kw, n_count = col.shape[:4]
    dx[...] = 0
    for c in range(c_count):
        for u in range(kh):
            i0, i1 = rows[u, 0], rows[u, 1]
            for v in range(kw):
                j0, j1 = cols[v, 0], cols[v, 1]
                for n in range(n_count):
                    for i in range(i0, i1):
                        y = i * stride + u - top
                        for j in range(j0, j1):
                            dx[n, c, y, j * stride + v - left] += col[c, u, v, n, i, j]


@jit.kernel(twin=_swap_leading_twin)
def swap_leading(source, out):
    """``out[b, a, :] = source[a, b, :]`` for ``source`` (A, B, L) and ``out`` (B, A, L): the
    GEMM's (F, N, Ho*Wo) rows into (N, F, Ho*Wo) and dy back. Returns nothing."""
    a_count, b_count, length = source.shape
    for b in range(b_count):
        for a in range(a_count):
            for i in range(length):
                out[b, a, i] = source[a, b, i]
