"""Output heads: they end the graph, turn its output into predictions and compute the loss."""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, ShapeError, describe_shape


def class_names(text: str, count: int | None = None) -> list[str]:
    """The names a Classify block's ``class_names`` setting lists (comma-separated, blanks
    ignored). With ``count``: those names when there are exactly ``count`` of them, else
    ``class 0``, ``class 1``, ... (a list that does not fit the model's classes names none)."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if count is None or len(names) == count:
        return names
    return [f"class {i}" for i in range(count)]


class Head(Layer):
    """An output block: ``forward`` gives predictions, ``loss(targets)`` the loss and keeps
    its gradient for ``backward``."""

    category = "Output"
    task = ""

    def loss(self, targets) -> float:
        raise NotImplementedError


@register
class Classify(Head):
    """Softmax cross-entropy over classes: ``L = -mean(log softmax(z)[y])``.

    Fed a vector of C scores per sample it classifies the sample (labels of shape (N,)); fed
    a sequence (T, C) it classifies every step (labels (N, T)), as in the lectures' "hello"
    example. ``forward`` returns class probabilities: ``softmax_forward`` of
    ``compute.kernels`` (CUDA on a GPU, NumPy on the CPU), which also keeps each row's max and
    log-sum; the loss is then a gather from them (``cross_entropy_loss``, log-sum-exp on every
    path, so a badly wrong sample's loss is never capped) and the gradient
    ``(p - onehot) / rows`` (``softmax_cross_entropy_backward``): the softmax is computed once
    per batch.
    """

    type_name = "Classify"
    summary = "Classification output: softmax over the classes, trained with cross-entropy."
    task = "classification"
    settings_spec = (Setting("class_names", "str", "", "Class names",
                             "Optional comma-separated names, in label order."),)

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) not in (1, 2):
            raise ShapeError(f"Classify needs a vector of class scores (or a sequence of them), but is "
                             f"fed a {describe_shape(shape)}; add Flatten and Dense before it")
        if shape[-1] < 2:
            raise ShapeError(f"Classify needs at least 2 class scores, but is fed {shape[-1]}; "
                             "set the Dense before it to as many units as there are classes")
        return tuple(shape)

    def forward(self, inputs, training):
        logits = inputs[0]
        self._logits = logits
        flat, self._stats = kernels.softmax_forward(logits.reshape(-1, logits.shape[-1]))
        self._probs = flat.reshape(logits.shape)
        return self._probs

    def loss(self, targets):
        probs = self._probs
        labels = get_array_module(probs).asarray(targets).astype(np.int64).reshape(-1)
        logits = self._logits.reshape(-1, probs.shape[-1])
        row_loss = kernels.cross_entropy_loss(logits, self._stats, labels)
        self._grad = kernels.softmax_cross_entropy_backward(probs.reshape(logits.shape), labels).reshape(probs.shape)
        return float(row_loss.mean())

    def backward(self, grad_output=None):
        return [self._grad]


@register
class Regress(Head):
    """Mean squared error: ``L = mean((y_hat - y)^2)`` over every value; ``forward`` is the identity."""

    type_name = "Regress"
    summary = "Regression output: predicts numbers, trained with mean squared error."
    task = "regression"

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def forward(self, inputs, training):
        self._pred = inputs[0]
        return self._pred

    def loss(self, targets):
        xp = get_array_module(self._pred)
        diff = self._pred - xp.asarray(targets, dtype=self._pred.dtype).reshape(self._pred.shape)
        self._grad = 2.0 * diff / diff.size
        return float((diff * diff).mean())

    def backward(self, grad_output=None):
        return [self._grad]
