"""Pooling: MaxPool1D/2D, AvgPool1D/2D, GlobalAvgPool and GlobalMaxPool1D. No parameters.

Windows are 'valid' (no padding): the output length is ``floor((n - size) / stride) + 1``.
Max and average pooling pool the last two axes of planes: an image batch (N, C, H, W) is
viewed (no copy) as planes (N*C, H, W), a sequence batch (N, T, F) as N planes (T, F) pooled
by ``size x 1`` windows. On NumPy arrays the planes go through ``compute.ops.pooling`` (numba
kernels on every core, NumPy twins without numba); on CuPy arrays (or with a host kernel
backend installed) through the pooling kernels of ``compute.kernels``, as planes
``(-1, 1, H, W)``.
"""
from __future__ import annotations

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.ops import pooling as pool_ops
from gatescope.compute.ops.dispatch import kernel_path
from gatescope.compute.ops.windows import output_size
from gatescope.compute.ops.threads import run
from gatescope.compute.layers.base import Layer, Setting, ShapeError, describe_shape, with_article


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

    def _planes(self, shape: tuple[int, ...]):
        """(plane shape ``(B, 1, H, W)``, window ``(kh, kw)``, stride ``(sy, sx)``): the
        input's last two axes are the plane; a 1-D window spans one row."""
        size, stride = self.settings["size"], self.stride
        window, strides = ((size, size), (stride, stride)) if len(self.window_axes) == 2 else ((size, 1), (stride, 1))
        return (-1, 1) + tuple(shape[-2:]), window, strides

    def _out_planes(self, x_shape):
        """The output's shape and its planes' shape ``(B, Ho, Wo)``."""
        out_shape = (x_shape[0],) + self.output_shape([tuple(x_shape[1:])])
        return out_shape, (-1,) + out_shape[-2:]

    @staticmethod
    def _pool(kernel, xp, planes, *args):
        """``kernel(planes, *args, first, last)`` over all planes (``compute.ops.threads.run``)."""
        run(kernel, xp, planes.shape[0], planes.size, planes, *args)


class _MaxPool(_Pool):
    """The largest value of each window. Backward routes the gradient to the position of that
    maximum; on ties, to the first position in the window (row by row)."""

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        planes, (kh, kw), strides = self._planes(x.shape)
        self._x_shape, self._kernels = x.shape, kernel_path(x)
        if self._kernels:
            best, self._where = kernels.max_pool2d_forward(x.reshape(planes), kh, kw, strides)
            return best.reshape(self._out_planes(x.shape)[0])
        out_shape, out_planes = self._out_planes(x.shape)
        best = xp.empty(out_shape, dtype=x.dtype)
        self._where = xp.empty(out_shape, dtype=xp.int32)  # offset u*kw + v of the winner
        self._pool(pool_ops.max_forward, xp, x.reshape((-1,) + x.shape[-2:]), kh, kw, *strides,
                   best.reshape(out_planes), self._where.reshape(out_planes))
        return best

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        _, (kh, kw), strides = self._planes(self._x_shape)
        if self._kernels:
            plane_shape = (self._where.shape[0], 1) + tuple(self._x_shape[-2:])
            dx = kernels.max_pool2d_backward(grad_output.reshape(self._where.shape), self._where,
                                             plane_shape, kh, kw, strides)
            return [dx.reshape(self._x_shape)]
        out_planes = self._out_planes(self._x_shape)[1]
        dx = xp.empty(self._x_shape, dtype=grad_output.dtype)
        self._pool(pool_ops.max_backward, xp, grad_output.reshape(out_planes), self._where.reshape(out_planes),
                   kh, kw, *strides, dx.reshape((-1,) + dx.shape[-2:]))
        return [dx]


class _AvgPool(_Pool):
    """The mean of each window; backward spreads each gradient equally over its window."""

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        planes, (kh, kw), strides = self._planes(x.shape)
        self._x_shape, self._kernels = x.shape, kernel_path(x)
        out_shape, out_planes = self._out_planes(x.shape)
        if self._kernels:
            return kernels.avg_pool2d_forward(x.reshape(planes), kh, kw, strides).reshape(out_shape)
        mean = xp.empty(out_shape, dtype=x.dtype)
        self._pool(pool_ops.avg_forward, xp, x.reshape((-1,) + x.shape[-2:]), kh, kw, *strides,
                   mean.reshape(out_planes))
        return mean

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        _, (kh, kw), strides = self._planes(self._x_shape)
        if self._kernels:
            plane_shape = (-1, 1) + tuple(grad_output.shape[-2:])
            dy = grad_output.reshape(plane_shape)
            dx = kernels.avg_pool2d_backward(dy, (dy.shape[0], 1) + tuple(self._x_shape[-2:]), kh, kw, strides)
            return [dx.reshape(self._x_shape)]
        out_planes = self._out_planes(self._x_shape)[1]
        dx = xp.empty(self._x_shape, dtype=grad_output.dtype)
        self._pool(pool_ops.avg_backward, xp, grad_output.reshape(out_planes), kh, kw, *strides,
                   dx.reshape((-1,) + dx.shape[-2:]))
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

    def size_formula(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) == 3:
            return f"the mean of each {shape[1]}x{shape[2]} map: {shape[0]} channels -> {shape[0]} values"
        return f"the mean over {shape[0]} steps: {shape[1]} features -> {shape[1]} values"

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


@register
class GlobalMaxPool1D(Layer):
    """Max over time (seed 004's text CNN): a sequence (T, F) -> (F,), the largest value each
    feature reaches at any step, so a filter that found its phrase anywhere in the text says so.
    Backward sends each gradient to the step of that maximum (the first, on ties)."""

    type_name = "GlobalMaxPool1D"
    category = "Pooling"
    summary = "Keeps the largest value of each feature over all steps (max over time)."

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 2:
            hint = ("; for an image use MaxPool2D, or GlobalAvgPool to average each map" if len(shape) == 3
                    else "")
            raise ShapeError(f"GlobalMaxPool1D takes the maximum over the steps of a sequence, but is fed "
                             f"{with_article(describe_shape(shape))}{hint}")
        return (shape[1],)

    def size_formula(self, in_shapes):
        steps, features = in_shapes[0]
        return f"the largest of {steps} steps: {features} features -> {features} values"

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        self._steps = x.shape[1]
        self._where = xp.argmax(x, axis=1)          # (N, F): argmax gives the first maximum
        return xp.take_along_axis(x, self._where[:, None, :], axis=1)[:, 0, :]

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        chosen = xp.arange(self._steps)[None, :, None] == self._where[:, None, :]
        return [chosen * grad_output[:, None, :]]
