"""Elementwise activations and softmax. Cheap, so backward recomputes from what forward kept."""
from __future__ import annotations

from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting


def sigmoid(x):
    """Logistic sigmoid as ``tanh(x/2)/2 + 1/2``, which cannot overflow (Chainer's form)."""
    xp = get_array_module(x)
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def softmax(x, axis=-1):
    """Softmax along ``axis``, shifted by the maximum so it cannot overflow."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class _Elementwise(Layer):
    category = "Dense"

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])


@register
class ReLU(_Elementwise):
    """``max(0, x)``."""

    type_name = "ReLU"
    summary = "Keeps positive values and sets negative ones to zero."

    def forward(self, inputs, training):
        self._x = inputs[0]
        return self._x * (self._x > 0)

    def backward(self, grad_output):
        return [grad_output * (self._x > 0)]


@register
class LeakyReLU(_Elementwise):
    """``x`` for x > 0, ``slope * x`` otherwise."""

    type_name = "LeakyReLU"
    summary = "Like ReLU, but negative values are scaled down instead of zeroed."
    settings_spec = (Setting("slope", "float", 0.01, "Negative slope", "Scale of negative values.", 0.0, 1.0),)

    def forward(self, inputs, training):
        x = self._x = inputs[0]
        xp = get_array_module(x)
        return xp.where(x > 0, x, x * self.settings["slope"])

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        return [xp.where(self._x > 0, grad_output, grad_output * self.settings["slope"])]


@register
class Tanh(_Elementwise):
    """``tanh(x)``; backward uses ``1 - y^2``."""

    type_name = "Tanh"
    summary = "Squashes values into -1..1."

    def forward(self, inputs, training):
        xp = get_array_module(inputs[0])
        self._y = xp.tanh(inputs[0])
        return self._y

    def backward(self, grad_output):
        return [grad_output * (1 - self._y * self._y)]


@register
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``; backward uses ``y (1 - y)``."""

    type_name = "Sigmoid"
    summary = "Squashes values into 0..1, like a gate."

    def forward(self, inputs, training):
        self._y = sigmoid(inputs[0])
        return self._y

    def backward(self, grad_output):
        return [grad_output * self._y * (1 - self._y)]


@register
class Softmax(_Elementwise):
    """``exp(x_i) / sum_j exp(x_j)`` over the last axis (the features of each sample or step)."""

    type_name = "Softmax"
    summary = "Turns scores into probabilities that sum to one."

    def forward(self, inputs, training):
        self._y = softmax(inputs[0])
        return self._y

    def backward(self, grad_output):
        y = self._y
        return [y * (grad_output - (grad_output * y).sum(axis=-1, keepdims=True))]
