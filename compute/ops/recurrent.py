"""The fused per-step gate math of every recurrent cell, forward and backward.

Each function here is the NumPy twin of one future CUDA kernel (DESIGN section 3): it takes
the step's already-projected gate pre-activations and the previous state, does every
elementwise operation of the step, and writes its results into buffers the caller owns
(``out`` arguments), so a kernel can replace the body 1:1 behind the same signature. The
matrix products (the input projection for all timesteps, the one recurrent GEMM per step, the
weight-gradient GEMMs) are the caller's, in ``compute/layers/recurrent.py``.

Shapes: every array has any leading "row" axes (a batch ``(B,)`` for the vector cells, a batch
of pixels ``(B, P)`` for ConvLSTM) and the units last. ``H`` is the hidden size; gate blocks
are stacked along the last axis in the contract order (LSTM ``i, f, g, o``, GRU ``r, z, n``).

Gate activations go through a *gate table* ``(scale, mul, add)`` of per-column vectors:
``activation = mul / (1 + exp(scale * a)) + add``. A sigmoid column has ``(-1, 1, 0)``, a
tanh column ``(-2, 2, -1)`` (``tanh(x) = 2 sigma(2x) - 1``), and a gate pinned to the constant
``v`` (a gate override) ``(0, 0, v)``: one pass activates every gate and applies every pin.
The exponential (and every ``tanh``) goes through ``compute.ops.fastmath``: OpenCV's vectorised
float32 ``exp``, 4.5 times NumPy's on an AVX2 processor, where NumPy's runs at scalar speed. A saturated gate makes ``exp`` overflow to ``inf``, and
``mul / inf`` is the exact limit 0: the result is right, only NumPy's overflow warning is
noise. The layers silence it once around their step loop (``quiet_overflow``), not per call,
where ``np.errstate`` would cost more than a small step's arithmetic. In backward a pinned
gate's pre-activation gradient is zero.

Every function works in the buffers it is given (results and, where it needs room for an
intermediate, an output it writes last), so a training step allocates nothing per timestep.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gatescope.compute.backend import get_array_module
from gatescope.compute.ops import fastmath

SIGMOID, TANH = "s", "t"


class ColumnTable(tuple):
    """A gate or slope table: a tuple of per-column vectors ``(G,)`` (or None), which also
    hands out copies of itself tiled to a step's full shape, made once per shape and kept.

    NumPy runs an operation between a step's ``(B, G)`` array and a ``(G,)`` vector row by
    row, and far slower than between two arrays of one shape (on B=32, G=1024 the gate
    activation takes 87 us with the vectors and 32 us with tiled copies), so the step loops
    use the tiled copies. CuPy broadcasts in its kernels at no cost and gets the vectors.
    """

    def full(self, shape: tuple[int, ...]) -> tuple:
        """The vectors broadcast to ``shape`` (``(..., G)``) as contiguous arrays (NumPy)."""
        if not self or not isinstance(self[0], np.ndarray) or len(shape) < 2:
            return self
        cache = self.__dict__.setdefault("_full", {})
        if shape not in cache:
            cache[shape] = tuple(None if v is None else np.ascontiguousarray(np.broadcast_to(v, shape))
                                 for v in self)
        return cache[shape]


def _columns_for(table, shape):
    """``table``'s vectors, tiled to ``shape`` where it is a :class:`ColumnTable`."""
    return table.full(tuple(shape)) if isinstance(table, ColumnTable) else table


def gate_table(kinds: str, pins: Sequence[float | None], units: int, xp=np, dtype=np.float32):
    """The ``(scale, mul, add)`` vectors, each ``(len(kinds) * units,)``, for gates of ``kinds``.

    ``kinds``: one letter per gate block, ``'s'`` sigmoid or ``'t'`` tanh. ``pins``: per gate,
    None (learned) or the constant the gate is pinned to.
    """
    scale, mul, add = (np.empty(len(kinds) * units) for _ in range(3))
    for k, (kind, pin) in enumerate(zip(kinds, pins)):
        cols = slice(k * units, (k + 1) * units)
        if kind == SIGMOID:
            scale[cols], mul[cols], add[cols] = -1.0, 1.0, 0.0
        else:
            scale[cols], mul[cols], add[cols] = -2.0, 2.0, -1.0
        if pin is not None:
            scale[cols], mul[cols], add[cols] = 0.0, 0.0, float(pin)
    return ColumnTable(xp.asarray(v, dtype=dtype) for v in (scale, mul, add))


