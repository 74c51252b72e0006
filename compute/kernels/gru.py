"""The GRU's gate math in both forms, one step forward and backward: the kernel contract for
``gru.cu``, its numba kernels and their NumPy twins.

Gate order ``r, z, n`` (contract); gate arrays are (B, 3H) gate-major per sample, states
(B, H). The update is the lectures' ``h_t = (1 - z) h_{t-1} + z n``. ``pins`` map a gate
letter to its constant (see ``runtime.pin_values``).

- PyTorch's form, ``n = tanh(xn + r (hn + b_hn))``: one recurrent GEMM per step
  (``h_gates = h_{t-1} U``) and one kernel each way.
- Cho's form (the lectures'), ``n = tanh(xn + (r h_{t-1}) U_n)``: the reset gate sits inside
  the product, so a step is kernel ``rz``, GEMM ``(r h_{t-1}) U_n``, kernel ``n``, and
  backward mirrors it.

Every numba kernel takes the three pins (r, z, n) and one 1-D view per gate block (see
``lstm.py`` for why).
"""
from __future__ import annotations

from gatescope.compute import jit
from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime
from gatescope.compute.kernels.common import (ONE, blocks, pinned, pinned_grad, pinned_grad_twin,
                                              pinned_twin, sigmoid, sigmoid_twin, tanh)


def _gpu_pins(pins, gates: str) -> tuple:
    values = dict(zip("rzn", runtime.pin_values(pins, "rzn")))
    return tuple(runtime.f32(values[g]) for g in gates)


def _pins_twin(pins):
    return tuple(float(p) for p in pins)


def _gate_arrays(name_arrays, batch, units, dtype):
    return [runtime.check(a, name, (batch, width * units), dtype) for name, a, width in name_arrays]


# --------------------------------------------------------------------------- PyTorch's form

def _pytorch_forward_twin(x_gates, h_gates, b_hn, h_prev, gates, h, pins):
    xp = get_array_module(x_gates)
    pin_r, pin_z, pin_n = _pins_twin(pins)
    xr, xz, xn = blocks(x_gates, 3)
    hr, hz, hn = blocks(h_gates, 3)
    r = pinned_twin(xp, sigmoid_twin(xp, xr + hr), pin_r)
    z = pinned_twin(xp, sigmoid_twin(xp, xz + hz), pin_z)
    n = pinned_twin(xp, xp.tanh(xn + r * (hn + b_hn)), pin_n)
    gates[...] = xp.concatenate([r, z, n], axis=-1)
    h[...] = (1 - z) * h_prev + z * n                    # z chooses the new candidate


@jit.kernel(twin=_pytorch_forward_twin)
def _pytorch_forward(x_gates, h_gates, b_hn, h_prev, gates, h, pins):
    batch, units = h_prev.shape
    pin_r, pin_z, pin_n = pins[0], pins[1], pins[2]
    for b in range(batch):
        xr, xz, xn = x_gates[b, :units], x_gates[b, units:2 * units], x_gates[b, 2 * units:]
        hr, hz, hn = h_gates[b, :units], h_gates[b, units:2 * units], h_gates[b, 2 * units:]
        out_r, out_z, out_n = gates[b, :units], gates[b, units:2 * units], gates[b, 2 * units:]
        hp, h_t = h_prev[b], h[b]
        for u in range(units):
            r = pinned(pin_r, sigmoid(xr[u] + hr[u]))
            z = pinned(pin_z, sigmoid(xz[u] + hz[u]))
            n = pinned(pin_n, tanh(xn[u] + r * (hn[u] + b_hn[u])))
            out_r[u], out_z[u], out_n[u] = r, z, n
            h_t[u] = (ONE - z) * hp[u] + z * n


