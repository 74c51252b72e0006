"""LSTM (standard, peephole, coupled): its equations, then its forward and backward step loops."""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Setting, SettingsError
from gatescope.compute.layers.recurrent.base import (Recurrent, by_step, common_settings, flat, glorot,
                                                     orthogonal, pin_setting)


@register
class LSTM(Recurrent):
    """Long short-term memory (seed 002, Graves' "vanilla" LSTM with a forget gate)::

        i_t  = sigma(x_t W_i + h_{t-1} U_i + b_i)          input gate
        f_t  = sigma(x_t W_f + h_{t-1} U_f + b_f)          forget gate
        C~_t = tanh(x_t W_g + h_{t-1} U_g + b_g)           candidate (block g)
        C_t  = f_t * C_{t-1} + i_t * C~_t                  cell state
        o_t  = sigma(x_t W_o + h_{t-1} U_o + b_o)          output gate
        h_t  = o_t * tanh(C_t)                             hidden state

    Gate layout (contract, PyTorch's order): ``W`` (D, 4H), ``U`` (H, 4H) and ``b`` (4H,) stack
    the blocks ``i, f, g, o``. Porting PyTorch weights: ``W = weight_ih_l0.T``,
    ``U = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``.

    ``variant``:

    * ``standard``: the equations above; ``4 x H x (D + H + 1)`` parameters.
    * ``peephole`` (Gers & Schmidhuber 2000): the gates also see the cell state through
      per-unit (diagonal) vectors ``p_i``, ``p_f``, ``p_o`` (H,):
      ``i_t = sigma(... + p_i * C_{t-1})``, ``f_t = sigma(... + p_f * C_{t-1})``,
      ``o_t = sigma(... + p_o * C_t)``. They start at zero (a standard LSTM).
    * ``coupled``: one gate decides both forgetting and writing:
      ``C_t = f_t * C_{t-1} + (1 - f_t) * C~_t``. There is no input-gate block: ``W`` (D, 3H),
      ``U`` (H, 3H), ``b`` (3H,) stack ``f, g, o``; the input gate ``i_t = 1 - f_t`` is shown
      in probes but has no weights, and pinning the forget gate pins both (``pin_input``
      must stay ``learned``).

    ``forget_bias_init`` (default 1.0) is the initial forget-gate bias, so a fresh LSTM keeps
    its cell state (Jozefowicz et al. 2015). Gate overrides: ``pin_input``, ``pin_forget``,
    ``pin_output``; ``pin_forget=1`` with ``pin_input=0`` keeps the cell state exactly.

    A step is one GEMM ``h_{t-1} U`` and one kernel (``lstm_forward``: every gate, C_t and
    h_t); backward, one kernel (``lstm_backward``, which adds dL/dh from above and the part
    carried from step t+1 itself) and one GEMM ``d_pre U^T``. dU, dW and the peephole
    gradients are one call each over all steps.
    """

    type_name = "LSTM"
    summary = "Long short-term memory: a cell state guarded by input, forget and output gates."
    has_cell = True
    gate_names = ("input", "forget", "candidate", "output")
    state_names = ("h0", "c0")
    pin_letters = {"input": "i", "forget": "f", "output": "o"}
    settings_spec = common_settings() + (
        Setting("variant", "choice", "standard", "Variant",
                "standard; peephole (gates see the cell state); coupled (input gate = 1 - forget gate).",
                choices=("standard", "peephole", "coupled")),
        Setting("forget_bias_init", "float", 1.0, "Forget bias init",
                "Initial bias of the forget gate; 1 makes a fresh LSTM remember.", -10.0, 10.0),
        pin_setting("input", "Input gate"),
        pin_setting("forget", "Forget gate"),
        pin_setting("output", "Output gate"),
    )

    @property
    def variant(self) -> str:
        return self.settings["variant"]

    def _n_blocks(self) -> int:
        return len(kernels.LSTM_GATES[self.variant])

    def _check_settings(self):
        if self.variant == "coupled" and self.settings["pin_input"] != "learned":
            raise SettingsError("a coupled LSTM has no input gate of its own (it is 1 - forget gate); "
                                "pin the forget gate instead, and leave Input gate on learned")

    def _direction_shapes(self, in_shapes):
        (_, d), h, g = in_shapes[0], self.units, self._n_blocks()
        shapes = {"W": (d, g * h), "U": (h, g * h), "b": (g * h,)}
        if self.variant == "peephole":
            shapes.update(p_i=(h,), p_f=(h,), p_o=(h,))
        return shapes

    def _formula_terms(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        extras = [f"3 x {h} peepholes"] if self.variant == "peephole" else []
        return f"{self._n_blocks()} x {h} x ({d} + {h} + 1)", extras

    def _direction_init(self, in_shapes, rng):
        (_, d), h, g = in_shapes[0], self.units, self._n_blocks()
        b = np.zeros(g * h)
        f = kernels.LSTM_GATES[self.variant].index("f")
        b[f * h:(f + 1) * h] = self.settings["forget_bias_init"]
        params = {"W": np.concatenate([glorot(rng, d, h, (d, h)) for _ in range(g)], axis=1),
                  "U": orthogonal(rng, h, g), "b": b}
        if self.variant == "peephole":
            params.update(p_i=np.zeros(h), p_f=np.zeros(h), p_o=np.zeros(h))
        return params

    # ----------------------------------------------------------------- the recurrent product
    def _recurrent_product(self, h_prev, u, out, t, sfx):
        """``out <- h_{t-1} U`` (ConvLSTM2D: a convolution); all (B, .) matrices."""
        kernels.gemm(h_prev, u, out)

    def _recurrent_backward(self, d_pre, u, out, t, sfx):
        """``out <- d_pre U^T``: the gradient carried to ``h_{t-1}``."""
        kernels.gemm(d_pre, u.T, out)

    # ----------------------------------------------------------------- forward
    def _forward_direction(self, xs, n, t, sfx, reverse):
        h, g = self.units, self._n_blocks() * self.units
        rows = self._rows(n)
        extra = {"gates": (t,) + rows + (g,), "cs": (t + 1,) + rows + (h,), "rec": rows + (g,)}
        if self.variant == "peephole":
            extra["peephole"] = (3, h)
        loops, loop = self._forward_loop(xs, n, t, sfx, reverse, g, extra)
        pre, gates, hs, cs, rec, u = loop.pre, loop.gates, loop.hs, loop.cs, loop.rec, loop.u
        self._initial("c0", sfx, cs[t if reverse else 0])
        peephole = None
        if self.variant == "peephole":
            peephole = loop.peephole
            for k, gate in enumerate("ifo"):
                peephole[k] = self.params[f"p_{gate}{sfx}"]
        variant, pins = self.variant, self.kernel_pins()
        steps, (po, no) = self._order(t, reverse)
        pre_t, gates_t, hs_t, cs_t, rec_b = by_step(pre), by_step(gates), by_step(hs), by_step(cs), flat(rec)

        def body():
            for s in steps:
                self._recurrent_product(hs_t[s + po], u, rec_b, s, sfx)
                kernels.lstm_forward(pre_t[s], rec_b, cs_t[s + po], peephole, variant, pins,
                                     out=(gates_t[s], cs_t[s + no], hs_t[s + no]))
        loop.run(body, eager=self._probe_idx is not None)
        return {"loops": loops, "h": hs, "c": cs, "gates": gates}

    # ----------------------------------------------------------------- backward
    def _backward_direction(self, dh_seq, cache, sfx, reverse, norms):
        """dL/dC alternates between two buffers (a kernel's output must not overlap its input);
        a truncation cut passes nothing carried into the next step."""
        fwd = cache["loops"]["forward"]
        hs, cs, gates, u = fwd.hs, fwd.cs, fwd.gates, fwd.u
        peephole = fwd.peephole if self.variant == "peephole" else None
        t = dh_seq.shape[0]
        state = dh_seq.shape[1:]
        variant, pins = self.variant, self.kernel_pins()
        steps, (po, no) = self._order(t, reverse)
        loop = self._gradient_in(cache["loops"], dh_seq, {"dgates": gates.shape, "carry": state,
                                                           "dcs": (2,) + state, "dc_final": state})
        dh_in, dgates, carry, dcs, dc_final = loop.dh_seq, loop.dgates, loop.carry, loop.dcs, loop.dc_final
        # dL/dC_T: from the block this one handed its state to, else zero (a buffer either way,
        # so a captured loop replays for both)
        dc_final[...] = 0 if cache.get("dc_final") is None else cache["dc_final"].reshape(state)
        dc_total = None if norms is None else get_array_module(dh_seq).empty(state, dh_seq.dtype)
        dh_t, gates_t, cs_t = by_step(dh_in), by_step(gates), by_step(cs)
        dgates_t, dcs_t = by_step(dgates), by_step(dcs)
        carry_b, dc_total_b = flat(carry), None if dc_total is None else flat(dc_total)

        def body():
            carried, dc_next = None, flat(dc_final)           # dL/dh_T arrives with dh_seq's last step
            for k, s in reversed(list(enumerate(steps))):
                dc_prev = dcs_t[k % 2]
                kernels.lstm_backward(dh_t[s], carried, dc_next, gates_t[s], cs_t[s + po], cs_t[s + no], peephole,
                                      variant, pins, out=(dgates_t[s], dc_prev), dc_total=dc_total_b)
                if norms is not None:
                    norms.record(s, dh_in[s], carried, dc_total)
                carried = dc_next = None
                if not self._cut(k):
                    self._recurrent_backward(dgates_t[s], u, carry_b, s, sfx)       # dL/dh_{t-1}
                    carried, dc_next = carry_b, dc_prev
        loop.run(body, eager=norms is not None)
        # Processing index 0 (the last step run) is never cut: carry holds dL/dh of the initial
        # state and dcs[0] its dL/dC.
        self._initial_grad("h0", sfx, carry)
        self._initial_grad("c0", sfx, dcs[0])
        self._recurrent_weight_grad(hs[po:po + t], dgates, sfx)
        if peephole is not None:
            grads = get_array_module(dgates).zeros((3, self.units), dgates.dtype)
            kernels.lstm_peephole_grad(flat(dgates), flat(cs[po:po + t]), flat(cs[no:no + t]), grads)
            for k, gate in enumerate("ifo"):
                self.grads[f"p_{gate}{sfx}"] += grads[k]
        return dgates

    def _probe_gate_blocks(self, gates_sel):
        h = self.units
        if self.variant != "coupled":
            return super()._probe_gate_blocks(gates_sel)
        f = gates_sel[..., :h]
        return {"input": 1 - f, "forget": f, "candidate": gates_sel[..., h:2 * h],
                "output": gates_sel[..., 2 * h:3 * h]}
