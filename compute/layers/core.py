"""Input, Dense, Flatten, Reshape, Dropout, TimeSlice and RepeatSteps."""
from __future__ import annotations

import numpy as np

from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, ShapeError, describe_shape, with_article


@register
class Input(Layer):
    """Where samples enter: an image (C, H, W), a vector (F), a sequence (T, F) or a clip (T, C, H, W).

    The preprocessing settings say how raw video frames become this shape (resize, colour or
    grey, scale); a model fed arrays ignores them.
    """

    type_name = "Input"
    category = "Input"
    summary = "Where samples enter the model: an image, a vector, a sequence or a video clip."
    n_inputs = 0
    settings_spec = (
        Setting("shape", "shape", (1, 8, 8), "Shape",
                "Per-sample shape: (C, H, W) image, (F,) vector, (T, F) sequence, (T, C, H, W) clip."),
        Setting("normalize", "choice", "none", "Normalise frames",
                "How raw video frames are scaled before they enter: none, 0..1, or -1..1.",
                choices=("none", "unit", "symmetric")),
        Setting("clip_stride", "int", 1, "Clip stride",
                "For video: how many frames the window moves between predictions.", 1, 1000),
    )

    def output_shape(self, in_shapes):
        return tuple(self.settings["shape"])

    def forward(self, inputs, training):
        return inputs[0]

    def backward(self, grad_output):
        return []


@register
class Dense(Layer):
    """Fully connected: ``y = x W + b`` with W of shape (D, units)."""

    type_name = "Dense"
    category = "Dense"
    summary = "Fully connected layer: every output is a weighted sum of every input, plus a bias."
    step_rank = 1
    settings_spec = (
        Setting("units", "int", 10, "Units", "How many outputs.", 1, 65536),
        Setting("bias", "bool", True, "Bias", "Add a learned bias to each output."),
    )

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        return (self.settings["units"],)

    def param_shapes(self, in_shapes):
        (d,), units = in_shapes[0], self.settings["units"]
        shapes = {"W": (d, units)}
        if self.settings["bias"]:
            shapes["b"] = (units,)
        return shapes

    def param_formula(self, in_shapes):
        (d,), units = in_shapes[0], self.settings["units"]
        if self.settings["bias"]:
            return f"{units} x ({d} + 1) = {units * (d + 1):,}"
        return f"{units} x {d} = {units * d:,}"

    def initial_params(self, in_shapes, rng):
        (d,), units = in_shapes[0], self.settings["units"]
        limit = np.sqrt(6.0 / (d + units))  # Glorot uniform
        params = {"W": rng.uniform(-limit, limit, (d, units))}
        if self.settings["bias"]:
            params["b"] = np.zeros(units)
        return params

    def forward(self, inputs, training):
        x = inputs[0]
        self._x = x
        y = x @ self.params["W"]
        if self.settings["bias"]:
            y += self.params["b"]
        return y

    def backward(self, grad_output):
        self.grads["W"] += self._x.T @ grad_output
        if self.settings["bias"]:
            self.grads["b"] += grad_output.sum(axis=0)
        return [grad_output @ self.params["W"].T]


@register
class Flatten(Layer):
    """Flattens each sample to a vector. A video clip is flattened frame by frame, keeping time."""

    type_name = "Flatten"
    category = "Dense"
    summary = "Turns each sample into one long vector (a video clip: each frame into a vector)."

    def time_distributed(self, in_shapes):
        return len(in_shapes[0]) == 4

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) < 2:
            raise ShapeError(f"Flatten is fed a {describe_shape(shape)}, which is flat already; "
                             "remove the block")
        return (int(np.prod(shape)),)

    def forward(self, inputs, training):
        x = inputs[0]
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        return [grad_output.reshape(self._shape)]


@register
class Reshape(Layer):
    """Gives each sample another shape holding the same values in the same order (row-major, as
    NumPy's ``reshape``): a vector of 40 becomes a sequence of 40 steps of one feature with shape
    (40, 1), so vectors can feed a Conv1D or a recurrent block. Backward reshapes the gradient back."""

    type_name = "Reshape"
    category = "Dense"
    summary = "Gives each sample a new shape with the same values: a vector of 40 as 40 steps of 1 feature."
    settings_spec = (
        Setting("shape", "shape", (8, 8), "Shape",
                "The new per-sample shape; its sizes must multiply to the values of each sample "
                "(a vector of 40: 40, 1 for a sequence, 1, 5, 8 for an image)."),
    )

    def output_shape(self, in_shapes):
        shape, target = tuple(in_shapes[0]), tuple(self.settings["shape"])
        have, want = int(np.prod(shape)), int(np.prod(target))
        if have != want:
            example = f"{have}, 1" if len(shape) == 1 else ", ".join(map(str, shape))
            raise ShapeError(f"Reshape to {'x'.join(map(str, target))} needs {want:,} values per sample, but is "
                             f"fed {with_article(describe_shape(shape))} ({have:,} values); set its shape to sizes "
                             f"that multiply to {have:,}, such as {example}")
        return target

    def forward(self, inputs, training):
        x = inputs[0]
        self._shape = x.shape
        return x.reshape((x.shape[0],) + tuple(self.settings["shape"]))

    def backward(self, grad_output):
        return [grad_output.reshape(self._shape)]