def slope_table(kinds: str, pins: Sequence[float | None], units: int, xp=np, dtype=np.float32):
    """Per-column ``(c1, c0, mask)`` for gates of ``kinds`` (as :func:`gate_table`) such that
    an activation ``y``'s derivative is ``(c1 - y) * y * mask + c0``: ``y (1 - y)`` for a
    sigmoid (1, 0), ``1 - y^2`` for a tanh (0, 1), and 0 for a pinned gate (mask 0, c0 0).
    ``mask`` is None when nothing is pinned (it would multiply by ones).

    With it, backward applies every gate's slope in a few full-width passes over the
    contiguous ``(..., G)`` rows instead of three passes per strided gate block.
    """
    c1, c0, mask = (np.empty(len(kinds) * units) for _ in range(3))
    for k, (kind, pin) in enumerate(zip(kinds, pins)):
        cols = slice(k * units, (k + 1) * units)
        c1[cols], c0[cols] = (1.0, 0.0) if kind == SIGMOID else (0.0, 1.0)
        mask[cols] = 1.0
        if pin is not None:
            c0[cols], mask[cols] = 0.0, 0.0
    pinned = any(pin is not None for pin in pins)
    c1, c0, mask = (xp.asarray(v, dtype=dtype) for v in (c1, c0, mask))
    return ColumnTable((c1, c0, mask if pinned else None))


def quiet_overflow():
    """A context silencing NumPy's overflow warning for ``exp`` -> ``inf`` in
    :func:`activate_gates` (harmless there); wrap a whole step loop in it."""
    return np.errstate(over="ignore")


def activate_gates(a, table) -> None:
    """In place: ``a <- mul / (1 + exp(scale * a)) + add`` (every gate activation and pin).

    ``a``: ``(..., G)`` pre-activations; ``table``: the ``(scale, mul, add)`` vectors ``(G,)``.
    """
    xp = get_array_module(a)
    scale, mul, add = _columns_for(table, a.shape)
    a *= scale
    fastmath.exp(a, out=a)                              # may be inf: mul / inf is the exact 0
    a += 1
    xp.divide(mul, a, out=a)
    a += add


def _sigmoid_grad(d, y, out, scratch):
    """``out <- d * y * (1 - y)``: the gradient through a sigmoid whose output is ``y``.

    ``scratch``: a buffer of ``y``'s shape, overwritten; ``out`` may be ``d``.
    """
    xp = get_array_module(y)
    xp.subtract(1, y, out=scratch)
    scratch *= y
    xp.multiply(d, scratch, out=out)


def _tanh_grad(d, y, out, scratch):
    """``out <- d * (1 - y^2)``: the gradient through a tanh whose output is ``y``.

    ``scratch``: a buffer of ``y``'s shape, overwritten (it may be ``out``, not ``d``).
    """
    xp = get_array_module(y)
    xp.multiply(y, y, out=scratch)
    xp.subtract(1, scratch, out=scratch)
    xp.multiply(d, scratch, out=out)


# ============================================================================ SimpleRNN
def rnn_cell_forward(a, h_out, activation: str = "tanh") -> None:
    """Elman step ``h_t = act(a_t)`` with ``a_t = x_t W + h_{t-1} U + b`` given.

    ``a``: ``(..., H)`` pre-activation; ``h_out``: ``(..., H)`` written; ``activation``:
    ``tanh`` or ``relu``.
    """
    xp = get_array_module(a)
    if activation == "tanh":
        fastmath.tanh(a, out=h_out)
    else:
        xp.maximum(a, 0, out=h_out)


def rnn_cell_backward(h, dh, da_out, activation: str = "tanh") -> None:
    """``da_out <- dL/da_t = dh * act'(a_t)``, from the step's output ``h`` (``(..., H)``)."""
    xp = get_array_module(h)
    if activation == "tanh":
        _tanh_grad(dh, h, da_out, da_out)
    else:
        xp.multiply(dh, h > 0, out=da_out)


# ============================================================================ LSTM
def _forget_candidate_output(array, units: int, coupled: bool):
    """Views of the f, g, o blocks of a stacked LSTM gate array (``i, f, g, o``, or ``f, g, o``
    for the coupled cell): ``(..., H)`` each."""
    first = 0 if coupled else units
    return tuple(array[..., first + k * units:first + (k + 1) * units] for k in range(3))


