"""ConvLSTM2D: the LSTM whose products are convolutions, sharing the LSTM's step loops."""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Setting, SettingsError
from gatescope.compute.layers.recurrent.base import common_settings, glorot, pin_setting
from gatescope.compute.layers.recurrent.lstm import LSTM
from gatescope.compute.ops import convlstm as conv_ops


@register
class ConvLSTM2D(LSTM):
    """Convolutional LSTM with peepholes (Shi et al. 2015; seed 004), on a clip ``(T, C, H, W)``::

        i_t = sigma(W_i * x_t + U_i * h_{t-1} + p_i o C_{t-1} + b_i)
        f_t = sigma(W_f * x_t + U_f * h_{t-1} + p_f o C_{t-1} + b_f)
        C_t = f_t o C_{t-1} + i_t o tanh(W_g * x_t + U_g * h_{t-1} + b_g)
        o_t = sigma(W_o * x_t + U_o * h_{t-1} + p_o o C_t + b_o)
        h_t = o_t o tanh(C_t)

    ``*`` is a 'same'-padded, stride-1 convolution (odd ``kernel_size`` k), ``o`` the
    elementwise product. Hidden and cell states are ``(filters, H, W)``. Parameters: ``W``
    (k, k, C, 4F) and ``U`` (k, k, F, 4F) (Keras' kernel layout; gate blocks ``i, f, g, o``
    along the last axis), ``b`` (4F,), peepholes ``p_i``, ``p_f``, ``p_o`` (F,) shared across
    positions like a bias (Shi et al. use one weight per position; per-channel keeps the
    count independent of the frame size), learned initial states (F,).

    Inside, states are rows of pixels ``(N, H*W, F)``: the LSTM kernels see N*H*W rows of F
    units, so the LSTM's step loops serve unchanged. The convolutions run as im2col + GEMM
    (``compute.ops.convlstm``): the input's for all T in one GEMM, the recurrent one per step
    (im2col is array code with a temporary, so this loop is not captured as a CUDA graph).
    """

    type_name = "ConvLSTM2D"
    summary = "LSTM whose products are convolutions: a cell state per pixel, for video clips."
    step_rank = 4
    capturable = False
    n_inputs = 1
    optional_ports = ()
    state_port = None
    port_names = ()
    state_wirable = False
    settings_spec = (
        Setting("filters", "int", 8, "Filters", "Channels F of the hidden and cell states.", 1, 1024),
        Setting("kernel_size", "int", 3, "Kernel size", "Odd k of the k x k convolutions ('same' padding).",
                1, 15),
    ) + common_settings("filters") + (
        pin_setting("input", "Input gate"),
        pin_setting("forget", "Forget gate"),
        pin_setting("output", "Output gate"),
    )

    @property
    def units(self) -> int:
        return self.settings["filters"]

    @property
    def variant(self) -> str:
        return "peephole"

    def _check_settings(self):
        if self.settings["kernel_size"] % 2 == 0:
            raise SettingsError(f"Kernel size must be odd for 'same' padding, not {self.settings['kernel_size']}")

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        self._check_settings()
        t, _, hh, ww = in_shapes[0]
        f = self._out_units()
        return (t, f, hh, ww) if self.settings["return_sequences"] else (f, hh, ww)

    def _direction_shapes(self, in_shapes):
        (_, c, _, _), f, k = in_shapes[0], self.units, self.settings["kernel_size"]
        return {"W": (k, k, c, 4 * f), "U": (k, k, f, 4 * f), "b": (4 * f,),
                "p_i": (f,), "p_f": (f,), "p_o": (f,)}

    def _formula_terms(self, in_shapes):
        (_, c, _, _), f, k = in_shapes[0], self.units, self.settings["kernel_size"]
        return f"4 x {f} x ({k}x{k}x{c} + {k}x{k}x{f} + 1)", [f"3 x {f} peepholes"]

    def _direction_init(self, in_shapes, rng):
        (_, c, _, _), f, k = in_shapes[0], self.units, self.settings["kernel_size"]
        b = np.zeros(4 * f)
        b[f:2 * f] = 1.0                                  # forget bias 1: a fresh cell remembers
        return {"W": glorot(rng, k * k * c, k * k * f, (k, k, c, 4 * f)),
                "U": glorot(rng, k * k * f, k * k * f, (k, k, f, 4 * f)), "b": b,
                "p_i": np.zeros(f), "p_f": np.zeros(f), "p_o": np.zeros(f)}

    # ----------------------------------------------------------------- layout: (N, P, F) rows
    def _rows(self, n):
        return (n, self._frame[0] * self._frame[1])

    def _time_major(self, x):
        n, t, c, hh, ww = x.shape
        self._frame = (hh, ww)
        frames = x.transpose(1, 0, 3, 4, 2).reshape(t * n, hh, ww, c)    # time-major, channels-last
        return conv_ops.im2col_same(frames, self.settings["kernel_size"])

    def _from_time_major(self, dcols, n, t):
        hh, ww = self._frame
        c = dcols.shape[1] // self.settings["kernel_size"] ** 2
        frames = conv_ops.col2im_same(dcols, (t * n, hh, ww, c), self.settings["kernel_size"])
        return frames.reshape(t, n, hh, ww, c).transpose(1, 0, 4, 2, 3)

    def _project(self, cols, sfx, out):
        super()._project(cols, sfx, out)
        # im2col of every step's h_{t-1}, kept: dU is one GEMM over all steps.
        t, n, p = out.shape[:3]
        k = self.settings["kernel_size"]
        self._hcols = getattr(self, "_hcols", {})
        self._hcols[sfx] = get_array_module(cols).empty((t, n * p, k * k * self.units), dtype=cols.dtype)

    def _recurrent_product(self, h_prev, u, out, t, sfx):
        """``out <- im2col(h_{t-1}) U``: ``h_prev`` (N*P, F) and ``out`` (N*P, 4F) as the LSTM
        loop passes them."""
        hcols = self._hcols[sfx][t]
        conv_ops.im2col_same(h_prev.reshape(-1, *self._frame, self.units), self.settings["kernel_size"], out=hcols)
        kernels.gemm(hcols, u.reshape(-1, u.shape[-1]), out)

    def _recurrent_backward(self, d_pre, u, out, t, sfx):
        """``out <- col2im(d_pre U^T)``: the gradient carried to ``h_{t-1}`` (N*P, F)."""
        hh, ww = self._frame
        dcols = d_pre @ u.reshape(-1, u.shape[-1]).T
        frames = conv_ops.col2im_same(dcols, (out.shape[0] // (hh * ww), hh, ww, self.units),
                                      self.settings["kernel_size"])
        out[...] = frames.reshape(out.shape)

    def _recurrent_weight_grad(self, h_prev_all, da_all, sfx):
        u = self.params["U" + sfx]
        hcols = self._hcols[sfx]
        self.grads["U" + sfx] += (hcols.reshape(-1, hcols.shape[-1]).T
                                  @ da_all.reshape(-1, u.shape[-1])).reshape(u.shape)

    def _public_seq(self, seq):
        t, s, _, f = seq.shape
        hh, ww = self._frame
        return seq.reshape(t, s, hh, ww, f).transpose(1, 0, 4, 2, 3)

    def _internal_seq(self, grad):
        n, t, f, hh, ww = grad.shape
        return grad.transpose(1, 0, 3, 4, 2).reshape(t, n, hh * ww, f)

    def _public_step(self, h):
        n, _, f = h.shape
        return h.reshape(n, *self._frame, f).transpose(0, 3, 1, 2)

    def _internal_step(self, grad):
        n, f = grad.shape[:2]
        return grad.transpose(0, 2, 3, 1).reshape(n, -1, f)
