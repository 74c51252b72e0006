"""Pooling: MaxPool1D/2D, AvgPool1D/2D and GlobalAvgPool. No parameters.

Windows are visited the im2col way: one strided slice of the whole batch per position inside
the window (``size`` or ``size * size`` slices), never a Python loop over pixels. Windows are
'valid' (no padding): the output length is ``floor((n - size) / stride) + 1``.

On CuPy arrays (or with a host kernel backend installed) max and average pooling run the
pooling kernels of ``compute.kernels``, which pool the last two axes of ``(N, C, H, W)``: an
input is viewed (no copy) as planes ``(-1, 1, H, W)``; a sequence ``(N, T, F)`` as planes
``(N, 1, T, F)`` pooled by ``size x 1`` windows.
"""
from __future__ import annotations

import itertools

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.ops.dispatch import kernel_path
from gatescope.compute.ops.windows import output_size
from gatescope.compute.layers.base import Layer, Setting, ShapeError, describe_shape


def _pool_settings() -> tuple[Setting, ...]:
    return (
        Setting("size", "int", 2, "Size", "Width (and height) of each pooling window.", 1, 64),
        Setting("stride", "int", 0, "Stride",
                "How far the window moves; 0 means the same as the size (windows that do not overlap).",
                0, 64),
    )


class _Pool(Layer):
    """Windows over the last ``_spatial_rank`` axes of an image or over the time axis of a sequence."""

    category = "Pooling"
    settings_spec = _pool_settings()

    @property
    def stride(self) -> int:
        return self.settings["stride"] or self.settings["size"]

    # Axes the windows slide over, counted from the end: (-2, -1) = H, W of (N, C, H, W);
    # (-2,) = T of (N, T, F), so each feature is pooled over time.
    window_axes: tuple[int, ...] = (-2, -1)

    def _spatial_axes(self, ndim: int) -> tuple[int, ...]:
        """Batch-first axes the windows slide over, for an array of ``ndim`` dimensions."""
        return tuple(ndim + a for a in self.window_axes)

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        shape = list(in_shapes[0])
        axes = [a - 1 for a in self._spatial_axes(len(shape) + 1)]
        size = self.settings["size"]
        if any(shape[a] < size for a in axes):
            extent = "x".join(str(shape[a]) for a in axes)
            raise ShapeError(f"pooling window {size} is larger than the {extent} input "
                             f"({describe_shape(tuple(shape))}); use a smaller size or remove the block")
        for a in axes:
            shape[a] = output_size(shape[a], size, self.stride)
        return tuple(shape)

    def size_formula(self, in_shapes):
        shape = list(in_shapes[0])
        axes = [a - 1 for a in self._spatial_axes(len(shape) + 1)]
        size, stride = self.settings["size"], self.stride
        lines = [f"floor(({shape[a]} - {size}) / {stride}) + 1 = {output_size(shape[a], size, stride)}" for a in axes]
        if len(axes) == 2:
            if shape[axes[0]] == shape[axes[1]]:
                return f"height and width: {lines[0]}"
            return f"height: {lines[0]}; width: {lines[1]}"
        return f"{'length' if len(axes) == 1 else 'size'}: {lines[0]}" if lines else ""

    def _windows(self, shape: tuple[int, ...]):
        """(output shape, [slice tuple selecting window position k for every output]) for input ``shape``."""
        size, stride = self.settings["size"], self.stride
        axes = self._spatial_axes(len(shape))
        out = list(shape)
        for a in axes:
            out[a] = output_size(shape[a], size, stride)
        slicers = []
        for offsets in itertools.product(range(size), repeat=len(axes)):
            index = [slice(None)] * len(shape)
            for a, o in zip(axes, offsets):
                index[a] = slice(o, o + stride * (out[a] - 1) + 1, stride)
            slicers.append(tuple(index))
        return tuple(out), slicers

    def _planes(self, shape: tuple[int, ...]):
        """(plane shape ``(B, 1, H, W)``, window ``(kh, kw)``, stride ``(sy, sx)``) for the
        pooling kernels: the input's last two axes are the plane; a 1-D window spans one row."""
        size, stride = self.settings["size"], self.stride
        window, strides = ((size, size), (stride, stride)) if len(self.window_axes) == 2 else ((size, 1), (stride, 1))
        return (-1, 1) + tuple(shape[-2:]), window, strides