def lstm_cell_forward(gates, c_prev, c_out, h_out, table, peephole=None, coupled: bool = False,
                      tanh_c_out=None) -> None:
    """One LSTM step's gate math.

    Standard (``gates`` ``(..., 4H)`` stacked ``i, f, g, o``)::

        i_t = sigma(a_i [+ p_i * C_{t-1}])     f_t = sigma(a_f [+ p_f * C_{t-1}])
        g_t = tanh(a_g)                          (the candidate C~_t)
        C_t = f_t * C_{t-1} + i_t * g_t
        o_t = sigma(a_o [+ p_o * C_t])
        h_t = o_t * tanh(C_t)

    (bracketed terms with ``peephole = (p_i, p_f, p_o)``, each broadcastable to ``(..., H)``).
    Coupled (``gates`` ``(..., 3H)`` stacked ``f, g, o``; there is no input-gate block):
    ``C_t = f_t * C_{t-1} + (1 - f_t) * g_t``.

    ``gates`` holds the pre-activations ``a = x_t W + h_{t-1} U + b`` on entry and the gate
    activations on return (backward needs them). ``c_prev``: ``(..., H)``; ``c_out``,
    ``h_out``: ``(..., H)`` written. ``table``: ``gate_table`` of the gates, pins included.
    ``tanh_c_out``: optional ``(..., H)`` buffer that receives ``tanh(C_t)``, so backward
    need not compute it again.
    """
    xp = get_array_module(gates)
    units = c_prev.shape[-1]
    first = 0 if coupled else units                     # where f starts
    if peephole is None:
        activate_gates(gates, table)
    else:
        p_i, p_f, p_o = peephole
        xp.multiply(p_f, c_prev, out=c_out)             # c_out as scratch until C_t is formed
        gates[..., first:first + units] += c_out        # the forget gate peeks at C_{t-1}
        if not coupled:
            xp.multiply(p_i, c_prev, out=c_out)         # and so does the input gate
            gates[..., :units] += c_out
        head = slice(0, first + 2 * units)
        activate_gates(gates[..., head], tuple(v[head] for v in table))
    f, g, o = _forget_candidate_output(gates, units, coupled)
    tanh_c = h_out if tanh_c_out is None else tanh_c_out
    if coupled:
        # C_t = f C_{t-1} + (1 - f) g  =  g + f (C_{t-1} - g)
        xp.subtract(c_prev, g, out=c_out)
        c_out *= f
        c_out += g
    else:
        # C_t = f C_{t-1} + i g  (tanh_c is scratch until it receives tanh(C_t))
        xp.multiply(f, c_prev, out=c_out)
        xp.multiply(gates[..., :units], g, out=tanh_c)
        c_out += tanh_c
    if peephole is not None:
        xp.multiply(p_o, c_out, out=tanh_c)              # the output gate peeks at C_t
        o += tanh_c
        tail = slice(first + 2 * units, first + 3 * units)
        activate_gates(o, tuple(v[tail] for v in table))
    # h_t = o_t tanh(C_t)
    fastmath.tanh(c_out, out=tanh_c)
    xp.multiply(o, tanh_c, out=h_out)


