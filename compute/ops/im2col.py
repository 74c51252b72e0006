"""The copies around im2col + GEMM on the CPU: im2col, col2im and the reorder of two leading
axes, as NumPy strided copies over a range ``[first, last)`` of images, so that
``compute.ops.threads`` can run them on every core (NumPy's copies release the GIL).

Layout (``compute.ops.conv``): ``col`` (C, kh, kw, N, Ho, Wo) with ``col[c, u, v, n, i, j] =
xpad[n, c, i*s + u, j*s + v]``. im2col writes only the entries whose pixel lies inside the
image: the padding entries are those of a zero-filled buffer that no call writes
(``compute.ops.workspace.zero_bordered``), so no padded copy of ``x`` is made. Which output
rows and columns a tap (u, v) reaches inside the image is :func:`tap_ranges`.

These are Chainer's CPU im2col and its adjoint (one strided slice copy or add per tap,
``chainer/utils/conv.py``). They are not numba kernels because numba lost to them: loops over
the same runs, single-threaded on the bench's shapes, measured 1.1-3x slower for im2col (three
loop orders tried) and 0.6-1.6x for col2im (as a scatter and as a gather; faster only on 8x8
maps), and no faster for the reorder.
"""
from __future__ import annotations

import numpy


def _tap_range(out_len: int, in_len: int, offset: int, stride: int) -> tuple[int, int]:
    """Output indices ``[lo, hi)`` whose input index ``i*stride + offset`` lies in ``[0, in_len)``."""
    lo = max(0, -(offset // stride))                   # ceil(-offset / stride) when offset < 0
    hi = min(out_len, (in_len - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def tap_ranges(kernel: int, out_len: int, in_len: int, pad_before: int, stride: int) -> list[tuple[int, int]]:
    """For each tap ``u`` of ``kernel``, the output range ``[lo, hi)`` it reads inside the image
    along one axis (input index ``i*stride + u - pad_before``)."""
    return [_tap_range(out_len, in_len, u - pad_before, stride) for u in range(kernel)]


def im2col_into(x, stride, top, left, rows, cols, col, first, last) -> None:
    """Fills the in-image entries of ``col`` (C, kh, kw, N, Ho, Wo) for images ``[first,
    last)`` from ``x`` (N, C, H, W) (any strides), one strided slice copy per tap;
    ``rows``/``cols`` are :func:`tap_ranges`."""
    source = x[first:last].transpose(1, 0, 2, 3)  # channel-major: each tap's copy is (C, N, Ho', Wo')
    for u, (i0, i1) in enumerate(rows):
        for v, (j0, j1) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                col[:, u, v, first:last, i0:i1, j0:j1] = source[:, :, ys:ys + stride * (i1 - i0):stride,
                                                                 xs:xs + stride * (j1 - j0):stride]


def col2im_into(col, stride, pads, padded, dx, first, last) -> None:
    """The adjoint of :func:`im2col_into`: images ``[first, last)`` of ``dx`` (N, C, H, W) are
    set to the sum, for every pixel, of the column entries copied from it, added up in
    ``padded`` (C, N, H + top + bottom, W + left + right), scratch."""
    c, kh, kw, _, ho, wo = col.shape
    _, _, h, w = dx.shape
    top, _, left, _ = pads
    col, padded = col[:, :, :, first:last], padded[:, first:last]
    # With stride 1 and an output as large as the input ('same'), tap (top, left) covers the
    # whole image exactly: it is assigned, not added, and only the padding frame is zeroed,
    # which saves a pass of zeros over the whole buffer.
    assigned = (top, left) if stride == 1 and (ho, wo) == (h, w) and top < kh and left < kw else None
    if assigned is None:
        padded.fill(0)
    else:
        padded[:, :, :top] = 0
        padded[:, :, top + h:] = 0
        padded[:, :, top:top + h, :left] = 0
        padded[:, :, top:top + h, left + w:] = 0
        padded[:, :, top:top + h, left:left + w] = col[:, top, left]
    # A strided add costs a fixed overhead per innermost run. Rows of Wo pixels are that run;
    # when they are very short (small feature maps), running over the batch innermost instead
    # is about twice as fast on NumPy (measured on 8x8 maps, N=64).
    # (CuPy ufuncs take no iteration order; its kernels run elementwise anyway.)
    batch_inner = isinstance(col, numpy.ndarray) and wo <= 8 < last - first
    for u in range(kh):
        for v in range(kw):
            if (u, v) == assigned:
                continue
            target = padded[:, :, u:u + stride * ho:stride, v:v + stride * wo:stride]
            if batch_inner:
                target = target.transpose(0, 2, 3, 1)
                numpy.add(target, col[:, u, v].transpose(0, 2, 3, 1), out=target, order="C")
            else:
                target += col[:, u, v]
    dx[first:last] = padded[:, :, top:top + h, left:left + w].transpose(1, 0, 2, 3)


def swap_leading(source, out, first, last) -> None:
    """``out[b, a] = source[a, b]`` for ``b`` in ``[first, last)``, ``source`` (A, B, L) and
    ``out`` (B, A, L): the GEMM's (F, N, Ho*Wo) rows into (N, F, Ho*Wo) and dy back."""
    out[first:last] = source[:, first:last].transpose(1, 0, 2)
