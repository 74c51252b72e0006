"""The LSTM's gate math, one step forward and backward, and its peephole weight gradients:
the kernel contract for ``lstm.cu``, its numba kernels and their NumPy twins.

Layout (contract): a step's pre-activations are ``(B, G*U)``, gate-major per sample; the
standard and peephole LSTMs stack ``i, f, g, o`` (G = 4), the coupled LSTM ``f, g, o`` (G = 3;
its input gate is ``1 - f``). States are ``(B, U)``; peephole weights one ``(3, U)`` array
``w_ci, w_cf, w_co`` (``i`` and ``f`` see ``C_{t-1}``, ``o`` sees ``C_t``). A ConvLSTM's pixel
rows are rows of this matrix (B = N*H*W, U = F). Each function runs the CUDA kernel on the
device, else the numba kernel (float32) or the NumPy twin (see ``runtime``).

The numba kernels walk the batch row by row and take one 1-D view per gate block before the
unit loop: indexing ``a[b, u]`` and ``a[b, units + u]`` in one 2-D array kept LLVM from
vectorising (121 us against 20 us for a cache-hot step, issue 16). ``peephole is None`` is
decided when numba compiles (a separate specialisation), so the standard LSTM pays nothing for
the peephole terms (they cost about 20% when present).
"""
from __future__ import annotations

from gatescope.compute import jit
from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.kernels.common import (ONE, blocks, pinned, pinned_grad, pinned_grad_twin,
                                              pinned_twin, sigmoid, sigmoid_twin, tanh)

LSTM_VARIANTS = {"standard": 0, "peephole": 1, "coupled": 2}
LSTM_GATES = {"standard": "ifgo", "peephole": "ifgo", "coupled": "fgo"}


# --------------------------------------------------------------------------- forward

def _forward_twin(pre, rec, c_prev, peephole, gates, c, h, pins):
    """The standard (``peephole`` None) or peephole LSTM step, as array code (see ``lstm.cu``)."""
    xp = get_array_module(pre)
    pin_i, pin_f, pin_g, pin_o = (float(p) for p in pins)
    a_i, a_f, a_g, a_o = blocks(pre + rec, 4)
    if peephole is not None:
        a_i = a_i + peephole[0] * c_prev
        a_f = a_f + peephole[1] * c_prev
    i = pinned_twin(xp, sigmoid_twin(xp, a_i), pin_i)
    f = pinned_twin(xp, sigmoid_twin(xp, a_f), pin_f)
    g = pinned_twin(xp, xp.tanh(a_g), pin_g)
    c[...] = f * c_prev + i * g                          # C_t = f C_{t-1} + i g
    if peephole is not None:
        a_o = a_o + peephole[2] * c                      # the output gate sees the new C_t
    o = pinned_twin(xp, sigmoid_twin(xp, a_o), pin_o)
    gates[...] = xp.concatenate([i, f, g, o], axis=-1)
    h[...] = o * xp.tanh(c)


@jit.kernel(twin=_forward_twin)
def _forward(pre, rec, c_prev, peephole, gates, c, h, pins):
    batch, units = c_prev.shape
    pin_i, pin_f, pin_g, pin_o = pins[0], pins[1], pins[2], pins[3]
    if peephole is not None:
        w_ci, w_cf, w_co = peephole[0], peephole[1], peephole[2]
    for b in range(batch):
        a_i, a_f, a_g, a_o = pre[b, :units], pre[b, units:2 * units], pre[b, 2 * units:3 * units], pre[b, 3 * units:]
        r_i, r_f, r_g, r_o = rec[b, :units], rec[b, units:2 * units], rec[b, 2 * units:3 * units], rec[b, 3 * units:]
        out_i, out_f = gates[b, :units], gates[b, units:2 * units]
        out_g, out_o = gates[b, 2 * units:3 * units], gates[b, 3 * units:]
        cp, c_t, h_t = c_prev[b], c[b], h[b]
        for u in range(units):
            x_i, x_f, x_o = a_i[u] + r_i[u], a_f[u] + r_f[u], a_o[u] + r_o[u]
            if peephole is not None:
                x_i += w_ci[u] * cp[u]
                x_f += w_cf[u] * cp[u]
            i = pinned(pin_i, sigmoid(x_i))
            f = pinned(pin_f, sigmoid(x_f))
            g = pinned(pin_g, tanh(a_g[u] + r_g[u]))
            cell = f * cp[u] + i * g
            if peephole is not None:
                x_o += w_co[u] * cell
            o = pinned(pin_o, sigmoid(x_o))
            out_i[u], out_f[u], out_g[u], out_o[u] = i, f, g, o
            c_t[u] = cell
            h_t[u] = o * tanh(cell)


