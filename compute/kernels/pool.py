"""2-D max and average pooling of (N, C, H, W), with stride and padding: the kernel contract
for ``pool.cu`` and the NumPy twins, which run on the CPU. Each pad must be smaller than the
window, so every window holds a real pixel. (The pooling layers keep their own CPU path,
``compute/layers/pooling.py``; they call these on the device.)
"""
from __future__ import annotations

import numpy

from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.kernels.conv import padded_window, window_geometry


def _geometry(x_shape, kh: int, kw: int, stride, pads):
    geometry = window_geometry(x_shape, kh, kw, stride, pads)
    top, bottom, left, right = pads
    if max(top, bottom) >= kh or max(left, right) >= kw:
        raise ValueError(f"pooling pads {pads} must be smaller than the window {kh}x{kw}, so "
                         "every window holds a real pixel")
    return geometry


def _args(x_shape, geometry, kh, kw):
    _, _, height, width = x_shape
    sy, sx, top, left, out_h, out_w = geometry
    return tuple(runtime.i32(v) for v in (height, width, kh, kw, sy, sx, top, left, out_h, out_w))


def _padded(xp, x_shape, pads, dtype, fill=0.0, image=None):
    """A padded (N, C, H + pads, W + pads) array of ``fill``, with ``image`` inside if given."""
    batch, channels, height, width = x_shape
    top, bottom, left, right = pads
    padded = xp.full((batch, channels, height + top + bottom, width + left + right), fill, dtype=dtype)
    if image is not None:
        padded[:, :, top:top + height, left:left + width] = image
    return padded


def _crop(padded, x_shape, pads):
    top, left = pads[0], pads[2]
    return padded[:, :, top:top + x_shape[2], left:left + x_shape[3]].copy()


def max_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Max pooling. Takes ``x`` (N, C, H, W), window, ``stride`` (int or pair) and ``pads``
    (top, bottom, left, right), each pad smaller than the window. Returns ``(y, argmax)``,
    both (N, C, Ho, Wo); ``argmax`` (int32) is the winner's offset u*kw + v in its window
    (the first maximum in row-major order)."""
    device = runtime.on_device(x)
    x = runtime.check(x, "x", None, runtime.work_dtype(x, "x", device))
    geometry = _geometry(x.shape, kh, kw, stride, pads)
    sy, sx, _, _, out_h, out_w = geometry
    if not device:
        xp = get_array_module(x)
        padded = _padded(xp, x.shape, pads, x.dtype, -numpy.inf, x)
        windows = xp.stack([padded_window(padded, u, v, sy, sx, out_h, out_w)
                            for u in range(kh) for v in range(kw)])
        return windows.max(axis=0), windows.argmax(axis=0).astype(numpy.int32)
    shape = x.shape[:2] + (out_h, out_w)
    y = runtime.empty(x, shape)
    argmax = runtime.empty(x, shape, numpy.int32)
    runtime.launch("pool", "max_pool2d_forward", y.size,
                   (x, y, argmax, runtime.i64(y.size), *_args(x.shape, geometry, kh, kw)), x)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Backward of :func:`max_pool2d_forward`: ``dy`` and ``argmax`` (N, C, Ho, Wo) ->
    ``dx`` (N, C, H, W), each pixel summing dy of the windows it won."""
    device = runtime.on_device(dy)
    geometry = _geometry(x_shape, kh, kw, stride, pads)
    sy, sx, _, _, out_h, out_w = geometry
    out_shape = tuple(x_shape[:2]) + (out_h, out_w)
    dy = runtime.check(dy, "dy", out_shape, runtime.work_dtype(dy, "dy", device))
    argmax = runtime.check(argmax, "argmax", out_shape, numpy.int32)
    if not device:
        padded = _padded(get_array_module(dy), x_shape, pads, dy.dtype)
        for u in range(kh):
            for v in range(kw):
                padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += dy * (argmax == u * kw + v)
        return _crop(padded, x_shape, pads)
    dx = runtime.empty(dy, tuple(x_shape))
    runtime.launch("pool", "max_pool2d_backward", dx.size,
                   (dy, argmax, dx, runtime.i64(dx.size), *_args(x_shape, geometry, kh, kw)), dy)
    return dx


def _window_counts(xp, x_shape, kh, kw, geometry, pads, count_pad, dtype):
    """The divisor of every window, (Ho, Wo): kh*kw, or its number of real pixels."""
    sy, sx, _, _, out_h, out_w = geometry
    if count_pad:
        return xp.full((out_h, out_w), kh * kw, dtype=dtype)
    real = _padded(xp, (1, 1) + tuple(x_shape[2:]), pads, dtype, image=1)
    return sum(padded_window(real, u, v, sy, sx, out_h, out_w)[0, 0] for u in range(kh) for v in range(kw))


def avg_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0), count_pad: bool = True):
    """Average pooling of ``x`` (N, C, H, W) -> (N, C, Ho, Wo). With ``count_pad`` the divisor
    is kh*kw (padding counts as zeros, PyTorch's default), else the window's real pixels."""
    device = runtime.on_device(x)
    x = runtime.check(x, "x", None, runtime.work_dtype(x, "x", device))
    geometry = _geometry(x.shape, kh, kw, stride, pads)
    sy, sx, _, _, out_h, out_w = geometry
    if not device:
        xp = get_array_module(x)
        padded = _padded(xp, x.shape, pads, x.dtype, image=x)
        total = sum(padded_window(padded, u, v, sy, sx, out_h, out_w) for u in range(kh) for v in range(kw))
        return total / _window_counts(xp, x.shape, kh, kw, geometry, pads, count_pad, x.dtype)
    y = runtime.empty(x, x.shape[:2] + (out_h, out_w))
    runtime.launch("pool", "avg_pool2d_forward", y.size,
                   (x, y, runtime.i64(y.size), *_args(x.shape, geometry, kh, kw),
                    runtime.i32(bool(count_pad))), x)
    return y


def avg_pool2d_backward(dy, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0),
                        count_pad: bool = True):
    """Backward of :func:`avg_pool2d_forward`: ``dy`` (N, C, Ho, Wo) -> ``dx`` (N, C, H, W)."""
    device = runtime.on_device(dy)
    geometry = _geometry(x_shape, kh, kw, stride, pads)
    sy, sx, _, _, out_h, out_w = geometry
    dy = runtime.check(dy, "dy", tuple(x_shape[:2]) + (out_h, out_w), runtime.work_dtype(dy, "dy", device))
    if not device:
        xp = get_array_module(dy)
        share = dy / _window_counts(xp, x_shape, kh, kw, geometry, pads, count_pad, dy.dtype)
        padded = _padded(xp, x_shape, pads, dy.dtype)
        for u in range(kh):
            for v in range(kw):
                padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += share
        return _crop(padded, x_shape, pads)
    dx = runtime.empty(dy, tuple(x_shape))
    runtime.launch("pool", "avg_pool2d_backward", dx.size,
                   (dy, dx, runtime.i64(dx.size), *_args(x_shape, geometry, kh, kw),
                    runtime.i32(bool(count_pad))), dy)
    return dx
