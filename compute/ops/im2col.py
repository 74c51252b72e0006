"""The copies around im2col + GEMM on the CPU: im2col, col2im and the reorder of two leading
axes. col2im and the reorder are numba kernels (``compute.jit``) with NumPy twins; im2col is
NumPy's strided copies, which measured faster than a numba loop (see :func:`im2col_into`).
Each takes a range ``[first, last)`` of its outermost loop, so that ``compute.ops.threads``
can run it on every core (NumPy's copies release the GIL too).

Layout (``compute.ops.conv``): ``col`` (C, kh, kw, N, Ho, Wo) with ``col[c, u, v, n, i, j] =
xpad[n, c, i*s + u, j*s + v]``. Both im2col versions write only the entries whose pixel lies
inside the image: the padding entries are those of a zero-filled buffer that no call writes
(``compute.ops.workspace.zero_bordered``), so no padded copy of ``x`` is made.

Which output rows and columns a tap (u, v) reaches inside the image is :func:`tap_ranges`,
computed once in Python and handed to kernel and twin alike.

The NumPy versions are Chainer's CPU im2col and its adjoint (one strided slice copy or add
per tap, ``chainer/utils/conv.py``). Measured single-threaded on the bench's shapes: the numba
col2im 1.1-1.7x faster than its twin, the reorder about as fast as NumPy's copy.
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


def im2col_into(x, stride, top, left, rows, cols, col, first, last):
    """Fills the in-image entries of ``col`` (C, kh, kw, N, Ho, Wo) for images ``[first,
    last)`` from ``x`` (N, C, H, W) (any strides), one strided slice copy per tap;
    ``rows``/``cols`` are :func:`tap_ranges`. Returns nothing. (Plain NumPy: numba loops
    over the same runs, three orders tried, measured 1.1-3x slower single-threaded on the
    bench's shapes.)"""
    source = x[first:last].transpose(1, 0, 2, 3)  # channel-major: each tap's copy is (C, N, Ho', Wo')
    for u, (i0, i1) in enumerate(rows):
        for v, (j0, j1) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                col[:, u, v, first:last, i0:i1, j0:j1] = source[:, :, ys:ys + stride * (i1 - i0):stride,
                                                                 xs:xs + stride * (j1 - j0):stride]


def _col2im_twin(col, stride, top, left, rows, cols, dx, first, last):
    dx[first:last] = 0
    target = dx[first:last].transpose(1, 0, 2, 3)
    for u, (i0, i1) in enumerate(rows):
        for v, (j0, j1) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                target[:, :, ys:ys + stride * (i1 - i0):stride,
                       xs:xs + stride * (j1 - j0):stride] += col[:, u, v, first:last, i0:i1, j0:j1]


def _swap_leading_twin(source, out, first, last):
    out[first:last] = source[:, first:last].transpose(1, 0, 2)


@jit.kernel(twin=_col2im_twin)
def col2im_into(col, stride, top, left, rows, cols, dx, first, last):
    """The adjoint of :func:`im2col_into`: images ``[first, last)`` of ``dx`` (N, C, H, W) are
    set to the sum, for every pixel, of the column entries copied from it. Returns nothing."""
    c_count, kh, kw = col.shape[:3]
    dx[first:last] = 0
    for c in range(c_count):
        for u in range(kh):
            i0, i1 = rows[u, 0], rows[u, 1]
            for v in range(kw):
                j0, j1 = cols[v, 0], cols[v, 1]
                for n in range(first, last):
                    for i in range(i0, i1):
                        y = i * stride + u - top
                        if stride == 1:     # a contiguous run: the adds vectorise
                            for j in range(j0, j1):
                                dx[n, c, y, j + v - left] += col[c, u, v, n, i, j]
                        else:
                            for j in range(j0, j1):
                                dx[n, c, y, j * stride + v - left] += col[c, u, v, n, i, j]


@jit.kernel(twin=_swap_leading_twin)
def swap_leading(source, out, first, last):
    """``out[b, a, :] = source[a, b, :]`` for ``source`` (A, B, L), ``out`` (B, A, L) and ``b``
    in ``[first, last)``: the GEMM's (F, N, Ho*Wo) rows into (N, F, Ho*Wo) and dy back."""
    a_count, _, length = source.shape
    for b in range(first, last):
        for a in range(a_count):
            for i in range(length):
                out[b, a, i] = source[a, b, i]
