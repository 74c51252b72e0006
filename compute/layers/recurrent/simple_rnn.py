"""SimpleRNN: the Elman cell, its equations, then its forward and backward step loops."""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Setting
from gatescope.compute.layers.recurrent.base import Recurrent, common_settings, glorot, orthogonal


@register
class SimpleRNN(Recurrent):
    """Elman RNN (seed 003)::

        h_t = act(x_t W + h_{t-1} U + b),   act = tanh | relu

    ``W`` (D, H) is the input projection and ``U`` (H, H) the recurrent matrix; the lectures
    write the same cell as ``U x_t + W h_{t-1}``, so their U is our W and their W our U (the
    naming is shared with LSTM and GRU, whose layout is a contract). Parameters:
    ``1 x H x (D + H + 1)``.

    A step is one GEMM ``h_{t-1} U`` and one kernel (``simple_rnn_forward``); backward, one
    kernel (adding the gradient from above and the one carried from step t+1) and one GEMM
    ``d_pre U^T``.
    """

    type_name = "SimpleRNN"
    summary = "Plain (Elman) recurrent layer: the new hidden state mixes the input and the previous state."
    settings_spec = common_settings() + (
        Setting("activation", "choice", "tanh", "Activation", "tanh, or relu (unbounded; may explode).",
                choices=("tanh", "relu")),
    )

    def _direction_shapes(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        return {"W": (d, h), "U": (h, h), "b": (h,)}

    def _formula_terms(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        return f"1 x {h} x ({d} + {h} + 1)", []

    def _direction_init(self, in_shapes, rng):
        (_, d), h = in_shapes[0], self.units
        return {"W": glorot(rng, d, h, (d, h)), "U": orthogonal(rng, h, 1), "b": np.zeros(h)}

    # ----------------------------------------------------------------- forward
    def _forward_direction(self, xs, n, t, sfx, reverse):
        act = self.settings["activation"]
        loops, loop = self._forward_loop(xs, n, t, sfx, reverse, self.units, {"rec": (n, self.units)})
        pre, hs, rec, u = loop.pre, loop.hs, loop.rec, loop.u
        steps, (po, no) = self._order(t, reverse)

        def body():
            for s in steps:
                kernels.gemm(hs[s + po], u, rec)                            # h_{t-1} U
                kernels.simple_rnn_forward(pre[s], rec, act, out=hs[s + no])
        loop.run(body, eager=self._probe_idx is not None)
        return {"loops": loops, "h": hs}

    # ----------------------------------------------------------------- backward
    def _backward_direction(self, dh_seq, cache, sfx, reverse, norms):
        hs, u = cache["h"], cache["loops"]["forward"].u
        t = dh_seq.shape[0]
        act = self.settings["activation"]
        steps, (po, no) = self._order(t, reverse)
        loop = self._gradient_in(cache["loops"], dh_seq, {"da": dh_seq.shape, "carry": dh_seq.shape[1:]})
        dh_in, da, carry = loop.dh_seq, loop.da, loop.carry

        def body():
            carried = None                                   # nothing flows into h_T
            for k, s in reversed(list(enumerate(steps))):
                kernels.simple_rnn_backward(dh_in[s], carried, hs[s + no], act, out=da[s])
                if norms is not None:
                    norms.record(s, dh_in[s], carried)
                carried = None
                if not self._cut(k):
                    kernels.gemm(da[s], u.T, carry)              # dL/dh_{t-1} = d_pre U^T
                    carried = carry
        loop.run(body, eager=norms is not None)
        # Processing index 0 (the last step run) is never cut: carry is dL/dh of the initial state.
        self._initial_grad("h0", sfx, carry)
        self._recurrent_weight_grad(hs[po:po + t], da, sfx)
        return da