def lstm_cell_backward(gates, c_prev, c, dh, dc, dgates_out, dc_prev_out, peephole=None,
                       coupled: bool = False, pinned: Sequence[int] = (), tanh_c=None,
                       slopes=None, wide_scratch=None) -> None:
    """One LSTM step backward: the gradients of the step's gate pre-activations and of C_{t-1}.

    ``gates``: the step's activations as ``lstm_cell_forward`` left them; ``c_prev``, ``c``:
    ``C_{t-1}``, ``C_t`` ``(..., H)``; ``dh``: the total ``dL/dh_t`` (from the output and from
    step t+1); ``dc``: on entry ``dL/dC_t`` through ``C_{t+1}``, on return the total
    ``dL/dC_t``. Writes ``dgates_out`` (same shape as ``gates``: ``dL/da``, the gradient of
    ``x_t W + h_{t-1} U + b``) and ``dc_prev_out`` (``dL/dC_{t-1}`` through this step; the
    caller adds ``dgates_out U^T`` to get ``dL/dh_{t-1}``). ``pinned``: indices of gate blocks
    pinned to a constant, whose pre-activation gradient is zero. ``tanh_c``: ``tanh(C_t)`` if
    forward kept it (else it is computed here). ``dc_prev_out`` doubles as the scratch buffer
    until its own value is written, last. Without peepholes, ``slopes`` (the
    :func:`slope_table` of the gates, pins included) and ``wide_scratch`` (a buffer of
    ``gates``' shape) let the gate slopes go in full-width passes (faster than per block).
    """
    xp = get_array_module(gates)
    units = c.shape[-1]
    f, g, o = _forget_candidate_output(gates, units, coupled)
    da_f, da_g, da_o = _forget_candidate_output(dgates_out, units, coupled)
    scratch = dc_prev_out
    if tanh_c is None:
        tanh_c = fastmath.tanh(c, out=xp.empty_like(c))
    if peephole is None and slopes is not None and wide_scratch is not None:
        _lstm_backward_wide(gates, c_prev, dh, dc, dgates_out, dc_prev_out, tanh_c, coupled, slopes,
                            wide_scratch)
        return
    # h = o tanh(C):  dL/da_o = dh tanh(C) o (1 - o);  dL/dC += dh o (1 - tanh(C)^2)
    xp.multiply(dh, tanh_c, out=da_o)
    _sigmoid_grad(da_o, o, da_o, scratch)
    _tanh_grad(dh, tanh_c, scratch, scratch)
    scratch *= o
    dc += scratch
    pinned_blocks = set(pinned)
    if peephole is not None:
        if (2 if coupled else 3) in pinned_blocks:       # the output gate's block
            da_o[...] = 0
        xp.multiply(da_o, peephole[2], out=scratch)    # o_t = sigma(... + p_o C_t)
        dc += scratch
    _cell_state_grads(dc, gates, c_prev, dgates_out, units, coupled)
    if not coupled:
        _sigmoid_grad(dgates_out[..., :units], gates[..., :units], dgates_out[..., :units], scratch)
    _sigmoid_grad(da_f, f, da_f, scratch)
    _tanh_grad(da_g, g, da_g, scratch)
    for k in pinned_blocks:
        dgates_out[..., k * units:(k + 1) * units] = 0
    # dL/dC_{t-1} = dC f (+ the peepholes of i and f)
    if peephole is None:
        xp.multiply(dc, f, out=dc_prev_out)
        return
    xp.multiply(dc, f, out=dc_prev_out)
    dc_prev_out += da_f * peephole[1]
    if not coupled:
        dc_prev_out += dgates_out[..., :units] * peephole[0]


def _cell_state_grads(dc, gates, c_prev, dgates_out, units: int, coupled: bool) -> None:
    """dL/d(activation) of the gates that form C_t, from the total ``dc`` = dL/dC_t, into the
    ``i`` (standard), ``f`` and ``g`` blocks of ``dgates_out`` (the slopes come after)."""
    xp = get_array_module(gates)
    f, g, _ = _forget_candidate_output(gates, units, coupled)
    da_f, da_g, _ = _forget_candidate_output(dgates_out, units, coupled)
    if coupled:
        # C = g + f (C_{t-1} - g):  dL/df = dC (C_{t-1} - g);  dL/dg = dC (1 - f)
        xp.subtract(c_prev, g, out=da_f)
        da_f *= dc
        xp.subtract(1, f, out=da_g)
        da_g *= dc
    else:
        # C = f C_{t-1} + i g:  dL/di = dC g;  dL/df = dC C_{t-1};  dL/dg = dC i
        xp.multiply(dc, g, out=dgates_out[..., :units])
        xp.multiply(dc, c_prev, out=da_f)
        xp.multiply(dc, gates[..., :units], out=da_g)


def _lstm_backward_wide(gates, c_prev, dh, dc, dgates_out, dc_prev_out, tanh_c, coupled, slopes,
                        wide):
    """``lstm_cell_backward`` without peepholes: first dL/d(activation) of every gate into
    ``dgates_out``, then each gate's slope ``(c1 - y) y mask + c0`` in full-width passes."""
    xp = get_array_module(gates)
    units = c_prev.shape[-1]
    f, _, o = _forget_candidate_output(gates, units, coupled)
    da_o = _forget_candidate_output(dgates_out, units, coupled)[2]
    scratch = dc_prev_out                               # written last
    # h = o tanh(C):  dL/do = dh tanh(C);  dL/dC += dh o (1 - tanh(C)^2)
    xp.multiply(dh, tanh_c, out=da_o)
    _tanh_grad(dh, tanh_c, scratch, scratch)
    scratch *= o
    dc += scratch
    _cell_state_grads(dc, gates, c_prev, dgates_out, units, coupled)
    c1, c0, mask = _columns_for(slopes, gates.shape)
    xp.subtract(c1, gates, out=wide)                   # the slopes of every gate at once
    wide *= gates
    if mask is not None:
        wide *= mask
    wide += c0
    dgates_out *= wide
    # dL/dC_{t-1} = dC f
    xp.multiply(dc, f, out=dc_prev_out)