def gru_pytorch_forward(x_gates, h_gates, h_prev, pins=None, out=None, b_hn=None):
    """One GRU step in PyTorch's form: n = tanh(xn + r * (hn + b_hn)).

    Takes ``x_gates`` (B, 3H) = x W + b and ``h_gates`` (B, 3H) = h_prev U (the GEMM's output
    as it is), both stacked ``r, z, n``; ``h_prev`` (B, H); ``b_hn`` (H,) the recurrent
    candidate bias (None: zero). Returns ``(gates, h)``: activated ``r, z, n`` (B, 3H) and
    h = (1 - z) * h_prev + z * n (B, H). ``out``: optional ``(gates, h)`` buffers.
    """
    device = runtime.on_device(x_gates)
    dtype = runtime.work_dtype(x_gates, "x_gates", device)
    batch, units = h_prev.shape
    x_gates, h_gates = _gate_arrays((("x_gates", x_gates, 3), ("h_gates", h_gates, 3)), batch, units, dtype)
    b_hn = runtime.optional(b_hn, "b_hn", (units,), dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    out_gates, out_h = runtime.outs(out, 2)
    gates = runtime.output(out_gates, x_gates, x_gates.shape, "gates", dtype)
    h = runtime.output(out_h, x_gates, (batch, units), "h", dtype)
    if device:
        runtime.launch("gru", "gru_pytorch_forward", batch * units,
                       (x_gates, h_gates, b_hn, h_prev, gates, h, runtime.i64(batch * units),
                        runtime.i32(units), *_gpu_pins(pins, "rzn")), x_gates)
    else:
        b_hn = runtime.zeros(x_gates, (units,)) if b_hn is None else b_hn
        runtime.cpu(_pytorch_forward, x_gates, x_gates, h_gates, b_hn, h_prev, gates, h,
                    runtime.cpu_pins(pins, "rzn"))
    return gates, h


def _pytorch_backward_twin(dh, dh_next, gates, h_prev, h_gates, b_hn, d_x_gates, d_h_gates, dh_prev, pins):
    xp = get_array_module(dh)
    pin_r, pin_z, pin_n = _pins_twin(pins)
    dh = dh + dh_next
    r, z, n = blocks(gates, 3)
    hn = blocks(h_gates, 3)[2] + b_hn
    # h = (1 - z) h_prev + z n;  n = tanh(xn + r hn)
    da_n = pinned_grad_twin(xp, dh * z * (1 - n ** 2), pin_n)
    da_z = pinned_grad_twin(xp, dh * (n - h_prev) * z * (1 - z), pin_z)
    da_r = pinned_grad_twin(xp, da_n * hn * r * (1 - r), pin_r)
    d_x_gates[...] = xp.concatenate([da_r, da_z, da_n], axis=-1)
    d_h_gates[...] = xp.concatenate([da_r, da_z, da_n * r], axis=-1)
    dh_prev[...] = dh * (1 - z)


@jit.kernel(twin=_pytorch_backward_twin)
def _pytorch_backward(dh, dh_next, gates, h_prev, h_gates, b_hn, d_x_gates, d_h_gates, dh_prev, pins):
    batch, units = h_prev.shape
    pin_r, pin_z, pin_n = pins[0], pins[1], pins[2]
    for b in range(batch):
        g_r, g_z, g_n = gates[b, :units], gates[b, units:2 * units], gates[b, 2 * units:]
        hn = h_gates[b, 2 * units:]
        dx_r, dx_z, dx_n = d_x_gates[b, :units], d_x_gates[b, units:2 * units], d_x_gates[b, 2 * units:]
        dr_h, dz_h, dn_h = d_h_gates[b, :units], d_h_gates[b, units:2 * units], d_h_gates[b, 2 * units:]
        d, d_next, hp, d_prev = dh[b], dh_next[b], h_prev[b], dh_prev[b]
        for u in range(units):
            r, z, n = g_r[u], g_z[u], g_n[u]
            dh_t = d[u] + d_next[u]
            da_n = pinned_grad(pin_n, dh_t * z * (ONE - n * n))
            da_z = pinned_grad(pin_z, dh_t * (n - hp[u]) * z * (ONE - z))
            da_r = pinned_grad(pin_r, da_n * (hn[u] + b_hn[u]) * r * (ONE - r))
            dx_r[u], dx_z[u], dx_n[u] = da_r, da_z, da_n
            dr_h[u], dz_h[u], dn_h[u] = da_r, da_z, da_n * r
            d_prev[u] = dh_t * (ONE - z)


def gru_pytorch_backward(dh, dh_next, gates, h_prev, h_gates, pins=None, out=None, b_hn=None):
    """Backward of :func:`gru_pytorch_forward`.

    Takes ``dh`` (B, H) from above and ``dh_next`` (B, H) carried from step t+1 (None: zero;
    the kernel adds the two), the forward's ``gates`` (B, 3H), ``h_prev`` (B, H), ``h_gates``
    (B, 3H) and ``b_hn`` (H,) or None. Returns ``(d_x_gates, d_h_gates, dh_prev)``: gradients
    of both pre-activation inputs (B, 3H) (the n block of ``d_h_gates`` is also the gradient
    of ``b_hn``) and the direct part dh * (1 - z) of dL/dh_prev (B, H); the caller adds
    d_h_gates U^T. ``out``: optional ``(d_x_gates, d_h_gates, dh_prev)`` buffers.
    """
    device = runtime.on_device(dh)
    dtype = runtime.work_dtype(dh, "dh", device)
    batch, units = h_prev.shape
    dh = runtime.check(dh, "dh", (batch, units), dtype)
    dh_next = runtime.optional(dh_next, "dh_next", (batch, units), dtype)
    b_hn = runtime.optional(b_hn, "b_hn", (units,), dtype)
    gates, h_gates = _gate_arrays((("gates", gates, 3), ("h_gates", h_gates, 3)), batch, units, dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    out_dx, out_dh_gates, out_dh_prev = runtime.outs(out, 3)
    d_x_gates = runtime.output(out_dx, dh, gates.shape, "d_x_gates", dtype)
    d_h_gates = runtime.output(out_dh_gates, dh, gates.shape, "d_h_gates", dtype)
    dh_prev = runtime.output(out_dh_prev, dh, (batch, units), "dh_prev", dtype)
    if device:
        runtime.launch("gru", "gru_pytorch_backward", batch * units,
                       (dh, dh_next, gates, h_prev, h_gates, b_hn, d_x_gates, d_h_gates, dh_prev,
                        runtime.i64(batch * units), runtime.i32(units), *_gpu_pins(pins, "rzn")), dh)
    else:
        dh_next = runtime.zeros(dh, (batch, units)) if dh_next is None else dh_next
        b_hn = runtime.zeros(dh, (units,)) if b_hn is None else b_hn
        runtime.cpu(_pytorch_backward, dh, dh, dh_next, gates, h_prev, h_gates, b_hn, d_x_gates,
                    d_h_gates, dh_prev, runtime.cpu_pins(pins, "rzn"))
    return d_x_gates, d_h_gates, dh_prev


# --------------------------------------------------------------------------- Cho's form

def _cho_forward_rz_twin(x_gates, h_rz, h_prev, gates, r_h_prev, pins):
    xp = get_array_module(x_gates)
    pin_r, pin_z, _ = _pins_twin(pins)
    xr, xz, _ = blocks(x_gates, 3)
    hr, hz = blocks(h_rz, 2)
    r = pinned_twin(xp, sigmoid_twin(xp, xr + hr), pin_r)
    z = pinned_twin(xp, sigmoid_twin(xp, xz + hz), pin_z)
    out_r, out_z, _ = blocks(gates, 3)
    out_r[...], out_z[...] = r, z
    r_h_prev[...] = r * h_prev


@jit.kernel(twin=_cho_forward_rz_twin)
def _cho_forward_rz(x_gates, h_rz, h_prev, gates, r_h_prev, pins):
    batch, units = h_prev.shape
    pin_r, pin_z = pins[0], pins[1]
    for b in range(batch):
        xr, xz = x_gates[b, :units], x_gates[b, units:2 * units]
        hr, hz = h_rz[b, :units], h_rz[b, units:]
        out_r, out_z = gates[b, :units], gates[b, units:2 * units]
        hp, rh = h_prev[b], r_h_prev[b]
        for u in range(units):
            r = pinned(pin_r, sigmoid(xr[u] + hr[u]))
            out_r[u] = r
            out_z[u] = pinned(pin_z, sigmoid(xz[u] + hz[u]))
            rh[u] = r * hp[u]


def gru_cho_forward_rz(x_gates, h_rz, h_prev, pins=None, out=None):
    """Cho-form GRU step, part 1 (before the GEMM with U_n).

    Takes ``x_gates`` (B, 3H) = x W + b stacked ``r, z, n``, ``h_rz`` (B, 2H) = h_prev U_rz,
    ``h_prev`` (B, H). Returns ``(gates, r_h_prev)``: ``gates`` (B, 3H) with its r and z
    blocks written (the n block is :func:`gru_cho_forward_n`'s), and r * h_prev (B, H), which
    the caller multiplies by U_n. ``out``: optional ``(gates, r_h_prev)`` buffers.
    """
    device = runtime.on_device(x_gates)
    dtype = runtime.work_dtype(x_gates, "x_gates", device)
    batch, units = h_prev.shape
    x_gates, h_rz = _gate_arrays((("x_gates", x_gates, 3), ("h_rz", h_rz, 2)), batch, units, dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    out_gates, out_r_h_prev = runtime.outs(out, 2)
    gates = runtime.output(out_gates, x_gates, x_gates.shape, "gates", dtype)
    r_h_prev = runtime.output(out_r_h_prev, x_gates, (batch, units), "r_h_prev", dtype)
    if device:
        runtime.launch("gru", "gru_cho_forward_rz", batch * units,
                       (x_gates, h_rz, h_prev, gates, r_h_prev, runtime.i64(batch * units),
                        runtime.i32(units), *_gpu_pins(pins, "rz")), x_gates)
    else:
        runtime.cpu(_cho_forward_rz, x_gates, x_gates, h_rz, h_prev, gates, r_h_prev,
                    runtime.cpu_pins(pins, "rzn"))
    return gates, r_h_prev


def _cho_forward_n_twin(x_gates, h_n, h_prev, gates, h, pins):
    xp = get_array_module(x_gates)
    _, z, out_n = blocks(gates, 3)
    n = pinned_twin(xp, xp.tanh(blocks(x_gates, 3)[2] + h_n), float(pins[2]))
    out_n[...] = n
    h[...] = (1 - z) * h_prev + z * n


@jit.kernel(twin=_cho_forward_n_twin)
def _cho_forward_n(x_gates, h_n, h_prev, gates, h, pins):
    batch, units = h_prev.shape
    pin_n = pins[2]
    for b in range(batch):
        xn, hn = x_gates[b, 2 * units:], h_n[b]
        g_z, out_n = gates[b, units:2 * units], gates[b, 2 * units:]
        hp, h_t = h_prev[b], h[b]
        for u in range(units):
            n = pinned(pin_n, tanh(xn[u] + hn[u]))
            out_n[u] = n
            h_t[u] = (ONE - g_z[u]) * hp[u] + g_z[u] * n


def gru_cho_forward_n(x_gates, h_n, h_prev, gates, pins=None, out=None):
    """Cho-form GRU step, part 2: n = tanh(xn + h_n), h = (1 - z) * h_prev + z * n.

    Takes ``x_gates`` (B, 3H), ``h_n`` (B, H) = (r * h_prev) U_n, ``h_prev`` (B, H) and the
    ``gates`` from part 1, whose n block is written in place. Returns ``(gates, h)``; ``h``
    is written into ``out`` when given.
    """
    device = runtime.on_device(x_gates)
    dtype = runtime.work_dtype(x_gates, "x_gates", device)
    batch, units = h_prev.shape
    x_gates = runtime.check(x_gates, "x_gates", (batch, 3 * units), dtype)
    h_n = runtime.check(h_n, "h_n", (batch, units), dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    runtime.in_place(gates, "gates", (batch, 3 * units), dtype)
    h = runtime.output(out, x_gates, (batch, units), "h", dtype)
    if device:
        runtime.launch("gru", "gru_cho_forward_n", batch * units,
                       (x_gates, h_n, h_prev, gates, h, runtime.i64(batch * units), runtime.i32(units),
                        *_gpu_pins(pins, "n")), x_gates)
    else:
        runtime.cpu(_cho_forward_n, x_gates, x_gates, h_n, h_prev, gates, h, runtime.cpu_pins(pins, "rzn"))
    return gates, h


def _cho_backward_n_twin(dh, dh_next, gates, h_prev, d_gates, dh_prev, pins):
    xp = get_array_module(dh)
    _, pin_z, pin_n = _pins_twin(pins)
    dh = dh + dh_next
    _, z, n = blocks(gates, 3)
    _, da_z, da_n = blocks(d_gates, 3)
    da_z[...] = pinned_grad_twin(xp, dh * (n - h_prev) * z * (1 - z), pin_z)
    da_n[...] = pinned_grad_twin(xp, dh * z * (1 - n ** 2), pin_n)
    dh_prev[...] = dh * (1 - z)


@jit.kernel(twin=_cho_backward_n_twin)
def _cho_backward_n(dh, dh_next, gates, h_prev, d_gates, dh_prev, pins):
    batch, units = h_prev.shape
    pin_z, pin_n = pins[1], pins[2]
    for b in range(batch):
        g_z, g_n = gates[b, units:2 * units], gates[b, 2 * units:]
        d_z, d_n = d_gates[b, units:2 * units], d_gates[b, 2 * units:]
        d, d_next, hp, d_prev = dh[b], dh_next[b], h_prev[b], dh_prev[b]
        for u in range(units):
            z, n = g_z[u], g_n[u]
            dh_t = d[u] + d_next[u]
            d_z[u] = pinned_grad(pin_z, dh_t * (n - hp[u]) * z * (ONE - z))
            d_n[u] = pinned_grad(pin_n, dh_t * z * (ONE - n * n))
            d_prev[u] = dh_t * (ONE - z)


def gru_cho_backward_n(dh, dh_next, gates, h_prev, pins=None, out=None):
    """Cho-form GRU backward, part 1.

    Takes ``dh`` (B, H) from above and ``dh_next`` (B, H) carried from step t+1 (None: zero;
    the kernel adds the two), the forward's ``gates`` (B, 3H) and ``h_prev`` (B, H). Returns
    ``(d_gates, dh_prev)``: ``d_gates`` (B, 3H) with its z and n blocks written (the gradient
    of the x-projection and of the recurrent products alike; the r block is part 2's) and
    dh_prev = dh * (1 - z). The caller then computes d_r_h_prev = d_gates[:, 2H:] U_n^T.
    ``out``: optional ``(d_gates, dh_prev)`` buffers to write instead.
    """
    device = runtime.on_device(dh)
    dtype = runtime.work_dtype(dh, "dh", device)
    batch, units = h_prev.shape
    dh = runtime.check(dh, "dh", (batch, units), dtype)
    dh_next = runtime.optional(dh_next, "dh_next", (batch, units), dtype)
    gates = runtime.check(gates, "gates", (batch, 3 * units), dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    out_d_gates, out_dh_prev = runtime.outs(out, 2)
    d_gates = runtime.output(out_d_gates, dh, gates.shape, "d_gates", dtype)
    dh_prev = runtime.output(out_dh_prev, dh, (batch, units), "dh_prev", dtype)
    if device:
        runtime.launch("gru", "gru_cho_backward_n", batch * units,
                       (dh, dh_next, gates, h_prev, d_gates, dh_prev, runtime.i64(batch * units),
                        runtime.i32(units), *_gpu_pins(pins, "zn")), dh)
    else:
        dh_next = runtime.zeros(dh, (batch, units)) if dh_next is None else dh_next
        runtime.cpu(_cho_backward_n, dh, dh, dh_next, gates, h_prev, d_gates, dh_prev,
                    runtime.cpu_pins(pins, "rzn"))
    return d_gates, dh_prev


def _cho_backward_r_twin(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins):
    xp = get_array_module(d_r_h_prev)
    r = blocks(gates, 3)[0]
    blocks(d_gates, 3)[0][...] = pinned_grad_twin(xp, d_r_h_prev * h_prev * r * (1 - r), float(pins[0]))
    dh_prev += d_r_h_prev * r


@jit.kernel(twin=_cho_backward_r_twin)
def _cho_backward_r(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins):
    batch, units = h_prev.shape
    pin_r = pins[0]
    for b in range(batch):
        g_r, d_r = gates[b, :units], d_gates[b, :units]
        d_rh, hp, d_prev = d_r_h_prev[b], h_prev[b], dh_prev[b]
        for u in range(units):
            r = g_r[u]
            d_r[u] = pinned_grad(pin_r, d_rh[u] * hp[u] * r * (ONE - r))
            d_prev[u] += d_rh[u] * r


def gru_cho_backward_r(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins=None):
    """Cho-form GRU backward, part 2.

    Takes ``d_r_h_prev`` (B, H) = dL/d(r * h_prev), the forward's ``gates`` and ``h_prev``,
    and part 1's ``d_gates`` and ``dh_prev``, updated in place: the r block of ``d_gates`` is
    written and ``dh_prev += d_r_h_prev * r``. Returns ``(d_gates, dh_prev)``; the caller
    finally adds d_gates[:, :2H] U_rz^T to dh_prev.
    """
    device = runtime.on_device(d_r_h_prev)
    dtype = runtime.work_dtype(d_r_h_prev, "d_r_h_prev", device)
    batch, units = h_prev.shape
    d_r_h_prev = runtime.check(d_r_h_prev, "d_r_h_prev", (batch, units), dtype)
    gates = runtime.check(gates, "gates", (batch, 3 * units), dtype)
    h_prev = runtime.check(h_prev, "h_prev", None, dtype)
    runtime.in_place(d_gates, "d_gates", (batch, 3 * units), dtype)
    runtime.in_place(dh_prev, "dh_prev", (batch, units), dtype)
    if device:
        runtime.launch("gru", "gru_cho_backward_r", batch * units,
                       (d_r_h_prev, gates, h_prev, d_gates, dh_prev, runtime.i64(batch * units),
                        runtime.i32(units), *_gpu_pins(pins, "r")), d_r_h_prev)
    else:
        runtime.cpu(_cho_backward_r, d_r_h_prev, d_r_h_prev, gates, h_prev, d_gates, dh_prev,
                    runtime.cpu_pins(pins, "rzn"))
    return d_gates, dh_prev