def _coupled_forward_twin(pre, rec, c_prev, gates, c, h, pins):
    """The coupled LSTM step: C_t = f C_{t-1} + (1 - f) g, as array code."""
    xp = get_array_module(pre)
    pin_f, pin_g, pin_o = (float(p) for p in pins)
    a_f, a_g, a_o = blocks(pre + rec, 3)
    f = pinned_twin(xp, sigmoid_twin(xp, a_f), pin_f)
    g = pinned_twin(xp, xp.tanh(a_g), pin_g)
    o = pinned_twin(xp, sigmoid_twin(xp, a_o), pin_o)
    # f C_{t-1} + (1 - f) g, not g + f (C_{t-1} - g): with f pinned to 1 the cell state is kept
    # exactly (the other form drifted 3.3e-6 over 1,000 float32 steps).
    c[...] = f * c_prev + (1 - f) * g
    gates[...] = xp.concatenate([f, g, o], axis=-1)
    h[...] = o * xp.tanh(c)


@jit.kernel(twin=_coupled_forward_twin)
def _coupled_forward(pre, rec, c_prev, gates, c, h, pins):
    batch, units = c_prev.shape
    pin_f, pin_g, pin_o = pins[0], pins[1], pins[2]
    for b in range(batch):
        a_f, a_g, a_o = pre[b, :units], pre[b, units:2 * units], pre[b, 2 * units:]
        r_f, r_g, r_o = rec[b, :units], rec[b, units:2 * units], rec[b, 2 * units:]
        out_f, out_g, out_o = gates[b, :units], gates[b, units:2 * units], gates[b, 2 * units:]
        cp, c_t, h_t = c_prev[b], c[b], h[b]
        for u in range(units):
            f = pinned(pin_f, sigmoid(a_f[u] + r_f[u]))
            g = pinned(pin_g, tanh(a_g[u] + r_g[u]))
            o = pinned(pin_o, sigmoid(a_o[u] + r_o[u]))
            cell = f * cp[u] + (ONE - f) * g
            out_f[u], out_g[u], out_o[u] = f, g, o
            c_t[u] = cell
            h_t[u] = o * tanh(cell)


def _variant(variant: str) -> int:
    if variant not in LSTM_VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; choose one of {', '.join(LSTM_VARIANTS)}")
    return LSTM_VARIANTS[variant]


def _peephole(peephole, variant, units, dtype):
    if variant != "peephole":
        return None                                       # never read by the other variants
    if peephole is None:
        raise ValueError("the peephole LSTM needs its peephole weights (3, U)")
    return runtime.check(peephole, "peephole", (3, units), dtype)


def _gpu_pins(pins, variant: str) -> tuple:
    """The CUDA kernel's four pin arguments (i, f, g, o); the coupled cell has no pin of its
    own for i, which follows f."""
    values = dict(zip(LSTM_GATES[variant], runtime.pin_values(pins, LSTM_GATES[variant])))
    return tuple(runtime.f32(values.get(gate, runtime.LEARNED)) for gate in "ifgo")