# ============================================================================ GRU
def gru_cell_forward_pytorch(gates, hidden_proj, b_hn, h_prev, h_out, table, rz_scratch=None,
                             n_scratch=None) -> None:
    """One GRU step, PyTorch's form (reset applied after the recurrent product)::

        r_t = sigma(a_r)            z_t = sigma(a_z)
        n_t = tanh(x_t W_n + b_n + r_t * (h_{t-1} U_n + b_hn))
        h_t = (1 - z_t) * h_{t-1} + z_t * n_t

    ``gates``: ``(..., 3H)`` the input part ``x_t W + b`` on entry (``r, z, n``), the
    activations ``r, z, n`` on return. ``hidden_proj``: ``(..., 3H)`` ``h_{t-1} U``; on return
    its ``n`` block holds ``h_{t-1} U_n + b_hn`` (backward needs it). ``b_hn``: ``(H,)``.
    ``table``: ``gate_table`` of ``r, z`` (the sigmoid gates, pins included).
    ``rz_scratch`` ``(..., 2H)`` and ``n_scratch`` ``(..., H)``: contiguous buffers (made here
    when not given). The activations are computed in them and then copied into ``gates``: the
    gate blocks of a ``(..., 3H)`` row are strided views, and on those every NumPy pass and
    OpenCV's ``exp`` cost about twice as much (on B=32, H=256 the step takes 130 us this way
    against 190 us in place).
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    rz = xp.empty(gates.shape[:-1] + (2 * units,), gates.dtype) if rz_scratch is None else rz_scratch
    n = xp.empty_like(h_prev) if n_scratch is None else n_scratch
    xp.add(gates[..., :2 * units], hidden_proj[..., :2 * units], out=rz)
    activate_gates(rz, table)
    gates[..., :2 * units] = rz
    r, z = rz[..., :units], rz[..., units:]
    hn = hidden_proj[..., 2 * units:]
    hn += b_hn
    xp.multiply(r, hn, out=n)
    n += gates[..., 2 * units:]
    fastmath.tanh(n, out=n)
    gates[..., 2 * units:] = n
    # h_t = (1 - z) h_{t-1} + z n = h_{t-1} + z (n - h_{t-1})
    xp.subtract(n, h_prev, out=h_out)
    h_out *= z
    h_out += h_prev


def gru_cell_backward_pytorch(gates, hidden_n, h_prev, dh, dgates_out, dhidden_out, dh_prev_out,
                              pinned: Sequence[int] = ()) -> None:
    """PyTorch-form GRU step backward.

    ``gates``: activations ``r, z, n`` ``(..., 3H)``; ``hidden_n``: ``h_{t-1} U_n + b_hn``
    ``(..., H)``; ``dh``: total ``dL/dh_t``. Writes ``dgates_out`` ``(..., 3H)``: gradient of the
    input part ``x_t W + b``; ``dhidden_out`` ``(..., 3H)``: gradient of ``h_{t-1} U`` (its n
    block is also the gradient of ``b_hn``); ``dh_prev_out``: ``dL/dh_{t-1}`` through the
    direct path ``(1 - z) h_{t-1}`` (the caller adds ``dhidden_out U^T``). ``pinned``: indices
    of pinned gates among ``r, z``. ``dh_prev_out`` is the scratch buffer until written, last.
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    r, z, n = gates[..., :units], gates[..., units:2 * units], gates[..., 2 * units:]
    da_r, da_z, da_n = (dgates_out[..., k * units:(k + 1) * units] for k in range(3))
    scratch = dh_prev_out
    # h = h_prev + z (n - h_prev):  dL/dz = dh (n - h_prev);  dL/dn = dh z;  direct dh (1 - z)
    xp.subtract(n, h_prev, out=da_z)
    da_z *= dh
    _sigmoid_grad(da_z, z, da_z, scratch)
    xp.multiply(dh, z, out=da_n)
    _tanh_grad(da_n, n, da_n, scratch)
    # n = tanh(... + r hn):  dL/dr = da_n hn;  dL/dhn = da_n r
    xp.multiply(da_n, hidden_n, out=da_r)
    _sigmoid_grad(da_r, r, da_r, scratch)
    for k in pinned:
        dgates_out[..., k * units:(k + 1) * units] = 0
    dhidden_out[..., :2 * units] = dgates_out[..., :2 * units]
    xp.multiply(da_n, r, out=dhidden_out[..., 2 * units:])
    xp.subtract(1, z, out=dh_prev_out)
    dh_prev_out *= dh


