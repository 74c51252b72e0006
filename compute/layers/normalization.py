"""BatchNorm: one block for vectors, sequences and images.

One registered type, ``BatchNorm``, rather than BatchNorm1D/BatchNorm2D: the block reads the
kind of tensor it is fed. A vector (F,) is normalised per feature over the batch; a sequence
(T, F) per feature over the batch and time; an image (C, H, W) per channel over the batch and
the pixels; a video clip (T, C, H, W) frame by frame, with one set of statistics per channel.

Training:   ``x_hat = (x - mean_B) / sqrt(var_B + eps)``, ``y = gamma * x_hat + beta``, with
the batch's mean and (biased) variance; then ``running = momentum * running + (1 - momentum)
* batch`` (the running variance takes the unbiased batch variance, as PyTorch does).
Inference:  the same with the running mean and variance instead of the batch's.

The running statistics live in ``params`` (so they are saved with the weights) and are named
in ``buffers``, so the optimizer never updates them from gradients.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, ShapeError, describe_shape


@register
class BatchNorm(Layer):
    """Batch normalisation with a learned scale ``gamma`` and shift ``beta`` per feature or channel."""

    type_name = "BatchNorm"
    category = "Dense"
    summary = "Rescales each feature (or channel) to mean 0 and variance 1 over the batch, then learns a scale and shift."
    buffers = ("running_mean", "running_var")
    settings_spec = (
        Setting("momentum", "float", 0.9, "Momentum",
                "How much of the running mean and variance is kept at each training step.", 0.0, 0.999),
        Setting("epsilon", "float", 1e-5, "Epsilon", "Added to the variance so it is never divided by zero.",
                1e-12, 1.0),
    )

    def time_distributed(self, in_shapes):
        return len(in_shapes[0]) == 4

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) not in (1, 2, 3):
            raise ShapeError(f"BatchNorm needs a vector, a sequence or an image, but is fed a {describe_shape(shape)}")
        return tuple(shape)

    @staticmethod
    def _features(shape):
        """How many means and variances: channels of an image, features of a vector or sequence."""
        return shape[0] if len(shape) == 3 else shape[-1]

    def param_shapes(self, in_shapes):
        f = (self._features(in_shapes[0]),)
        return {"gamma": f, "beta": f, "running_mean": f, "running_var": f}

    def param_formula(self, in_shapes):
        f = self._features(in_shapes[0])
        return f"4 x {f} = {4 * f:,} ({2 * f:,} trainable scale and shift, {2 * f:,} running statistics)"

    def initial_params(self, in_shapes, rng):
        f = self._features(in_shapes[0])
        return {"gamma": np.ones(f), "beta": np.zeros(f), "running_mean": np.zeros(f), "running_var": np.ones(f)}

    @staticmethod
    def _layout(ndim):
        """(axes statistics are taken over, shape that broadcasts a per-feature vector) for batch-first ``ndim``."""
        if ndim == 4:
            return (0, 2, 3), (1, -1, 1, 1)
        return tuple(range(ndim - 1)), (1,) * (ndim - 1) + (-1,)

    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        axes, bshape = self._layout(x.ndim)
        eps = self.settings["epsilon"]
        if training:
            mean = x.mean(axis=axes)
            centred = x - mean.reshape(bshape)
            var = (centred * centred).mean(axis=axes)
            count = x.size // mean.size
            momentum = self.settings["momentum"]
            unbiased = var * (count / max(count - 1, 1))
            # In place, so anything holding these arrays (the saved state, the optimizer) sees the update.
            self.params["running_mean"] *= momentum
            self.params["running_mean"] += (1 - momentum) * mean
            self.params["running_var"] *= momentum
            self.params["running_var"] += (1 - momentum) * unbiased
        else:
            centred = x - self.params["running_mean"].reshape(bshape)
            var = self.params["running_var"]
        inv_std = 1.0 / xp.sqrt(var + eps)
        x_hat = centred * inv_std.reshape(bshape)
        self._x_hat, self._inv_std, self._training = x_hat, inv_std, training
        return x_hat * self.params["gamma"].reshape(bshape) + self.params["beta"].reshape(bshape)

    def backward(self, grad_output):
        axes, bshape = self._layout(grad_output.ndim)
        x_hat = self._x_hat
        self.grads["gamma"] += (grad_output * x_hat).sum(axis=axes)
        self.grads["beta"] += grad_output.sum(axis=axes)
        grad_x_hat = grad_output * self.params["gamma"].reshape(bshape)
        inv_std = self._inv_std.reshape(bshape)
        if not self._training:
            return [grad_x_hat * inv_std]  # statistics are constants at inference
        # The batch mean and variance depend on x too:
        # dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)).
        mean_grad = grad_x_hat.mean(axis=axes, keepdims=True)
        mean_grad_x_hat = (grad_x_hat * x_hat).mean(axis=axes, keepdims=True)
        return [inv_std * (grad_x_hat - mean_grad - x_hat * mean_grad_x_hat)]