def lstm_forward(pre, rec, c_prev, peephole=None, variant: str = "standard", pins=None, out=None):
    """Gate math of one LSTM step, fused.

    Takes ``pre`` (B, G*U) = x_t W + b and ``rec`` (B, G*U) = h_{t-1} U, both stacked in the
    variant's gate order (their sum is the pre-activation), ``c_prev`` (B, U), ``peephole``
    (3, U) for ``variant="peephole"``, and ``pins``: a mapping gate letter -> constant (see
    ``runtime.pin_values``). Returns ``(gates, c, h)``: the activated gates (B, G*U) in the same
    order, the cell state and the hidden state (B, U). ``out``: optional ``(gates, c, h)``
    buffers to write instead; they must not overlap the inputs.
    """
    code = _variant(variant)
    device = runtime.on_device(pre)
    dtype = runtime.work_dtype(pre, "pre", device)
    batch, units = c_prev.shape
    width = len(LSTM_GATES[variant]) * units
    pre = runtime.check(pre, "pre", (batch, width), dtype)
    rec = runtime.check(rec, "rec", (batch, width), dtype)
    c_prev = runtime.check(c_prev, "c_prev", None, dtype)
    peephole = _peephole(peephole, variant, units, dtype)
    out_gates, out_c, out_h = runtime.outs(out, 3)
    gates = runtime.output(out_gates, pre, pre.shape, "gates", dtype)
    c = runtime.output(out_c, pre, (batch, units), "c", dtype)
    h = runtime.output(out_h, pre, (batch, units), "h", dtype)
    if device:
        runtime.launch("lstm", "lstm_forward", batch * units,
                       (pre, rec, c_prev, peephole, gates, c, h, runtime.i64(batch * units),
                        runtime.i32(units), runtime.i32(code), *_gpu_pins(pins, variant)), pre)
    elif variant == "coupled":
        runtime.cpu(_coupled_forward, pre, pre, rec, c_prev, gates, c, h, runtime.cpu_pins(pins, "fgo"))
    else:
        runtime.cpu(_forward, pre, pre, rec, c_prev, peephole, gates, c, h, runtime.cpu_pins(pins, "ifgo"))
    return gates, c, h


# --------------------------------------------------------------------------- backward

def _backward_twin(dh, dh_next, dc_next, gates, c_prev, c, peephole, d_pre, dc_prev, dc_total, pins):
    """Backward of the standard or peephole step, as array code (see ``lstm.cu``)."""
    xp = get_array_module(dh)
    pin_i, pin_f, pin_g, pin_o = (float(p) for p in pins)
    dh = dh + dh_next                                    # dL/dh_t: from above and from t+1
    i, f, g, o = blocks(gates, 4)
    tanh_c = xp.tanh(c)
    # h = o tanh(C):  dL/da_o = dh tanh(C) o (1 - o);  dL/dC = dh o (1 - tanh(C)^2) + carried
    da_o = pinned_grad_twin(xp, dh * tanh_c * o * (1 - o), pin_o)
    dc = dh * o * (1 - tanh_c ** 2) + dc_next
    if peephole is not None:
        dc = dc + da_o * peephole[2]                      # o_t also sees C_t
    # C = f C_{t-1} + i g
    da_i = pinned_grad_twin(xp, dc * g * i * (1 - i), pin_i)
    da_f = pinned_grad_twin(xp, dc * c_prev * f * (1 - f), pin_f)
    da_g = pinned_grad_twin(xp, dc * i * (1 - g ** 2), pin_g)
    d_pre[...] = xp.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    carried = dc * f
    if peephole is not None:
        carried = carried + da_i * peephole[0] + da_f * peephole[1]   # i_t, f_t see C_{t-1}
    dc_prev[...] = carried
    dc_total[...] = dc


@jit.kernel(twin=_backward_twin)
def _backward(dh, dh_next, dc_next, gates, c_prev, c, peephole, d_pre, dc_prev, dc_total, pins):
    batch, units = c_prev.shape
    pin_i, pin_f, pin_g, pin_o = pins[0], pins[1], pins[2], pins[3]
    if peephole is not None:
        w_ci, w_cf, w_co = peephole[0], peephole[1], peephole[2]
    for b in range(batch):
        g_i, g_f = gates[b, :units], gates[b, units:2 * units]
        g_g, g_o = gates[b, 2 * units:3 * units], gates[b, 3 * units:]
        d_i, d_f = d_pre[b, :units], d_pre[b, units:2 * units]
        d_g, d_o = d_pre[b, 2 * units:3 * units], d_pre[b, 3 * units:]
        dh_b, dh_n, dc_n = dh[b], dh_next[b], dc_next[b]
        cp, c_t, dcp, dct = c_prev[b], c[b], dc_prev[b], dc_total[b]
        for u in range(units):
            i, f, g, o = g_i[u], g_f[u], g_g[u], g_o[u]
            dh_t = dh_b[u] + dh_n[u]
            tc = tanh(c_t[u])
            da_o = pinned_grad(pin_o, dh_t * tc * o * (ONE - o))
            dc = dh_t * o * (ONE - tc * tc) + dc_n[u]
            if peephole is not None:
                dc += da_o * w_co[u]
            da_i = pinned_grad(pin_i, dc * g * i * (ONE - i))
            da_f = pinned_grad(pin_f, dc * cp[u] * f * (ONE - f))
            d_i[u], d_f[u], d_o[u] = da_i, da_f, da_o
            d_g[u] = pinned_grad(pin_g, dc * i * (ONE - g * g))
            carried = dc * f
            if peephole is not None:
                carried += da_i * w_ci[u] + da_f * w_cf[u]
            dcp[u] = carried
            dct[u] = dc


