"""Merges: Add (residual connections) and Concat (joining features or channels)."""
from __future__ import annotations

from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, ShapeError


def _size(shape) -> str:
    return "x".join(str(s) for s in shape)


@register
class Add(Layer):
    """Elementwise sum of two or more inputs of the same shape: ``y = x_1 + x_2 + ...``.
    Backward hands the same gradient to every input."""

    type_name = "Add"
    category = "Merge"
    summary = "Adds its inputs element by element (a residual or skip connection)."
    n_inputs = None

    def output_shape(self, in_shapes):
        first = tuple(in_shapes[0])
        for other in in_shapes[1:]:
            if tuple(other) != first:
                raise ShapeError(f"Add needs inputs of equal shape; got {_size(first)} and {_size(other)}")
        return first

    def forward(self, inputs, training):
        self._count = len(inputs)
        total = inputs[0].copy()
        for x in inputs[1:]:
            total += x
        return total

    def backward(self, grad_output):
        return [grad_output] + [grad_output.copy() for _ in range(self._count - 1)]


@register
class Concat(Layer):
    """Joins two or more inputs along the feature axis: the last axis of vectors (F,) and
    sequences (T, F), the channel axis of images (C, H, W) and of video clips (T, C, H, W).
    Every other size must match."""

    type_name = "Concat"
    category = "Merge"
    summary = "Joins its inputs side by side: features of vectors and sequences, channels of images."
    n_inputs = None

    @staticmethod
    def _axis(rank: int) -> int:
        """The per-sample axis joined along, for inputs of ``rank``."""
        return {3: 0, 4: 1}.get(rank, rank - 1)

    def output_shape(self, in_shapes):
        first = tuple(in_shapes[0])
        for other in in_shapes[1:]:
            if len(other) != len(first):
                raise ShapeError(f"Concat needs inputs of the same kind; got {_size(first)} and {_size(other)}")
        axis = self._axis(len(first))
        what = "channel" if len(first) >= 3 else "feature"
        for other in in_shapes[1:]:
            if tuple(other[:axis]) + tuple(other[axis + 1:]) != first[:axis] + first[axis + 1:]:
                raise ShapeError(f"Concat joins along the {what} axis, so every other size must match; "
                                 f"got {_size(first)} and {_size(other)}")
        joined = sum(s[axis] for s in in_shapes)
        return first[:axis] + (joined,) + first[axis + 1:]

    def forward(self, inputs, training):
        xp = get_array_module(*inputs)
        axis = self._axis(inputs[0].ndim - 1) + 1
        self._axis_batch = axis
        self._sizes = [x.shape[axis] for x in inputs]
        return xp.concatenate(inputs, axis=axis)

    def backward(self, grad_output):
        grads, start = [], 0
        for size in self._sizes:
            index = [slice(None)] * grad_output.ndim
            index[self._axis_batch] = slice(start, start + size)
            grads.append(grad_output[tuple(index)].copy())
            start += size
        return grads