class _MaxPool(_Pool):
    """The largest value of each window. Backward routes the gradient to the position of that
    maximum; on ties, to the first position in the window (row by row)."""

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        out_shape, slicers = self._windows(x.shape)
        if kernel_path(x):
            planes, (kh, kw), strides = self._planes(x.shape)
            best, where = kernels.max_pool2d_forward(x.reshape(planes), kh, kw, strides)
            self._x_shape, self._slicers, self._where = x.shape, None, where
            return best.reshape(out_shape)
        best = x[slicers[0]].copy()
        where = xp.zeros(out_shape, dtype=xp.int32)  # index of the winning window position
        for k, index in enumerate(slicers[1:], start=1):
            candidate = x[index]
            better = candidate > best  # strictly greater, so the first maximum wins ties
            best = xp.where(better, candidate, best)
            where[better] = k
        self._x_shape, self._slicers, self._where = x.shape, slicers, where
        return best

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        if self._slicers is None:                          # forward ran the kernel
            _, (kh, kw), strides = self._planes(self._x_shape)
            plane_shape = (self._where.shape[0], 1) + tuple(self._x_shape[-2:])
            dx = kernels.max_pool2d_backward(grad_output.reshape(self._where.shape), self._where,
                                             plane_shape, kh, kw, strides)
            return [dx.reshape(self._x_shape)]
        dx = xp.zeros(self._x_shape, dtype=grad_output.dtype)
        for k, index in enumerate(self._slicers):
            # += because overlapping windows (stride < size) can pick the same pixel.
            dx[index] += grad_output * (self._where == k)
        return [dx]


class _AvgPool(_Pool):
    """The mean of each window; backward spreads each gradient equally over its window."""

    def forward(self, inputs, training):
        x = inputs[0]
        out_shape, slicers = self._windows(x.shape)
        if kernel_path(x):
            planes, (kh, kw), strides = self._planes(x.shape)
            self._x_shape, self._slicers = x.shape, None
            return kernels.avg_pool2d_forward(x.reshape(planes), kh, kw, strides).reshape(out_shape)
        total = x[slicers[0]].copy()
        for index in slicers[1:]:
            total += x[index]
        self._x_shape, self._slicers = x.shape, slicers
        return total * (1.0 / len(slicers))

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        if self._slicers is None:                          # forward ran the kernel
            _, (kh, kw), strides = self._planes(self._x_shape)
            plane_shape = (-1, 1) + tuple(grad_output.shape[-2:])
            dy = grad_output.reshape(plane_shape)
            dx = kernels.avg_pool2d_backward(dy, (dy.shape[0], 1) + tuple(self._x_shape[-2:]), kh, kw, strides)
            return [dx.reshape(self._x_shape)]
        dx = xp.zeros(self._x_shape, dtype=grad_output.dtype)
        share = grad_output * (1.0 / len(self._slicers))
        for index in self._slicers:
            dx[index] += share
        return [dx]


@register
class MaxPool2D(_MaxPool):
    """Max pooling of an image (C, H, W) over size x size windows, per channel."""

    type_name = "MaxPool2D"
    step_rank = 3
    window_axes = (-2, -1)
    summary = "Keeps the largest value of each window of each feature map, shrinking the image."


@register
class AvgPool2D(_AvgPool):
    """Average pooling of an image (C, H, W) over size x size windows, per channel."""

    type_name = "AvgPool2D"
    step_rank = 3
    window_axes = (-2, -1)
    summary = "Averages each window of each feature map, shrinking the image."


@register
class MaxPool1D(_MaxPool):
    """Max pooling of a sequence (T, F) over windows of ``size`` steps, per feature."""

    type_name = "MaxPool1D"
    step_rank = 2
    window_axes = (-2,)
    summary = "Keeps the largest value of each window of steps, per feature, shortening the sequence."


@register
class AvgPool1D(_AvgPool):
    """Average pooling of a sequence (T, F) over windows of ``size`` steps, per feature."""

    type_name = "AvgPool1D"
    step_rank = 2
    window_axes = (-2,)
    summary = "Averages each window of steps, per feature, shortening the sequence."


@register
class GlobalAvgPool(Layer):
    """The mean over all positions: image (C, H, W) -> (C,) per channel, sequence (T, F) -> (F,)
    over time. Fed a video clip (T, C, H, W) it pools every frame, giving a sequence (T, C)."""

    type_name = "GlobalAvgPool"
    category = "Pooling"
    summary = "Averages each feature map (or each feature over time) down to one number."

    def time_distributed(self, in_shapes):
        return len(in_shapes[0]) == 4

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) == 3:
            return (shape[0],)
        if len(shape) == 2:
            return (shape[1],)
        raise ShapeError(f"GlobalAvgPool needs an image or a sequence, but is fed a {describe_shape(shape)}; "
                         "it has nothing to average over")

    def _axes(self, ndim):
        return (2, 3) if ndim == 4 else (1,)

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = x.shape
        return x.mean(axis=self._axes(x.ndim))

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        axes = self._axes(len(self._x_shape))
        count = 1
        for a in axes:
            count *= self._x_shape[a]
        grad = xp.expand_dims(grad_output, axes) * (1.0 / count)
        return [xp.broadcast_to(grad, self._x_shape).copy()]
