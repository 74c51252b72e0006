"""im2col and its adjoint col2im (dilation 1): the kernel contract for ``conv.cu`` and the
NumPy twins, which run on the CPU.

Layout: ``col[c, u, v, n, i, j] = xpad[n, c, i*sy + u, j*sx + v]``, i.e. the matrix
(C*kh*kw, N*Ho*Wo), the same as ``compute/ops/conv.py``, so ``W (F, C*kh*kw) @ col`` is the
forward GEMM. ``stride`` is an int or (sy, sx); ``pads`` = (top, bottom, left, right).
(Conv2D's own CPU path is ``compute/ops/conv.py``; it calls these on the device.)
"""
from __future__ import annotations

import numpy

from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.ops.windows import output_size


def pair(stride) -> tuple[int, int]:
    """``stride`` (an int or a pair) as (sy, sx)."""
    if isinstance(stride, (int, numpy.integer)):
        return int(stride), int(stride)
    sy, sx = stride
    return int(sy), int(sx)


def window_geometry(x_shape, kh: int, kw: int, stride, pads):
    """``(sy, sx, top, left, out_h, out_w)`` of windows over the last two axes of ``x_shape``;
    ValueError when the numbers cannot work."""
    _, _, height, width = x_shape
    sy, sx = pair(stride)
    top, bottom, left, right = pads
    if min(kh, kw, sy, sx) < 1 or min(pads) < 0:
        raise ValueError("kernel and stride must be positive and pads not negative")
    out_h = output_size(height, kh, sy, top, bottom)
    out_w = output_size(width, kw, sx, left, right)
    if min(out_h, out_w) < 1:
        raise ValueError(f"a {kh}x{kw} window with stride {stride} does not fit a {height}x{width} "
                         f"image padded by {pads}")
    return sy, sx, top, left, out_h, out_w


def padded_window(padded, u, v, sy, sx, out_h, out_w):
    """The (N, C, Ho, Wo) view of ``padded`` seen at offset (u, v) of every window."""
    return padded[:, :, u:u + sy * (out_h - 1) + 1:sy, v:v + sx * (out_w - 1) + 1:sx]


def _im2col_twin(x, kh, kw, geometry, pads, col):
    """Pad once, then kh*kw strided slice copies."""
    xp = get_array_module(x)
    sy, sx, _, _, out_h, out_w = geometry
    top, bottom, left, right = pads
    padded = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    for u in range(kh):
        for v in range(kw):
            col[:, u, v] = padded_window(padded, u, v, sy, sx, out_h, out_w).transpose(1, 0, 2, 3)


def im2col(x, kh: int, kw: int, stride, pads, out=None):
    """Patches of ``x`` as columns, for a convolution as one GEMM.

    Takes ``x`` (N, C, H, W), the kernel size, ``stride`` (int or (sy, sx)) and ``pads`` =
    (top, bottom, left, right). Returns ``col`` (C, kh, kw, N, Ho, Wo), written into ``out``
    when given (e.g. the top rows of a larger column matrix).
    """
    device = runtime.on_device(x)
    dtype = runtime.work_dtype(x, "x", device)
    x = runtime.check(x, "x", None, dtype)
    batch, channels, height, width = x.shape
    geometry = window_geometry(x.shape, kh, kw, stride, pads)
    sy, sx, top, left, out_h, out_w = geometry
    col = runtime.output(out, x, (channels, kh, kw, batch, out_h, out_w), "col", dtype)
    if not device:
        _im2col_twin(x, kh, kw, geometry, pads, col)
        return col
    i32 = runtime.i32
    runtime.launch("conv", "im2col", col.size,
                   (x, col, runtime.i64(col.size), i32(batch), i32(channels), i32(height), i32(width),
                    i32(kh), i32(kw), i32(sy), i32(sx), i32(top), i32(left), i32(out_h), i32(out_w)), x)
    return col


def _col2im_twin(col, x_shape, geometry, pads):
    """The reverse strided adds, then the crop."""
    xp = get_array_module(col)
    channels, kh, kw, batch, out_h, out_w = col.shape
    sy, sx, _, _, _, _ = geometry
    _, _, height, width = x_shape
    top, bottom, left, right = pads
    padded = xp.zeros((batch, channels, height + top + bottom, width + left + right), dtype=col.dtype)
    for u in range(kh):
        for v in range(kw):
            padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += col[:, u, v].transpose(1, 0, 2, 3)
    return padded[:, :, top:top + height, left:left + width].copy()


def col2im(col, x_shape, stride, pads):
    """The adjoint of :func:`im2col`: each pixel gathers the column entries taken from it.

    Takes ``col`` (C, kh, kw, N, Ho, Wo), the image shape (N, C, H, W), ``stride`` and
    ``pads`` as for :func:`im2col`. Returns ``dx`` (N, C, H, W).
    """
    device = runtime.on_device(col)
    dtype = runtime.work_dtype(col, "col", device)
    col = runtime.check(col, "col", None, dtype)
    channels, kh, kw, batch, out_h, out_w = col.shape
    geometry = window_geometry(x_shape, kh, kw, stride, pads)
    if tuple(x_shape[:2]) != (batch, channels) or geometry[4:] != (out_h, out_w):
        raise ValueError(f"col {tuple(col.shape)} does not match an image {tuple(x_shape)} "
                         f"with stride {stride} and pads {pads}")
    if not device:
        return _col2im_twin(col, x_shape, geometry, pads)
    sy, sx, top, left = geometry[:4]
    _, _, height, width = x_shape
    x = runtime.empty(col, tuple(x_shape))
    i32 = runtime.i32
    runtime.launch("conv", "col2im", x.size,
                   (col, x, runtime.i64(x.size), i32(batch), i32(channels), i32(height), i32(width),
                    i32(kh), i32(kw), i32(sy), i32(sx), i32(top), i32(left), i32(out_h), i32(out_w)), col)
    return x