def _coupled_backward_twin(dh, dh_next, dc_next, gates, c_prev, c, d_pre, dc_prev, dc_total, pins):
    """Backward of the coupled step, as array code."""
    xp = get_array_module(dh)
    pin_f, pin_g, pin_o = (float(p) for p in pins)
    dh = dh + dh_next
    f, g, o = blocks(gates, 3)
    tanh_c = xp.tanh(c)
    da_o = pinned_grad_twin(xp, dh * tanh_c * o * (1 - o), pin_o)
    dc = dh * o * (1 - tanh_c ** 2) + dc_next
    # C = f C_{t-1} + (1 - f) g:  dC/df = C_{t-1} - g,  dC/dg = 1 - f
    da_f = pinned_grad_twin(xp, dc * (c_prev - g) * f * (1 - f), pin_f)
    da_g = pinned_grad_twin(xp, dc * (1 - f) * (1 - g ** 2), pin_g)
    d_pre[...] = xp.concatenate([da_f, da_g, da_o], axis=-1)
    dc_prev[...] = dc * f
    dc_total[...] = dc


@jit.kernel(twin=_coupled_backward_twin)
def _coupled_backward(dh, dh_next, dc_next, gates, c_prev, c, d_pre, dc_prev, dc_total, pins):
    batch, units = c_prev.shape
    pin_f, pin_g, pin_o = pins[0], pins[1], pins[2]
    for b in range(batch):
        g_f, g_g, g_o = gates[b, :units], gates[b, units:2 * units], gates[b, 2 * units:]
        d_f, d_g, d_o = d_pre[b, :units], d_pre[b, units:2 * units], d_pre[b, 2 * units:]
        dh_b, dh_n, dc_n = dh[b], dh_next[b], dc_next[b]
        cp, c_t, dcp, dct = c_prev[b], c[b], dc_prev[b], dc_total[b]
        for u in range(units):
            f, g, o = g_f[u], g_g[u], g_o[u]
            dh_t = dh_b[u] + dh_n[u]
            tc = tanh(c_t[u])
            d_o[u] = pinned_grad(pin_o, dh_t * tc * o * (ONE - o))
            dc = dh_t * o * (ONE - tc * tc) + dc_n[u]
            d_f[u] = pinned_grad(pin_f, dc * (cp[u] - g) * f * (ONE - f))
            d_g[u] = pinned_grad(pin_g, dc * (ONE - f) * (ONE - g * g))
            dcp[u] = dc * f
            dct[u] = dc


