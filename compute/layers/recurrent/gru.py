"""GRU (Cho's form and PyTorch's): its equations, then its forward and backward step loops."""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Setting
from gatescope.compute.layers.recurrent.base import Recurrent, common_settings, glorot, orthogonal, pin_setting


@register
class GRU(Recurrent):
    """Gated recurrent unit (Cho et al. 2014; seed 002), gates stacked ``r, z, n``::

        r_t  = sigma(x_t W_r + h_{t-1} U_r + b_r)                      reset gate
        z_t  = sigma(x_t W_z + h_{t-1} U_z + b_z)                      update gate
        form "cho" (the lectures):
        h~_t = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n)               candidate
        form "pytorch" (reset applied after the recurrent product):
        h~_t = tanh(x_t W_n + b_n + r_t * (h_{t-1} U_n + b_hn))
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    ``W`` (D, 3H), ``U`` (H, 3H), ``b`` (3H,); the pytorch form adds the recurrent candidate
    bias ``b_hn`` (H,). Parameters ``3 x H x (D + H + 1)`` (+ H).

    Update convention: as in the lectures, ``z_t`` is the share of the *new* content (z = 0
    copies the hidden state). PyTorch's ``z'`` is the share of the old state,
    ``h = (1 - z') n + z' h``, so ``z = 1 - z'``, i.e. ``sigma(-a')``. Porting PyTorch weights
    (form ``pytorch``): ``W = weight_ih_l0.T``, ``U = weight_hh_l0.T``,
    ``b = bias_ih_l0 + [bias_hh_r, bias_hh_z, 0]``, ``b_hn = bias_hh_n``, then negate the z
    block (columns H..2H) of W, U and b.

    Gate overrides: ``pin_reset``, ``pin_update`` (``pin_update=0`` keeps ``h_t = h_{t-1}``).

    PyTorch's form, per step: one GEMM ``h_{t-1} U`` (kept for backward) and one kernel, which
    adds ``b_hn``; backward one kernel and one GEMM accumulating ``d_h_gates U^T`` into the
    kernel's direct part ``dh (1 - z)``. Cho's form: GEMM ``h_{t-1} U_rz``, kernel (r, z,
    r h_{t-1}), GEMM ``(r h_{t-1}) U_n``, kernel (n, h_t), and backward mirrors it; ``U_rz`` and
    ``U_n`` are column slices of U, passed to the GEMM with their leading dimension (no copy).
    """

    type_name = "GRU"
    summary = "Gated recurrent unit: reset and update gates, no separate cell state."
    gate_names = ("reset", "update", "candidate")
    pin_letters = {"reset": "r", "update": "z"}
    settings_spec = common_settings() + (
        Setting("form", "choice", "cho", "Form",
                "cho: the lectures' candidate tanh(W x + U (r*h) + b); pytorch: r applied after U h.",
                choices=("cho", "pytorch")),
        pin_setting("reset", "Reset gate"),
        pin_setting("update", "Update gate"),
    )

    @property
    def pytorch_form(self) -> bool:
        return self.settings["form"] == "pytorch"

    def _direction_shapes(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        shapes = {"W": (d, 3 * h), "U": (h, 3 * h), "b": (3 * h,)}
        if self.pytorch_form:
            shapes["b_hn"] = (h,)
        return shapes

    def _formula_terms(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        return f"3 x {h} x ({d} + {h} + 1)", ([f"{h} recurrent candidate bias"] if self.pytorch_form else [])

    def _direction_init(self, in_shapes, rng):
        (_, d), h = in_shapes[0], self.units
        params = {"W": np.concatenate([glorot(rng, d, h, (d, h)) for _ in range(3)], axis=1),
                  "U": orthogonal(rng, h, 3), "b": np.zeros(3 * h)}
        if self.pytorch_form:
            params["b_hn"] = np.zeros(h)
        return params

    # ----------------------------------------------------------------- forward
    def _forward_direction(self, xs, n, t, sfx, reverse):
        h = self.units
        rows = (n,)
        extra = {"gates": (t,) + rows + (3 * h,)}
        if self.pytorch_form:
            extra.update(hidden=(t,) + rows + (3 * h,), b_hn=(h,))
        else:
            extra.update(reset_hidden=(t,) + rows + (h,), h_rz=rows + (2 * h,), h_n=rows + (h,))
        loops, loop = self._forward_loop(xs, n, t, sfx, reverse, 3 * h, extra)
        pre, gates, hs, u = loop.pre, loop.gates, loop.hs, loop.u
        pins = self.kernel_pins()
        steps, (po, no) = self._order(t, reverse)
        if self.pytorch_form:
            hidden, b_hn = loop.hidden, loop.b_hn
            b_hn[...] = self.params["b_hn" + sfx]

            def body():
                for s in steps:
                    kernels.gemm(hs[s + po], u, hidden[s])                     # h_{t-1} U, kept
                    kernels.gru_pytorch_forward(pre[s], hidden[s], hs[s + po], pins,
                                                out=(gates[s], hs[s + no]), b_hn=b_hn)
        else:
            reset_hidden, h_rz, h_n = loop.reset_hidden, loop.h_rz, loop.h_n

            def body():
                for s in steps:
                    kernels.gemm(hs[s + po], u[:, :2 * h], h_rz)                # h_{t-1} U_rz
                    kernels.gru_cho_forward_rz(pre[s], h_rz, hs[s + po], pins, out=(gates[s], reset_hidden[s]))
                    kernels.gemm(reset_hidden[s], u[:, 2 * h:], h_n)           # (r h_{t-1}) U_n
                    kernels.gru_cho_forward_n(pre[s], h_n, hs[s + po], gates[s], pins, out=hs[s + no])
        loop.run(body, eager=self._probe_idx is not None)
        return {"loops": loops, "h": hs, "gates": gates}

    # ----------------------------------------------------------------- backward
    def _backward_direction(self, dh_seq, cache, sfx, reverse, norms):
        """The carried dL/dh_{t-1} = the kernel's direct part + GEMMs accumulating into it,
        alternating between two buffers (a kernel's output must not overlap its input); a
        truncation cut carries nothing into the next step."""
        fwd = cache["loops"]["forward"]
        hs, gates, u = fwd.hs, fwd.gates, fwd.u
        t, h = dh_seq.shape[0], self.units
        pins = self.kernel_pins()
        steps, (po, no) = self._order(t, reverse)
        own = {"dgates": gates.shape, "carries": (2,) + dh_seq.shape[1:]}
        own.update({"dhidden": gates.shape} if self.pytorch_form else {"d_reset_hidden": dh_seq.shape[1:]})
        loop = self._gradient_in(cache["loops"], dh_seq, own)
        dh_in, dgates, carries = loop.dh_seq, loop.dgates, loop.carries
        if self.pytorch_form:
            hidden, dhidden, b_hn = fwd.hidden, loop.dhidden, fwd.b_hn

            def body():
                carried = None
                for k, s in reversed(list(enumerate(steps))):
                    out = carries[k % 2]
                    kernels.gru_pytorch_backward(dh_in[s], carried, gates[s], hs[s + po], hidden[s], pins,
                                                 out=(dgates[s], dhidden[s], out), b_hn=b_hn)
                    if norms is not None:
                        norms.record(s, dh_in[s], carried)
                    carried = None
                    if not self._cut(k):
                        kernels.gemm(dhidden[s], u.T, out, accumulate=True)    # + d_h_gates U^T
                        carried = out
        else:
            d_reset_hidden = loop.d_reset_hidden

            def body():
                carried = None
                for k, s in reversed(list(enumerate(steps))):
                    out = carries[k % 2]
                    kernels.gru_cho_backward_n(dh_in[s], carried, gates[s], hs[s + po], pins, out=(dgates[s], out))
                    kernels.gemm(dgates[s, :, 2 * h:], u[:, 2 * h:].T, d_reset_hidden)   # dL/d(r h_{t-1})
                    kernels.gru_cho_backward_r(d_reset_hidden, gates[s], hs[s + po], dgates[s], out, pins)
                    if norms is not None:
                        norms.record(s, dh_in[s], carried)
                    carried = None
                    if not self._cut(k):
                        kernels.gemm(dgates[s, :, :2 * h], u[:, :2 * h].T, out, accumulate=True)
                        carried = out
        loop.run(body, eager=norms is not None)
        self._initial_grad("h0", sfx, carries[0])         # processing index 0 is never cut
        if self.pytorch_form:
            self._recurrent_weight_grad(hs[po:po + t], dhidden, sfx)
            self.grads["b_hn" + sfx] += dhidden[..., 2 * h:].sum(axis=(0, 1))
        else:
            du = self.grads["U" + sfx]
            flat_h, flat_g = hs[po:po + t].reshape(-1, h), dgates.reshape(-1, 3 * h)
            du[:, :2 * h] += flat_h.T @ flat_g[:, :2 * h]
            du[:, 2 * h:] += fwd.reset_hidden.reshape(-1, h).T @ flat_g[:, 2 * h:]
        return dgates