def gru_cell_gates_forward_cho(gates, hidden_proj_rz, h_prev, reset_hidden_out, table) -> None:
    """Cho-form GRU step, first half: the reset and update gates and ``r_t * h_{t-1}``::

        r_t = sigma(x_t W_r + h_{t-1} U_r + b_r)    z_t = sigma(x_t W_z + h_{t-1} U_z + b_z)

    ``gates``: ``(..., 3H)`` input part ``x_t W + b``; its ``r, z`` blocks become activations.
    ``hidden_proj_rz``: ``(..., 2H)`` ``h_{t-1} U_{rz}``, a contiguous buffer the activations
    are computed in (it holds them on return) before they are copied into ``gates``, whose
    ``r, z`` blocks are strided views that every pass costs about twice as much on (see
    :func:`gru_cell_forward_pytorch`). Writes ``reset_hidden_out`` ``(..., H)`` =
    ``r_t * h_{t-1}``, which the caller multiplies by ``U_n``.
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    rz = hidden_proj_rz
    rz += gates[..., :2 * units]
    activate_gates(rz, table)
    gates[..., :2 * units] = rz
    xp.multiply(rz[..., :units], h_prev, out=reset_hidden_out)


def gru_cell_candidate_forward_cho(gates, reset_hidden_proj, h_prev, h_out) -> None:
    """Cho-form GRU step, second half (the lectures' form)::

        h~_t = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n)
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    ``gates``: ``(..., 3H)`` with ``r, z`` activated; its ``n`` block holds ``x_t W_n + b_n``
    on entry and ``h~_t`` on return. ``reset_hidden_proj``: ``(..., H)`` ``(r_t h_{t-1}) U_n``,
    a contiguous buffer ``h~_t`` is computed in (it holds it on return), as in the first half.
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    z = gates[..., units:2 * units]
    n = reset_hidden_proj
    n += gates[..., 2 * units:]
    fastmath.tanh(n, out=n)
    gates[..., 2 * units:] = n
    xp.subtract(n, h_prev, out=h_out)
    h_out *= z
    h_out += h_prev


def gru_cell_candidate_backward_cho(gates, h_prev, dh, dgates_out, dh_prev_out) -> None:
    """Cho-form GRU backward, first half: ``dL/da_z``, ``dL/da_n`` and the direct ``dL/dh_{t-1}``.

    Writes the ``z`` and ``n`` blocks of ``dgates_out`` ``(..., 3H)`` and ``dh_prev_out`` =
    ``dh (1 - z)``. The caller then forms ``dL/d(r h_{t-1}) = dL/da_n U_n^T``.
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    z, n = gates[..., units:2 * units], gates[..., 2 * units:]
    da_z, da_n = dgates_out[..., units:2 * units], dgates_out[..., 2 * units:]
    scratch = dh_prev_out                               # written last
    xp.subtract(n, h_prev, out=da_z)
    da_z *= dh
    _sigmoid_grad(da_z, z, da_z, scratch)
    xp.multiply(dh, z, out=da_n)
    _tanh_grad(da_n, n, da_n, scratch)
    xp.subtract(1, z, out=dh_prev_out)
    dh_prev_out *= dh


def gru_cell_reset_backward_cho(gates, h_prev, dreset_hidden, dgates_out, dh_prev_out,
                                pinned: Sequence[int] = ()) -> None:
    """Cho-form GRU backward, second half, given ``dreset_hidden`` = ``dL/d(r_t h_{t-1})``.

    Writes the ``r`` block of ``dgates_out``, zeroes pinned gate blocks (indices among
    ``r, z``), and adds ``dreset_hidden * r_t`` into ``dh_prev_out``. The caller adds
    ``dgates_out[..., :2H] U_{rz}^T``. ``dreset_hidden`` is used up (overwritten).
    """
    xp = get_array_module(gates)
    units = h_prev.shape[-1]
    r = gates[..., :units]
    da_r = dgates_out[..., :units]
    xp.multiply(dreset_hidden, h_prev, out=da_r)
    dreset_hidden *= r
    dh_prev_out += dreset_hidden
    _sigmoid_grad(da_r, r, da_r, dreset_hidden)
    for k in pinned:
        dgates_out[..., k * units:(k + 1) * units] = 0