@register
class Dropout(Layer):
    """Inverted dropout: in training each value is zeroed with probability ``rate`` and the rest
    scaled by 1 / (1 - rate); at inference it passes values through unchanged."""

    type_name = "Dropout"
    category = "Dense"
    summary = "Randomly silences a share of the values while training, so the model cannot rely on any one."
    settings_spec = (Setting("rate", "float", 0.5, "Rate", "Share of values dropped in training.", 0.0, 0.95),)

    def __init__(self, **settings):
        super().__init__(**settings)
        self._rng = np.random.default_rng(0)

    def set_rng(self, rng):
        self._rng = rng

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def forward(self, inputs, training):
        x = inputs[0]
        rate = self.settings["rate"]
        if not training or rate == 0.0:
            self._mask = None
            return x
        xp = get_array_module(x)
        keep = self._rng.random(x.shape) >= rate  # drawn on the host so CPU and GPU runs agree
        self._mask = xp.asarray(keep, dtype=x.dtype) / (1.0 - rate)
        return x * self._mask

    def backward(self, grad_output):
        if self._mask is None:
            return [grad_output]
        return [grad_output * self._mask]


@register
class TimeSlice(Layer):
    """Steps ``start`` to ``start + length`` of a sequence (T, F) (or of a clip), so one Input
    can carry two sequences one after the other: an encoder-decoder's question and the answer
    its decoder reads while training (teacher forcing). Backward puts the gradient back at those
    steps and zeros elsewhere."""

    type_name = "TimeSlice"
    category = "Dense"
    summary = "Keeps a run of timesteps of a sequence: steps start to start + length."
    settings_spec = (
        Setting("start", "int", 0, "Start", "The first step kept (0 is the first step of the sequence).", 0,
                1_000_000),
        Setting("length", "int", 0, "Length", "How many steps are kept; 0 keeps every step from Start on.", 0,
                1_000_000),
    )

    def _span(self, steps: int) -> tuple[int, int]:
        start, length = self.settings["start"], self.settings["length"]
        return start, (steps if length == 0 else start + length)

    def output_shape(self, in_shapes):
        shape = tuple(in_shapes[0])
        if len(shape) < 2:
            raise ShapeError(f"TimeSlice keeps timesteps of a sequence, but is fed "
                             f"{with_article(describe_shape(shape))}, which has no time axis")
        start, stop = self._span(shape[0])
        if start >= shape[0] or stop > shape[0]:
            raise ShapeError(f"TimeSlice keeps steps {start} to {stop - 1}, but the sequence has {shape[0]} steps "
                             f"(0 to {shape[0] - 1}); lower Start or Length")
        return (stop - start,) + shape[1:]

    def size_formula(self, in_shapes):
        start, stop = self._span(in_shapes[0][0])
        return f"steps {start} to {stop - 1} of {in_shapes[0][0]}: {stop - start} steps"

    def forward(self, inputs, training):
        x = inputs[0]
        self._shape = x.shape
        start, stop = self._span(x.shape[1])
        return x[:, start:stop].copy()

    def backward(self, grad_output):
        dx = get_array_module(grad_output).zeros(self._shape, dtype=grad_output.dtype)
        start, stop = self._span(self._shape[1])
        dx[:, start:stop] = grad_output
        return [dx]


@register
class RepeatSteps(Layer):
    """A vector (F,) repeated as a sequence of ``steps`` equal steps (steps, F): how one input
    (an image's features) becomes the input of every step of a recurrent decoder, one-to-many.
    Backward sums the gradients of all steps."""

    type_name = "RepeatSteps"
    category = "Dense"
    summary = "Repeats a vector at every step of a sequence, so one input can feed a recurrent decoder."
    settings_spec = (Setting("steps", "int", 8, "Steps", "How many steps the sequence has.", 1, 100_000),)

    def output_shape(self, in_shapes):
        shape = tuple(in_shapes[0])
        if len(shape) != 1:
            raise ShapeError(f"RepeatSteps repeats a vector, but is fed {with_article(describe_shape(shape))}; "
                             "put Flatten or GlobalAvgPool before it")
        return (self.settings["steps"], shape[0])

    def size_formula(self, in_shapes):
        return f"{in_shapes[0][0]} values at each of {self.settings['steps']} steps"

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        return xp.repeat(x[:, None, :], self.settings["steps"], axis=1)

    def backward(self, grad_output):
        return [grad_output.sum(axis=1)]
