"""Conv1D and Conv2D: learned filters slid over a sequence or an image (cross-correlation).

The math lives in ``compute.ops.conv`` (Winograd F(4x4, 3x3) where it is faster, im2col + one
GEMM elsewhere); these blocks own the filters, work out padding and output sizes, and explain
in words why a shape cannot work. ``algorithm`` names the one the last forward ran.

Weights are stored as PyTorch stores them: Conv2D ``W`` (filters, channels, kh, kw),
Conv1D ``W`` (filters, channels, kernel); the bias ``b`` is (filters,).
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, ShapeError
from gatescope.compute.ops import conv as conv_ops


def _conv_settings(kernel_default: int) -> tuple[Setting, ...]:
    return (
        Setting("filters", "int", 8, "Filters", "How many filters, i.e. output channels.", 1, 4096),
        Setting("kernel_size", "int", kernel_default, "Kernel size", "Width (and height) of each filter.", 1, 64),
        Setting("stride", "int", 1, "Stride", "How many pixels the filter moves between outputs.", 1, 64),
        Setting("padding", "padding", "valid", "Padding",
                "'valid': no padding; 'same': pad so the output is ceil(input / stride) long; "
                "a number: that many zeros on every side."),
        Setting("bias", "bool", True, "Bias", "Add a learned bias to each filter's output."),
    )


class _Conv(Layer):
    """What Conv1D and Conv2D share: padding, output sizes, the parameter formula, He init."""

    category = "Convolution"

    def __init__(self, **settings):
        super().__init__(**settings)
        self._workspace: dict = {}
        self.algorithm: str | None = None     # what the last forward ran (compute.ops.conv.ALGORITHMS)

    def _pads(self, n: int) -> tuple[int, int]:
        """Zeros added (before, after) along one spatial axis of length ``n``."""
        padding, k, s = self.settings["padding"], self.settings["kernel_size"], self.settings["stride"]
        if padding == "valid":
            return 0, 0
        if padding == "same":
            return conv_ops.same_padding(n, k, s)
        return padding, padding

    def _out_sizes(self, spatial: tuple[int, ...], what: str) -> tuple[int, ...]:
        """Output size along each spatial axis; ShapeError when the kernel does not fit."""
        k, s = self.settings["kernel_size"], self.settings["stride"]
        padded = []
        for n in spatial:
            before, after = self._pads(n)
            padded.append(n + before + after)
        if any(k > p for p in padded):
            size = "x".join(str(n) for n in spatial)
            if self.settings["padding"] in ("valid", 0):
                raise ShapeError(f"kernel {k} is larger than the {size} {what}; use padding or a "
                                 "smaller kernel")
            padded_size = "x".join(str(p) for p in padded)
            raise ShapeError(f"kernel {k} is larger than the {size} {what} even padded "
                             f"({padded_size}); use more padding or a smaller kernel")
        return tuple(conv_ops.output_size(n, k, s, *self._pads(n)) for n in spatial)

    def size_formula(self, in_shapes):
        spatial = self._spatial(in_shapes[0])
        k, s = self.settings["kernel_size"], self.settings["stride"]
        lines = [conv_ops.output_size_formula(n, k, s, *self._pads(n)) for n in spatial]
        names = ("height", "width") if len(spatial) == 2 else ("length",)
        if len(lines) == 2 and spatial[0] == spatial[1]:
            return f"height and width: {lines[0]}"
        return "; ".join(f"{name}: {line}" for name, line in zip(names, lines))

    def param_formula(self, in_shapes):
        channels = self._channels(in_shapes[0])
        k, filters = self.settings["kernel_size"], self.settings["filters"]
        window = "x".join([str(k)] * self._spatial_rank + [str(channels)])
        per_filter = self._fan_in(channels)
        if self.settings["bias"]:
            return f"{filters} x ({window} + 1) = {filters * (per_filter + 1):,}"
        return f"{filters} x {window} = {filters * per_filter:,}"

    def initial_params(self, in_shapes, rng):
        channels = self._channels(in_shapes[0])
        fan_in = self._fan_in(channels)
        limit = np.sqrt(6.0 / fan_in)  # He uniform: Var(W) = 2 / fan_in, right for ReLU
        shapes = self.param_shapes(in_shapes)
        params = {"W": rng.uniform(-limit, limit, shapes["W"])}
        if self.settings["bias"]:
            params["b"] = np.zeros(shapes["b"])
        return params


@register
class Conv2D(_Conv):
    """2-D convolution (cross-correlation) of an image (C, H, W) with ``filters`` filters of
    ``kernel_size`` x ``kernel_size`` x C; output (filters, H', W') with
    ``H' = floor((H + 2p - f) / s) + 1`` ('same': ``ceil(H / s)``). Fed a video clip it filters
    every frame with the same weights."""

    type_name = "Conv2D"
    summary = "Slides learned filters over an image; each filter makes one feature map."
    step_rank = 3
    settings_spec = _conv_settings(3)
    _spatial_rank = 2

    @staticmethod
    def _channels(shape):
        return shape[0]

    @staticmethod
    def _spatial(shape):
        return tuple(shape[1:])

    def _fan_in(self, channels):
        return self.settings["kernel_size"] ** 2 * channels

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        c, h, w = in_shapes[0]
        return (self.settings["filters"],) + self._out_sizes((h, w), "input")

    def param_shapes(self, in_shapes):
        c, k, filters = in_shapes[0][0], self.settings["kernel_size"], self.settings["filters"]
        shapes = {"W": (filters, c, k, k)}
        if self.settings["bias"]:
            shapes["b"] = (filters,)
        return shapes

    def _all_pads(self, h, w):
        return self._pads(h) + self._pads(w)

    def forward(self, inputs, training):
        x = inputs[0]
        self._x_shape = x.shape
        self._pad_sizes = self._all_pads(x.shape[2], x.shape[3])
        w, stride = self.params["W"], self.settings["stride"]
        self.algorithm = conv_ops.algorithm(x, w.shape, stride, self._pad_sizes)
        y, self._saved = conv_ops.conv2d_forward(x, w, self.params.get("b"), stride, self._pad_sizes,
                                                 self._workspace, self.algorithm)
        return y

    def backward(self, grad_output):
        dx, dw, db = conv_ops.conv2d_backward(grad_output, self._saved, self.params["W"], self._x_shape,
                                              self.settings["stride"], self._pad_sizes,
                                              workspace=self._workspace)
        self.grads["W"] += dw
        if self.settings["bias"]:
            self.grads["b"] += db
        return [dx]


@register
class Conv1D(_Conv):
    """1-D convolution along time of a sequence (T, F), read as (length, channels): ``filters``
    filters of ``kernel_size`` steps x F channels; output (T', filters) with
    ``T' = floor((T + 2p - f) / s) + 1`` ('same': ``ceil(T / s)``)."""

    type_name = "Conv1D"
    summary = "Slides learned filters along a sequence; each filter makes one output feature per step."
    step_rank = 2
    settings_spec = _conv_settings(3)
    _spatial_rank = 1

    @staticmethod
    def _channels(shape):
        return shape[1]

    @staticmethod
    def _spatial(shape):
        return (shape[0],)

    def _fan_in(self, channels):
        return self.settings["kernel_size"] * channels

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        t, _ = in_shapes[0]
        return self._out_sizes((t,), "sequence") + (self.settings["filters"],)

    def param_shapes(self, in_shapes):
        f, k, filters = in_shapes[0][1], self.settings["kernel_size"], self.settings["filters"]
        shapes = {"W": (filters, f, k)}
        if self.settings["bias"]:
            shapes["b"] = (filters,)
        return shapes

    def forward(self, inputs, training):
        x = inputs[0]
        n, t, f = x.shape
        # A sequence (N, T, F) is an image of height 1: (N, C=F, 1, W=T), as a strided view.
        image = x.transpose(0, 2, 1)[:, :, None, :]
        self._x_shape = image.shape
        self._pad_sizes = (0, 0) + self._pads(t)
        w = self.params["W"]
        self.algorithm = conv_ops.IM2COL                   # a 1 x k kernel
        y, self._saved = conv_ops.conv2d_forward(image, w[:, :, None, :], self.params.get("b"),
                                                 self.settings["stride"], self._pad_sizes, self._workspace,
                                                 self.algorithm)
        return y[:, :, 0, :].transpose(0, 2, 1).copy()  # (N, filters, 1, T') -> (N, T', filters)

    def backward(self, grad_output):
        grad_image = grad_output.transpose(0, 2, 1)[:, :, None, :]
        w = self.params["W"]
        dx, dw, db = conv_ops.conv2d_backward(grad_image, self._saved, w[:, :, None, :], self._x_shape,
                                              self.settings["stride"], self._pad_sizes,
                                              workspace=self._workspace)
        self.grads["W"] += dw[:, :, 0, :]
        if self.settings["bias"]:
            self.grads["b"] += db
        return [dx[:, :, 0, :].transpose(0, 2, 1).copy()]