def lstm_backward(dh, dh_next, dc_next, gates, c_prev, c, peephole=None, variant: str = "standard",
                  pins=None, out=None, dc_total=None):
    """Backward through the gate math of one LSTM step.

    Takes ``dh`` (B, U) = dL/dh_t from above, ``dh_next`` (B, U) = the part carried back from
    step t+1 through its recurrent GEMM (None at the last step; the kernel adds the two),
    ``dc_next`` (B, U) = dL/dC_t carried back from step t+1 (None at the last step), and from
    the forward ``gates`` (B, G*U), ``c_prev`` and ``c`` (B, U), ``peephole`` (3, U), with the
    same ``variant`` and ``pins``. Returns ``(d_pre, dc_prev)``: the gradient of the
    pre-activations (B, G*U), in gate order, zero for pinned gates, and dL/dC_{t-1} (B, U).
    The caller forms dW, dU, db and dh_prev = d_pre U^T with GEMMs, and the peephole weight
    gradients with :func:`lstm_peephole_grad`. ``out``: optional ``(d_pre, dc_prev)`` buffers
    to write instead; ``dc_total``: an optional (B, U) buffer that receives the total dL/dC_t
    (what the probes record).
    """
    code = _variant(variant)
    device = runtime.on_device(dh)
    dtype = runtime.work_dtype(dh, "dh", device)
    batch, units = c_prev.shape
    width = len(LSTM_GATES[variant]) * units
    dh = runtime.check(dh, "dh", (batch, units), dtype)
    dh_next = runtime.optional(dh_next, "dh_next", (batch, units), dtype)
    dc_next = runtime.optional(dc_next, "dc_next", (batch, units), dtype)
    gates = runtime.check(gates, "gates", (batch, width), dtype)
    c_prev = runtime.check(c_prev, "c_prev", None, dtype)
    c = runtime.check(c, "c", (batch, units), dtype)
    peephole = _peephole(peephole, variant, units, dtype)
    out_d_pre, out_dc_prev = runtime.outs(out, 2)
    d_pre = runtime.output(out_d_pre, dh, gates.shape, "d_pre", dtype)
    dc_prev = runtime.output(out_dc_prev, dh, (batch, units), "dc_prev", dtype)
    if dc_total is not None:
        dc_total = runtime.output(dc_total, dh, (batch, units), "dc_total", dtype)
    if device:
        runtime.launch("lstm", "lstm_backward", batch * units,
                       (dh, dh_next, dc_next, gates, c_prev, c, peephole, d_pre, dc_prev, dc_total,
                        runtime.i64(batch * units), runtime.i32(units), runtime.i32(code),
                        *_gpu_pins(pins, variant)), dh)
        return d_pre, dc_prev
    # The CPU kernels read zeros for what was not carried and always write dc_total.
    nothing = runtime.zeros(dh, (batch, units))
    dh_next = nothing if dh_next is None else dh_next
    dc_next = nothing if dc_next is None else dc_next
    dc_total = get_array_module(dh).empty_like(c) if dc_total is None else dc_total
    if variant == "coupled":
        runtime.cpu(_coupled_backward, dh, dh, dh_next, dc_next, gates, c_prev, c, d_pre, dc_prev,
                    dc_total, runtime.cpu_pins(pins, "fgo"))
    else:
        runtime.cpu(_backward, dh, dh, dh_next, dc_next, gates, c_prev, c, peephole, d_pre, dc_prev,
                    dc_total, runtime.cpu_pins(pins, "ifgo"))
    return d_pre, dc_prev


# --------------------------------------------------------------------------- peephole weights

def _peephole_grad_twin(d_pre, c_prev, c, out):
    """(3, U) += the batch sums of da_i C_{t-1}, da_f C_{t-1}, da_o C_t, as array code."""
    da_i, da_f, _, da_o = blocks(d_pre, 4)
    out[0] += (da_i * c_prev).sum(axis=0)
    out[1] += (da_f * c_prev).sum(axis=0)
    out[2] += (da_o * c).sum(axis=0)


@jit.kernel(twin=_peephole_grad_twin)
def _peephole_grad(d_pre, c_prev, c, out):
    batch, units = c_prev.shape
    w_ci, w_cf, w_co = out[0], out[1], out[2]
    for b in range(batch):
        da_i, da_f, da_o = d_pre[b, :units], d_pre[b, units:2 * units], d_pre[b, 3 * units:]
        cp, c_t = c_prev[b], c[b]
        for u in range(units):
            w_ci[u] += da_i[u] * cp[u]
            w_cf[u] += da_f[u] * cp[u]
            w_co[u] += da_o[u] * c_t[u]


def lstm_peephole_grad(d_pre, c_prev, c, out):
    """Peephole weight gradients, summed over the rows, added into ``out``.

    Takes ``d_pre`` (B, 4U) from :func:`lstm_backward` (peephole variant), ``c_prev`` and
    ``c`` (B, U), and ``out`` (3, U) to accumulate into. The layers pass every timestep at
    once (B = T*N rows). Returns ``out``: rows ``dw_ci += sum_b da_i C_prev``,
    ``dw_cf += sum_b da_f C_prev``, ``dw_co += sum_b da_o C``.
    """
    device = runtime.on_device(d_pre)
    dtype = runtime.work_dtype(d_pre, "d_pre", device)
    batch, units = c_prev.shape
    d_pre = runtime.check(d_pre, "d_pre", (batch, 4 * units), dtype)
    c_prev = runtime.check(c_prev, "c_prev", None, dtype)
    c = runtime.check(c, "c", (batch, units), dtype)
    runtime.in_place(out, "out", (3, units), dtype)
    if device:
        runtime.launch("lstm", "lstm_peephole_grad", 3 * units,
                       (d_pre, c_prev, c, out, runtime.i32(batch), runtime.i32(units)), d_pre)
    else:
        runtime.cpu(_peephole_grad, d_pre, d_pre, c_prev, c, out)
    return out
