"""Recurrent blocks: SimpleRNN, LSTM (standard, peephole, coupled), GRU (Cho's or PyTorch's
form) and ConvLSTM2D, each optionally bidirectional.

Public shapes are batch-first: a sequence ``(N, T, F)`` (ConvLSTM2D: a clip
``(N, T, C, H, W)``); inside, time is the leading axis. Every block works the same way:

* the input projection ``x_t W + b`` for all T timesteps is one GEMM;
* each step is one GEMM ``h_{t-1} U`` against the stacked recurrent matrix (Cho's GRU needs a
  second, ``(r_t h_{t-1}) U_n``: the reset gate sits inside that product) plus the fused gate
  math of ``compute.ops.recurrent``;
* backward walks the steps in reverse carrying ``dL/dh`` (and ``dL/dC``), and the weight
  gradients are one GEMM each over all timesteps.

On CuPy arrays (or NumPy arrays with a host kernel backend installed, as the tests do) the
kernel path runs instead (the ``_kernel_*`` methods):

* forward, each step is one GEMM that *accumulates* ``h_{t-1} U`` into the step's slice of
  the input projection (``compute.kernels.gemm(..., accumulate=True)``, cuBLAS's beta = 1)
  plus one fused kernel writing the step's slices of the ``(T, ...)`` buffers; the GRU's
  pytorch form keeps ``h_{t-1} U`` apart (its reset gate multiplies it) and its kernel adds
  ``b_hn``; Cho's form needs two GEMMs and two kernels, the reset gate sitting between them;
* backward, each step is one fused kernel, which adds the gradient from above and the one
  carried from step t+1 itself, plus one GEMM ``d_pre U^T`` writing the carried gradient
  (Cho's GRU: two of each);
* the buffers are persistent per direction and geometry (``compute.kernels.graphs.StepLoop``):
  each call copies its inputs (projection, initial state, weights, output gradient) in, the
  loop touches nothing else, reads no device value on the host and allocates nothing, so from
  the second call on it is captured as a CUDA graph and replayed (eager if capture fails; the
  reason is logged once). Results are copied out. ConvLSTM2D shares the LSTM loop, but its
  recurrent convolution (im2col with array code) is not capturable, so it stays eager.

Probes, which record extra per-step values, keep the array code.

Settings every block shares:

``hidden_size``      units H of the hidden state (ConvLSTM2D: ``filters``).
``return_sequences`` True: the hidden state of every step ``(T, H)``; False: the last ``(H,)``.
``bidirectional``    a second set of parameters (names suffixed ``_rev``) runs the sequence
                     backwards in time; ``merge`` joins the two hidden states per step by
                     ``concat`` (``2H`` units, forward first) or ``sum`` (H units). With
                     return_sequences False the backward half contributes its final state, the
                     one that has read the whole sequence (at t = 0).
``initial_state``    ``zero``, or ``learned``: parameters ``h0`` (and ``c0``) of shape (H,),
                     shared by every sample.
``truncate_bptt``    0: full backpropagation through time. k > 0: the sequence is cut, in the
                     order the direction reads it, into chunks of k steps; the forward pass
                     carries the state across chunk boundaries unchanged, but backward stops
                     ``dL/dh`` and ``dL/dC`` there. The loss at step t therefore reaches back
                     to the first step of its own chunk and no further (at most k steps), and
                     only the first chunk's gradient reaches a learned initial state.
gate overrides       ``pin_<gate>`` = ``learned`` | ``0`` | ``1`` pins a sigmoid gate to a
                     constant in forward and backward, training and inference alike; a pinned
                     gate's pre-activation gets no gradient.

Probes (DESIGN section 3): set ``layer.probe`` to a list of sample indices of the batch (None,
the default, is off and costs nothing). Forward then fills ``layer.probe_data`` with host
NumPy arrays: ``samples`` (the indices recorded, those < N), ``gates`` (gate name ->
``(S, T, H)`` activation), ``hidden_state`` ``(S, T, H)`` and for LSTMs ``cell_state``
``(S, T, H)``. Backward adds ``grad_hidden_norm`` / ``grad_cell_norm`` ``(S, T)``: for each
probed sample the Euclidean norm over the units of the total ``dL/dh_t`` / ``dL/dC_t`` (what
reaches step t from the output and from step t+1, after truncation), and
``grad_hidden_norm_batch`` / ``grad_cell_norm_batch`` ``(T,)``: the same norm over the whole
batch and all units. ConvLSTM2D's per-step arrays are ``(F, H, W)`` in place of ``H``. A
bidirectional block records its backward half under the same keys suffixed ``_rev``.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute import kernels
from gatescope.compute.kernels import graphs
from gatescope.compute.backend import get_array_module, to_numpy
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, SettingsError
from gatescope.compute.ops import convlstm as conv_ops
from gatescope.compute.ops import recurrent as ops
from gatescope.compute.ops.dispatch import kernel_path

PIN_CHOICES = ("learned", "0", "1")


def _common_settings(units_name: str = "hidden_size") -> tuple[Setting, ...]:
    units = (Setting("hidden_size", "int", 32, "Hidden size", "Units H of the hidden state.", 1, 8192),
             ) if units_name == "hidden_size" else ()
    return units + (
        Setting("return_sequences", "bool", False, "Return sequences",
                "On: the hidden state of every timestep. Off: only the last one."),
        Setting("bidirectional", "bool", False, "Bidirectional",
                "Also read the sequence backwards in time with a second set of weights."),
        Setting("merge", "choice", "concat", "Merge directions",
                "How a bidirectional block joins its two hidden states: side by side or added.",
                choices=("concat", "sum")),
        Setting("initial_state", "choice", "zero", "Initial state",
                "Start from zeros, or from a state learned like any weight.", choices=("zero", "learned")),
        Setting("truncate_bptt", "int", 0, "Truncate BPTT",
                "0: gradients flow through the whole sequence. k: they stop at chunk boundaries "
                "every k steps.", 0, 100000),
    )


def _pin_setting(gate: str, label: str) -> Setting:
    return Setting(f"pin_{gate}", "choice", "learned", label,
                   f"Learn the {gate} gate, or pin it to all 0s or all 1s (forward and backward).",
                   choices=PIN_CHOICES)


def _glorot(rng, fan_in, fan_out, shape):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def _orthogonal(rng, units, blocks):
    """``(units, blocks * units)``: one random orthogonal matrix per gate block."""
    mats = []
    for _ in range(blocks):
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        mats.append(q * np.sign(np.diag(r)))
    return np.concatenate(mats, axis=1)


class _Recurrent(Layer):
    """What every recurrent block shares: settings, directions, merging, initial states,
    truncation, probes, and the dense input and recurrent projections."""

    category = "Recurrent"
    step_rank = 2
    has_cell = False
    gate_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ("h0",)

    def __init__(self, **settings):
        super().__init__(**settings)
        self.probe = None
        self.probe_data: dict = {}

    # ----------------------------------------------------------------- settings and shapes
    @property
    def units(self) -> int:
        return self.settings["hidden_size"]

    def time_distributed(self, in_shapes):
        return False  # a recurrent block consumes the time axis itself

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_rev") if self.settings["bidirectional"] else ("",)

    def _out_units(self) -> int:
        both = self.settings["bidirectional"] and self.settings["merge"] == "concat"
        return 2 * self.units if both else self.units

    def _check_settings(self) -> None:
        """SettingsError for a combination of settings that cannot work. Default: none."""

    def output_shape(self, in_shapes):
        self.check_rank(in_shapes)
        self._check_settings()
        t = in_shapes[0][0]
        return (t, self._out_units()) if self.settings["return_sequences"] else (self._out_units(),)

    def param_shapes(self, in_shapes):
        shapes = {}
        for sfx in self._suffixes():
            for name, shape in self._direction_shapes(in_shapes).items():
                shapes[name + sfx] = shape
            if self.settings["initial_state"] == "learned":
                for name in self.state_names:
                    shapes[name + sfx] = (self.units,)
        return shapes

    def _direction_shapes(self, in_shapes) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _formula_terms(self, in_shapes) -> tuple[str, list[str]]:
        """The core term (e.g. '4 x 32 x (2 + 32 + 1)') and extra terms of one direction."""
        raise NotImplementedError

    def param_formula(self, in_shapes):
        core, extras = self._formula_terms(in_shapes)
        if self.settings["initial_state"] == "learned":
            k = len(self.state_names)
            extras.append(f"{k} x {self.units} initial state" if k > 1 else f"{self.units} initial state")
        one = " + ".join([core] + extras)
        total = self.param_count(in_shapes)
        if self.settings["bidirectional"]:
            return f"2 directions x ({one}) = {total:,}"
        return f"{one} = {total:,}"

    def initial_params(self, in_shapes, rng):
        params = {}
        for sfx in self._suffixes():
            for name, value in self._direction_init(in_shapes, rng).items():
                params[name + sfx] = value
            if self.settings["initial_state"] == "learned":
                for name in self.state_names:
                    params[name + sfx] = np.zeros(self.units)
        return params

    def _direction_init(self, in_shapes, rng) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _pins(self) -> dict[int, float]:
        """Gate block index -> pinned constant, for the blocks of the gate table."""
        return {}

    def _column_table(self, make, kinds: str, pins: list, xp, dtype):
        """``make(kinds, pins, units, xp, dtype)`` (``ops.gate_table`` or ``ops.slope_table``),
        kept between calls: its copies tiled to a step's shape (``ops.ColumnTable``) are then
        made once per batch shape, not once per call, which matters for short sequences."""
        tables = self.__dict__.setdefault("_column_tables", {})
        key = (make.__name__, kinds, tuple(pins), self.units, xp.__name__, np.dtype(dtype).str)
        if key not in tables:
            tables[key] = make(kinds, pins, self.units, xp, dtype)
        return tables[key]

    # ----------------------------------------------------------------- layout hooks (dense)
    def _rows(self, n: int) -> tuple[int, ...]:
        """Leading axes of a step's state: (N,) for vector cells."""
        return (n,)

    def _time_major(self, x):
        """Batch-first input -> what the input projection multiplies: ``(T*N, D)`` time-major."""
        n, t = x.shape[:2]
        return x.transpose(1, 0, 2).reshape(t * n, -1)

    def _from_time_major(self, dx, n, t):
        """Gradient of ``_time_major``'s output -> gradient of the batch-first input."""
        return dx.reshape(t, n, -1).transpose(1, 0, 2)

    def _project(self, xs, sfx, t, n, out=None):
        """``x_t W + b`` for every step at once (one GEMM): ``(T,) + rows + (G,)``, written into
        ``out`` (a contiguous buffer of that shape) when given."""
        w = self.params["W" + sfx]
        if out is None:
            a = xs @ w
        else:
            a = out.reshape(-1, w.shape[1])
            get_array_module(xs).matmul(xs, w, out=a)
        a += self.params["b" + sfx]
        return a.reshape((t,) + self._rows(n) + (a.shape[-1],))

    def _project_backward(self, xs, da, sfx):
        """Adds dW, db from ``da`` ``(T,) + rows + (G,)``; returns the gradient of ``xs``."""
        w = self.params["W" + sfx]
        da2 = da.reshape(-1, w.shape[1])
        self.grads["W" + sfx] += xs.T @ da2
        self.grads["b" + sfx] += da2.sum(axis=0)
        return da2 @ w.T

    def _recurrent_product(self, h, sfx, out, t):
        """``out <- h_{t-1} U`` (the one recurrent GEMM of the step)."""
        get_array_module(h).matmul(h, self.params["U" + sfx], out=out)

    def _recurrent_backward(self, da, sfx, out, t):
        """``out <- da U^T``: the gradient of ``h_{t-1}`` through the recurrent product."""
        get_array_module(da).matmul(da, self.params["U" + sfx].T, out=out)

    def _recurrent_weight_grad(self, h_prev_all, da_all, sfx):
        """``dU += sum_t h_{t-1}^T da_t`` as one GEMM over all steps."""
        u = self.params["U" + sfx]
        self.grads["U" + sfx] += h_prev_all.reshape(-1, u.shape[0]).T @ da_all.reshape(-1, u.shape[1])

    # ----------------------------------------------------------------- kernel path: the GEMMs
    def _kernel_recurrent(self, h_prev, u, pre, t, sfx):
        """``pre += h_{t-1} U`` as one GEMM accumulating into the step's pre-activation."""
        kernels.gemm(h_prev, u, pre, accumulate=True)

    def _kernel_recurrent_backward(self, d_pre, u, out, t, sfx):
        """``out <- d_pre U^T``: the gradient carried to ``h_{t-1}``, one GEMM."""
        kernels.gemm(d_pre, u.T, out)

    # ----------------------------------------------------------------- kernel path: buffers
    #: ConvLSTM2D sets False: its recurrent convolution runs array code inside the loop.
    capturable = True
    _MAX_LOOPS = 4  # geometries kept per layer (a last, smaller batch is a second one)

    def _loops(self, sfx, t, rows, make_forward):
        """The persistent step loops of direction ``sfx`` for ``t`` steps of ``rows``: a dict
        with ``"forward"`` (a ``graphs.StepLoop`` whose buffers ``make_forward()`` allocates
        once) and, after the first backward, ``"backward"``. Keyed by the geometry and every
        setting (variant, pins, truncation, ...), so a graph is only replayed for the loop it
        recorded. Not capturable (ConvLSTM2D): fresh buffers, eager every call."""
        what = f"{self.type_name}{' reverse' if sfx else ''} ({t} steps, rows {rows})"
        if not self.capturable:
            loop = graphs.StepLoop(what, make_forward())
            loop.eager_reason = "not capturable"
            return {"forward": loop, "what": what}
        key = (sfx, t, tuple(rows), tuple(sorted((k, repr(v)) for k, v in self.settings.items())))
        store = self.__dict__.setdefault("_step_loops", {})
        if key not in store:
            while len(store) >= self._MAX_LOOPS:
                store.pop(next(iter(store)))
            store[key] = {"forward": graphs.StepLoop(what, make_forward()), "what": what}
        else:
            store[key] = store.pop(key)  # most recently used last
        return store[key]

    def _backward_loop(self, loops, make_backward):
        """The backward ``StepLoop`` beside ``loops["forward"]``: its own buffers from
        ``make_backward()`` plus the forward's, which it reads."""
        if "backward" not in loops:
            own = make_backward()
            buffers = dict(loops["forward"].buffers)
            buffers.update(own)
            loop = graphs.StepLoop(loops["what"] + " backward", buffers)
            if loops["forward"].eager_reason == "not capturable":
                loop.eager_reason = "not capturable"
                return loop
            loops["backward"] = loop
        return loops["backward"]

    def _kernel_loop_forward(self, xs, n, t, sfx, reverse, gate_width, extra):
        """The kernel path's common forward set-up: the persistent loops (see :meth:`_loops`)
        with buffers ``pre`` (the input projection, ``(T,) + rows + (gate_width,)``), ``hs``
        (``(T+1,) + rows + (H,)``), ``u`` (a copy of U, so a graph never reads a replaced
        array) and ``extra`` (name -> shape); the projection, U and the initial state written
        in. Returns ``(loops, forward loop)``."""
        xp = get_array_module(xs)
        rows = self._rows(n)
        state = (t + 1,) + rows + (self.units,)
        u = self.params["U" + sfx]

        def make():
            buffers = {"pre": xp.empty((t,) + rows + (gate_width,), dtype=xs.dtype),
                       "hs": xp.empty(state, dtype=xs.dtype), "u": xp.empty(u.shape, dtype=u.dtype)}
            buffers.update({name: xp.empty(shape, dtype=xs.dtype) for name, shape in extra.items()})
            return buffers

        loops = self._loops(sfx, t, rows, make)
        loop = loops["forward"]
        self._project(xs, sfx, t, n, out=loop.pre)
        loop.u[...] = u
        self._initial("h0", sfx, loop.hs[t if reverse else 0])
        return loops, loop

    @staticmethod
    def _cache(loops, loop, **entries):
        """The forward's cache on the kernel path: views of the persistent buffers, which stay
        this forward's until the layer's next forward (whose backward is then the one due, as
        on the array path)."""
        entries.update(loops=loops, loop=loop)
        return entries

    def _public_seq(self, seq):
        """Time-major ``(T, S) + unit axes`` -> batch-first ``(S, T) + public unit shape``."""
        return seq.swapaxes(0, 1)

    def _internal_seq(self, grad):
        """Batch-first ``(N, T) + public unit shape`` -> time-major contiguous internal layout."""
        xp = get_array_module(grad)
        return xp.ascontiguousarray(grad.swapaxes(0, 1))

    def _public_step(self, h):
        return h

    def _internal_step(self, grad):
        return grad

    # ----------------------------------------------------------------- state helpers
    def _initial(self, name, sfx, like):
        """The initial state ``(rows..., H)``: zeros or the learned vector broadcast."""
        if self.settings["initial_state"] == "learned":
            like[...] = self.params[name + sfx]
        else:
            like[...] = 0

    def _initial_grad(self, name, sfx, grad):
        if self.settings["initial_state"] == "learned":
            axes = tuple(range(grad.ndim - 1))
            self.grads[name + sfx] += grad.sum(axis=axes)

    def _cut(self, processed: int) -> bool:
        """True where truncated BPTT stops the gradient before processing step ``processed``."""
        k = self.settings["truncate_bptt"]
        return bool(k) and processed > 0 and processed % k == 0

    # ----------------------------------------------------------------- probes
    def _probe_start(self, xp, n, t):
        if self.probe is None:
            return None
        idx = [int(i) for i in self.probe if 0 <= int(i) < n]
        return np.asarray(idx, dtype=np.int64)

    def _probe_recorder(self, xp, t, dtype):
        """Per-step gradient-norm buffers for backward, or None when probes are off."""
        idx = self._probe_idx
        if idx is None:
            return None
        rec = {"idx": xp.asarray(idx), "h": xp.zeros((t, len(idx)), dtype=dtype),
               "h_batch": xp.zeros(t, dtype=dtype)}
        if self.has_cell:
            rec["c"], rec["c_batch"] = xp.zeros((t, len(idx)), dtype=dtype), xp.zeros(t, dtype=dtype)
        return rec

    @staticmethod
    def _record_norm(rec, key, t, grad):
        xp = get_array_module(grad)
        flat = grad.reshape(grad.shape[0], -1)
        sq = (flat * flat).sum(axis=1)
        rec[key][t] = xp.sqrt(sq[rec["idx"]])
        rec[key + "_batch"][t] = xp.sqrt(sq.sum())

    def _probe_finish_backward(self, rec, sfx):
        self.probe_data["grad_hidden_norm" + sfx] = to_numpy(rec["h"]).T.copy()
        self.probe_data["grad_hidden_norm_batch" + sfx] = to_numpy(rec["h_batch"])
        if self.has_cell:
            self.probe_data["grad_cell_norm" + sfx] = to_numpy(rec["c"]).T.copy()
            self.probe_data["grad_cell_norm_batch" + sfx] = to_numpy(rec["c_batch"])

    def _probe_gate_blocks(self, gates_sel):
        """Gate name -> ``(T, S, ..., H)`` activations from the stored gates of the samples."""
        units = self.units
        return {name: gates_sel[..., k * units:(k + 1) * units] for k, name in enumerate(self.gate_names)}

    def _probe_forward(self, cache, sfx, reverse):
        idx = self._probe_idx
        hs = cache["h"]
        seq = hs[:-1] if reverse else hs[1:]
        self.probe_data["samples"] = idx.copy()
        self.probe_data["hidden_state" + sfx] = to_numpy(self._public_seq(seq[:, idx]))
        if self.has_cell:
            cs = cache["c"]
            cseq = cs[:-1] if reverse else cs[1:]
            self.probe_data["cell_state" + sfx] = to_numpy(self._public_seq(cseq[:, idx]))
        gates = {}
        if "gates" in cache:
            for name, block in self._probe_gate_blocks(cache["gates"][:, idx]).items():
                gates[name] = to_numpy(self._public_seq(block))
        self.probe_data["gates" + sfx] = gates

    # ----------------------------------------------------------------- forward / backward
    def forward(self, inputs, training):
        x = inputs[0]
        xp = get_array_module(x)
        n, t = x.shape[:2]
        xs = self._time_major(x)
        self._probe_idx = self._probe_start(xp, n, t)
        if self._probe_idx is not None:
            self.probe_data = {}
        self._ctx = {"n": n, "t": t, "xs": xs,
                     "kernels": self._probe_idx is None and kernel_path(xs, *self.params.values())}
        outs = []
        for sfx in self._suffixes():
            reverse = sfx == "_rev"
            cache = self._run_forward(xs, n, t, sfx, reverse)
            self._ctx[sfx] = cache
            hs = cache["h"]
            if self.settings["return_sequences"]:
                outs.append(self._public_seq(hs[:-1] if reverse else hs[1:]))
            else:
                outs.append(self._public_step(hs[0] if reverse else hs[-1]))
            if self._probe_idx is not None:
                self._probe_forward(cache, sfx, reverse)
        if len(outs) == 1:
            # The kernel path's states live in persistent buffers that the next call overwrites.
            return outs[0].copy() if self._ctx["kernels"] else xp.ascontiguousarray(outs[0])
        if self.settings["merge"] == "sum":
            return outs[0] + outs[1]
        axis = 2 if self.settings["return_sequences"] else 1
        return xp.concatenate(outs, axis=axis)

    def backward(self, grad_output):
        xp = get_array_module(grad_output)
        n, t, xs = self._ctx["n"], self._ctx["t"], self._ctx["xs"]
        suffixes = self._suffixes()
        units = self.units
        dxs = None
        for k, sfx in enumerate(suffixes):
            reverse = sfx == "_rev"
            g = grad_output
            if len(suffixes) == 2 and self.settings["merge"] == "concat":
                axis = 2 if self.settings["return_sequences"] else 1   # the unit / channel axis
                g = grad_output[(slice(None),) * axis + (slice(k * units, (k + 1) * units),)]
            cache = self._ctx[sfx]
            if self.settings["return_sequences"]:
                dh_seq = self._internal_seq(g)
            else:
                hs = cache["h"]
                dh_seq = xp.zeros((t,) + hs.shape[1:], dtype=grad_output.dtype)
                dh_seq[0 if reverse else t - 1] = self._internal_step(g)
            rec = self._probe_recorder(xp, t, grad_output.dtype)
            da = self._run_backward(dh_seq, cache, sfx, reverse, rec)
            if rec is not None:
                self._probe_finish_backward(rec, sfx)
            d = self._project_backward(xs, da, sfx)
            dxs = d if dxs is None else dxs + d
        return [self._from_time_major(dxs, n, t)]

    def _run_forward(self, xs, n, t, sfx, reverse) -> dict:
        raise NotImplementedError

    def _run_backward(self, dh_seq, cache, sfx, reverse, rec):
        """Walks the steps backwards; returns ``dL/d(x_t W + b)`` for every step."""
        raise NotImplementedError

    def _kernel_pins(self, letters: str) -> dict[str, float]:
        """The gate overrides as ``compute.kernels`` takes them: gate letter -> constant."""
        return {letters[k]: value for k, value in self._pins().items()}

    @staticmethod
    def _order(t, reverse):
        """(time index of each processing step, offset of the previous state, of the new one).

        The state array ``hs`` has T+1 entries: going forward ``hs[0]`` is the initial state
        and ``hs[t+1]`` the state after step t; going backward ``hs[T]`` is the initial state
        and ``hs[t]`` the state after reading step t.
        """
        steps = range(t - 1, -1, -1) if reverse else range(t)
        return steps, (1, 0) if reverse else (0, 1)


# ============================================================================ SimpleRNN
@register
class SimpleRNN(_Recurrent):
    """Elman RNN (seed 003)::

        h_t = act(x_t W + h_{t-1} U + b),   act = tanh | relu

    ``W`` (D, H) is the input projection and ``U`` (H, H) the recurrent matrix; the lectures
    write the same cell as ``U x_t + W h_{t-1}``, so their U is our W and their W our U (the
    naming is shared with LSTM and GRU, whose layout is a contract). Parameters:
    ``1 x H x (D + H + 1)``.
    """

    type_name = "SimpleRNN"
    summary = "Plain (Elman) recurrent layer: the new hidden state mixes the input and the previous state."
    settings_spec = _common_settings() + (
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
        return {"W": _glorot(rng, d, h, (d, h)), "U": _orthogonal(rng, h, 1), "b": np.zeros(h)}

    def _run_forward(self, xs, n, t, sfx, reverse):
        if self._ctx["kernels"]:
            return self._kernel_forward(xs, n, t, sfx, reverse)
        xp = get_array_module(xs)
        act = self.settings["activation"]
        a = self._project(xs, sfx, t, n)
        hs = xp.empty((t + 1,) + a.shape[1:], dtype=a.dtype)
        steps, (po, no) = self._order(t, reverse)
        self._initial("h0", sfx, hs[t if reverse else 0])
        tmp = xp.empty_like(hs[0])
        for s in steps:
            self._recurrent_product(hs[s + po], sfx, tmp, s)
            a[s] += tmp
            ops.rnn_cell_forward(a[s], hs[s + no], act)
        return {"h": hs}

    def _kernel_forward(self, xs, n, t, sfx, reverse):
        """Per step: one GEMM accumulating h_{t-1} U into the step's projection, one kernel."""
        act = self.settings["activation"]
        loops, loop = self._kernel_loop_forward(xs, n, t, sfx, reverse, self.units, {})
        a, hs, u = loop.pre, loop.hs, loop.u
        steps, (po, no) = self._order(t, reverse)

        def body():
            for s in steps:
                self._kernel_recurrent(hs[s + po], u, a[s], s, sfx)
                kernels.simple_rnn_forward(a[s], act, out=hs[s + no])
        loop.run(body)
        return self._cache(loops, loop, h=hs)

    def _kernel_backward(self, dh_seq, cache, sfx, reverse):
        """Per step: one kernel (adding the carried gradient itself), one GEMM d_pre U^T."""
        xp = get_array_module(dh_seq)
        hs, u = cache["loop"].hs, cache["loop"].u
        t = dh_seq.shape[0]
        act = self.settings["activation"]
        steps, (po, no) = self._order(t, reverse)
        loop = self._backward_loop(cache["loops"], lambda: {
            "dh_seq": xp.empty_like(dh_seq), "da": xp.empty_like(dh_seq), "carry": xp.empty_like(dh_seq[0])})
        da, carry, dh_in = loop.da, loop.carry, loop.dh_seq
        dh_in[...] = dh_seq

        def body():
            carried = None                                # nothing flows into h_T
            for k, s in reversed(list(enumerate(steps))):
                kernels.simple_rnn_backward(dh_in[s], hs[s + no], act, out=da[s], dh_next=carried)
                carried = None
                if not self._cut(k):
                    self._kernel_recurrent_backward(da[s], u, carry, s, sfx)   # dL/dh_{t-1}
                    carried = carry
        loop.run(body)
        self._initial_grad("h0", sfx, carry)
        self._recurrent_weight_grad(hs[po:po + t], da, sfx)
        return da

    def _run_backward(self, dh_seq, cache, sfx, reverse, rec):
        if "loop" in cache:
            return self._kernel_backward(dh_seq, cache, sfx, reverse)
        xp = get_array_module(dh_seq)
        hs = cache["h"]
        t = dh_seq.shape[0]
        act = self.settings["activation"]
        steps, (po, no) = self._order(t, reverse)
        da = xp.empty_like(dh_seq)
        dh = xp.zeros_like(dh_seq[0])
        for k, s in reversed(list(enumerate(steps))):
            dh += dh_seq[s]                               # total dL/dh_t
            if rec is not None:
                self._record_norm(rec, "h", s, dh)
            ops.rnn_cell_backward(hs[s + no], dh, da[s], act)
            self._recurrent_backward(da[s], sfx, dh, s)   # dL/dh_{t-1} = da_t U^T
            if self._cut(k):
                dh[...] = 0
        self._initial_grad("h0", sfx, dh)
        self._recurrent_weight_grad(hs[po:po + t], da, sfx)
        return da


# ============================================================================ LSTM
@register
class LSTM(_Recurrent):
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
    """

    type_name = "LSTM"
    summary = "Long short-term memory: a cell state guarded by input, forget and output gates."
    has_cell = True
    gate_names = ("input", "forget", "candidate", "output")
    state_names = ("h0", "c0")
    settings_spec = _common_settings() + (
        Setting("variant", "choice", "standard", "Variant",
                "standard; peephole (gates see the cell state); coupled (input gate = 1 - forget gate).",
                choices=("standard", "peephole", "coupled")),
        Setting("forget_bias_init", "float", 1.0, "Forget bias init",
                "Initial bias of the forget gate; 1 makes a fresh LSTM remember.", -10.0, 10.0),
        _pin_setting("input", "Input gate"),
        _pin_setting("forget", "Forget gate"),
        _pin_setting("output", "Output gate"),
    )

    @property
    def coupled(self) -> bool:
        return self.settings["variant"] == "coupled"

    @property
    def peephole(self) -> bool:
        return self.settings["variant"] == "peephole"

    def _n_blocks(self) -> int:
        return 3 if self.coupled else 4

    def _check_settings(self):
        if self.coupled and self.settings["pin_input"] != "learned":
            raise SettingsError("a coupled LSTM has no input gate of its own (it is 1 - forget gate); "
                                "pin the forget gate instead, and leave Input gate on learned")

    def _direction_shapes(self, in_shapes):
        (_, d), h, g = in_shapes[0], self.units, self._n_blocks()
        shapes = {"W": (d, g * h), "U": (h, g * h), "b": (g * h,)}
        if self.peephole:
            shapes.update(p_i=(h,), p_f=(h,), p_o=(h,))
        return shapes

    def _formula_terms(self, in_shapes):
        (_, d), h = in_shapes[0], self.units
        extras = [f"3 x {h} peepholes"] if self.peephole else []
        return f"{self._n_blocks()} x {h} x ({d} + {h} + 1)", extras

    def _forget_block(self) -> int:
        return 0 if self.coupled else 1

    def _direction_init(self, in_shapes, rng):
        (_, d), h, g = in_shapes[0], self.units, self._n_blocks()
        b = np.zeros(g * h)
        f = self._forget_block()
        b[f * h:(f + 1) * h] = self.settings["forget_bias_init"]
        params = {"W": np.concatenate([_glorot(rng, d, h, (d, h)) for _ in range(g)], axis=1),
                  "U": _orthogonal(rng, h, g), "b": b}
        if self.peephole:
            params.update(p_i=np.zeros(h), p_f=np.zeros(h), p_o=np.zeros(h))
        return params

    def _pins(self):
        names = ("forget", "candidate", "output") if self.coupled else ("input", "forget", "candidate", "output")
        pins = {}
        for k, name in enumerate(names):
            value = self.settings.get(f"pin_{name}", "learned")  # there is no pin_candidate
            if value != "learned":
                pins[k] = float(value)
        return pins

    def _table(self, xp, dtype):
        kinds = "sts" if self.coupled else "ssts"
        pins = self._pins()
        return self._column_table(ops.gate_table, kinds, [pins.get(k) for k in range(len(kinds))], xp, dtype)

    def _peepholes(self, sfx):
        if not self.peephole:
            return None
        return tuple(self.params[f"p_{g}{sfx}"] for g in "ifo")

    def _run_forward(self, xs, n, t, sfx, reverse):
        if self._ctx["kernels"]:
            return self._kernel_forward(xs, n, t, sfx, reverse)
        xp = get_array_module(xs)
        gates = self._project(xs, sfx, t, n)            # becomes the gate activations in place
        state_shape = gates.shape[1:-1] + (self.units,)
        hs = xp.empty((t + 1,) + state_shape, dtype=gates.dtype)
        cs = xp.empty_like(hs)
        start = t if reverse else 0
        self._initial("h0", sfx, hs[start])
        self._initial("c0", sfx, cs[start])
        table, peep = self._table(xp, gates.dtype), self._peepholes(sfx)
        tmp = xp.empty_like(gates[0])
        steps, (po, no) = self._order(t, reverse)
        tanh_cs = xp.empty((t,) + state_shape, dtype=gates.dtype)   # tanh(C_t), kept for backward
        with ops.quiet_overflow():
            for s in steps:
                self._recurrent_product(hs[s + po], sfx, tmp, s)
                gates[s] += tmp
                ops.lstm_cell_forward(gates[s], cs[s + po], cs[s + no], hs[s + no], table, peep,
                                      self.coupled, tanh_cs[s])
        return {"h": hs, "c": cs, "gates": gates, "tanh_c": tanh_cs}

    # ----------------------------------------------------------------- fused kernels
    def _kernel_variant(self) -> str:
        return "coupled" if self.coupled else "peephole" if self.peephole else "standard"

    @staticmethod
    def _rows2d(a):
        """A step's ``rows + (units,)`` array as the kernels' ``(B, units)`` matrix (a view:
        ConvLSTM's ``(N, P, units)`` pixel rows become N*P kernel rows)."""
        return a.reshape(-1, a.shape[-1])

    def _kernel_forward(self, xs, n, t, sfx, reverse):
        """Per step: one GEMM accumulating h_{t-1} U into the step's projection (ConvLSTM: its
        im2col first), then ``compute.kernels.lstm_forward`` writing the step's slices in place.
        tanh(C_t) is not kept: ``lstm_backward`` recomputes it (it takes no such input)."""
        h, g = self.units, self._n_blocks() * self.units
        rows = self._rows(n)
        extra = {"gates": (t,) + rows + (g,), "cs": (t + 1,) + rows + (h,)}
        if self.peephole:
            extra["peep"] = (3, h)
        loops, loop = self._kernel_loop_forward(xs, n, t, sfx, reverse, g, extra)
        pre, gates, hs, cs, u = loop.pre, loop.gates, loop.hs, loop.cs, loop.u
        self._initial("c0", sfx, cs[t if reverse else 0])
        peep = None
        if self.peephole:
            peep = loop.peep
            for k, gate in enumerate("ifo"):
                peep[k] = self.params[f"p_{gate}{sfx}"]
        variant = self._kernel_variant()
        pins = self._kernel_pins(kernels.LSTM_GATES[variant])
        steps, (po, no) = self._order(t, reverse)
        flat = self._rows2d

        def body():
            for s in steps:
                self._kernel_recurrent(flat(hs[s + po]), u, flat(pre[s]), s, sfx)
                kernels.lstm_forward(flat(pre[s]), flat(cs[s + po]), peep, variant, pins,
                                     out=(flat(gates[s]), flat(cs[s + no]), flat(hs[s + no]), None))
        loop.run(body)
        return self._cache(loops, loop, h=hs, c=cs, gates=gates, tanh_c=None)

    def _kernel_backward(self, dh_seq, cache, sfx, reverse):
        """Per step: ``compute.kernels.lstm_backward`` (which adds dL/dh from above and the
        part carried from step t+1 itself) and one GEMM ``d_pre U^T`` writing the carried part.
        dL/dC alternates between two buffers (a kernel's output must not overlap its input);
        a truncation cut passes no carried gradient into the next step."""
        xp = get_array_module(dh_seq)
        fwd = cache["loop"]
        hs, cs, gates, u = fwd.hs, fwd.cs, fwd.gates, fwd.u
        peep = fwd.peep if self.peephole else None
        t = dh_seq.shape[0]
        variant = self._kernel_variant()
        pins = self._kernel_pins(kernels.LSTM_GATES[variant])
        steps, (po, no) = self._order(t, reverse)
        loop = self._backward_loop(cache["loops"], lambda: {
            "dh_seq": xp.empty_like(dh_seq), "dgates": xp.empty_like(gates),
            "carry": xp.empty_like(dh_seq[0]), "dcs": xp.empty((2,) + dh_seq.shape[1:], dtype=dh_seq.dtype)})
        dh_in, dgates, carry, dcs = loop.dh_seq, loop.dgates, loop.carry, loop.dcs
        dh_in[...] = dh_seq
        flat = self._rows2d

        def body():
            carried = dc_next = None                      # nothing flows into h_T, C_T
            for k, s in reversed(list(enumerate(steps))):
                dc_prev = dcs[k % 2]
                kernels.lstm_backward(flat(dh_in[s]), dc_next, flat(gates[s]), flat(cs[s + po]),
                                      flat(cs[s + no]), peep, variant, pins,
                                      out=(flat(dgates[s]), flat(dc_prev)), dh_next=carried)
                carried, dc_next = None, None
                if not self._cut(k):
                    self._kernel_recurrent_backward(dgates[s], u, carry, s, sfx)   # dL/dh_{t-1}
                    carried, dc_next = flat(carry), flat(dc_prev)
        loop.run(body)
        # Processing index 0 (the last step run) is never cut: carry holds dL/dh of the
        # initial state and dcs[0] its dL/dC.
        return self._finish_backward(carry, dcs[0], hs, cs, dgates, po, no, t, sfx,
                                     self._peepholes(sfx))

    def _run_backward(self, dh_seq, cache, sfx, reverse, rec):
        if "loop" in cache:
            return self._kernel_backward(dh_seq, cache, sfx, reverse)
        xp = get_array_module(dh_seq)
        hs, cs, gates, tanh_cs = cache["h"], cache["c"], cache["gates"], cache["tanh_c"]
        t = dh_seq.shape[0]
        peep = self._peepholes(sfx)
        pinned = tuple(self._pins())
        steps, (po, no) = self._order(t, reverse)
        dgates = xp.empty_like(gates)
        dh = xp.zeros_like(dh_seq[0])
        dc, dc_prev = xp.zeros_like(dh), xp.empty_like(dh)
        kinds = "sts" if self.coupled else "ssts"
        pins = self._pins()
        slopes = self._column_table(ops.slope_table, kinds, [pins.get(k) for k in range(len(kinds))], xp,
                                    gates.dtype)
        wide = xp.empty_like(gates[0])
        for k, s in reversed(list(enumerate(steps))):
            dh += dh_seq[s]                               # total dL/dh_t
            if rec is not None:
                self._record_norm(rec, "h", s, dh)
            ops.lstm_cell_backward(gates[s], cs[s + po], cs[s + no], dh, dc, dgates[s], dc_prev,
                                   peep, self.coupled, pinned, tanh_cs[s], slopes, wide)
            if rec is not None:
                self._record_norm(rec, "c", s, dc)        # dc is now the total dL/dC_t
            self._recurrent_backward(dgates[s], sfx, dh, s)   # dL/dh_{t-1} = da_t U^T
            dc, dc_prev = dc_prev, dc
            if self._cut(k):
                dh[...] = 0
                dc[...] = 0
        return self._finish_backward(dh, dc, hs, cs, dgates, po, no, t, sfx, peep)

    def _finish_backward(self, dh, dc, hs, cs, dgates, po, no, t, sfx, peep):
        """The gradients over all steps at once: initial states, dU (one GEMM), peepholes."""
        self._initial_grad("h0", sfx, dh)
        self._initial_grad("c0", sfx, dc)
        self._recurrent_weight_grad(hs[po:po + t], dgates, sfx)
        if peep is not None:
            h = self.units
            axes = tuple(range(dgates.ndim - 1))
            c_prev, c_new = cs[po:po + t], cs[no:no + t]
            self.grads["p_i" + sfx] += (dgates[..., :h] * c_prev).sum(axis=axes)
            self.grads["p_f" + sfx] += (dgates[..., h:2 * h] * c_prev).sum(axis=axes)
            self.grads["p_o" + sfx] += (dgates[..., 3 * h:] * c_new).sum(axis=axes)
        return dgates

    def _probe_gate_blocks(self, gates_sel):
        h = self.units
        if not self.coupled:
            return super()._probe_gate_blocks(gates_sel)
        f = gates_sel[..., :h]
        return {"input": 1 - f, "forget": f, "candidate": gates_sel[..., h:2 * h],
                "output": gates_sel[..., 2 * h:3 * h]}


# ============================================================================ GRU
@register
class GRU(_Recurrent):
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
    """

    type_name = "GRU"
    summary = "Gated recurrent unit: reset and update gates, no separate cell state."
    gate_names = ("reset", "update", "candidate")
    settings_spec = _common_settings() + (
        Setting("form", "choice", "cho", "Form",
                "cho: the lectures' candidate tanh(W x + U (r*h) + b); pytorch: r applied after U h.",
                choices=("cho", "pytorch")),
        _pin_setting("reset", "Reset gate"),
        _pin_setting("update", "Update gate"),
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
        params = {"W": np.concatenate([_glorot(rng, d, h, (d, h)) for _ in range(3)], axis=1),
                  "U": _orthogonal(rng, h, 3), "b": np.zeros(3 * h)}
        if self.pytorch_form:
            params["b_hn"] = np.zeros(h)
        return params

    def _pins(self):
        pins = {}
        for k, name in enumerate(("reset", "update")):
            if self.settings[f"pin_{name}"] != "learned":
                pins[k] = float(self.settings[f"pin_{name}"])
        return pins

    def _run_forward(self, xs, n, t, sfx, reverse):
        if self._ctx["kernels"]:
            return self._kernel_forward(xs, n, t, sfx, reverse)
        xp = get_array_module(xs)
        h = self.units
        gates = self._project(xs, sfx, t, n)
        hs = xp.empty((t + 1,) + gates.shape[1:-1] + (h,), dtype=gates.dtype)
        self._initial("h0", sfx, hs[t if reverse else 0])
        pins = self._pins()
        table = self._column_table(ops.gate_table, "ss", [pins.get(0), pins.get(1)], xp, gates.dtype)
        u = self.params["U" + sfx]
        steps, (po, no) = self._order(t, reverse)
        cache = {"h": hs, "gates": gates}
        with ops.quiet_overflow():
            self._gru_steps(xp, gates, hs, u, steps, po, no, table, sfx, cache)
        return cache

    def _kernel_forward(self, xs, n, t, sfx, reverse):
        """The step loop with the fused GRU kernels, writing each step's slices in place; the
        kernels read ``pre`` (x W + b) and write the activations into ``gates``.

        pytorch form, per step: one GEMM h_{t-1} U into ``hidden`` (kept for backward) and one
        kernel, which adds b_hn. Cho's form: GEMM h_{t-1} U_rz, kernel (r, z, r*h_{t-1}), GEMM
        (r*h_{t-1}) U_n, kernel (n, h_t); U_rz and U_n are column slices of U, passed to the
        GEMM with their leading dimension (no copy)."""
        h = self.units
        rows = self._rows(n)
        extra = {"gates": (t,) + rows + (3 * h,)}
        if self.pytorch_form:
            extra.update(hidden=(t,) + rows + (3 * h,), b_hn=(h,))
        else:
            extra.update(reset_hidden=(t,) + rows + (h,), h_rz=rows + (2 * h,), h_n=rows + (h,))
        loops, loop = self._kernel_loop_forward(xs, n, t, sfx, reverse, 3 * h, extra)
        x_gates, gates, hs, u = loop.pre, loop.gates, loop.hs, loop.u
        pins = self._kernel_pins("rz")
        steps, (po, no) = self._order(t, reverse)
        if self.pytorch_form:
            hidden, b_hn = loop.hidden, loop.b_hn
            b_hn[...] = self.params["b_hn" + sfx]

            def body():
                for s in steps:
                    kernels.gemm(hs[s + po], u, hidden[s])
                    kernels.gru_pytorch_forward(x_gates[s], hidden[s], hs[s + po], pins,
                                                out=(gates[s], hs[s + no]), b_hn=b_hn)
            loop.run(body)
            return self._cache(loops, loop, h=hs, gates=gates, hidden=hidden)
        reset_hidden, h_rz, h_n = loop.reset_hidden, loop.h_rz, loop.h_n

        def body():
            for s in steps:
                kernels.gemm(hs[s + po], u[:, :2 * h], h_rz)
                kernels.gru_cho_forward_rz(x_gates[s], h_rz, hs[s + po], pins, out=(gates[s], reset_hidden[s]))
                kernels.gemm(reset_hidden[s], u[:, 2 * h:], h_n)
                kernels.gru_cho_forward_n(x_gates[s], h_n, hs[s + po], gates[s], pins, out=hs[s + no])
        loop.run(body)
        return self._cache(loops, loop, h=hs, gates=gates, reset_hidden=reset_hidden)

    def _kernel_backward(self, dh_seq, cache, sfx, reverse):
        """Backward step loop with the fused GRU kernels; each adds the gradient from above and
        the one carried from step t+1 itself. The carried dL/dh_{t-1} = (kernel's direct part)
        + GEMMs accumulating into it, alternating between two buffers (a kernel's output must
        not overlap its input); a truncation cut carries nothing into the next step."""
        xp = get_array_module(dh_seq)
        fwd = cache["loop"]
        hs, gates, u = fwd.hs, fwd.gates, fwd.u
        t, h = dh_seq.shape[0], self.units
        pins = self._kernel_pins("rz")
        steps, (po, no) = self._order(t, reverse)
        own = {"dh_seq": dh_seq.shape, "dgates": gates.shape, "carries": (2,) + dh_seq.shape[1:]}
        if self.pytorch_form:
            own["dhidden"] = gates.shape
        else:
            own["d_reset_hidden"] = dh_seq.shape[1:]
        loop = self._backward_loop(cache["loops"], lambda: {
            name: xp.empty(shape, dtype=dh_seq.dtype) for name, shape in own.items()})
        dh_in, dgates, carries = loop.dh_seq, loop.dgates, loop.carries
        dh_in[...] = dh_seq
        if self.pytorch_form:
            hidden, dhidden, b_hn = fwd.hidden, loop.dhidden, fwd.b_hn

            def body():
                carried = None
                for k, s in reversed(list(enumerate(steps))):
                    out = carries[k % 2]
                    kernels.gru_pytorch_backward(dh_in[s], gates[s], hs[s + po], hidden[s], pins,
                                                 out=(dgates[s], dhidden[s], out), dh_next=carried, b_hn=b_hn)
                    carried = None
                    if not self._cut(k):
                        kernels.gemm(dhidden[s], u.T, out, accumulate=True)   # + dhidden U^T
                        carried = out
            loop.run(body)
            self._recurrent_weight_grad(hs[po:po + t], dhidden, sfx)
            axes = tuple(range(dhidden.ndim - 1))
            self.grads["b_hn" + sfx] += dhidden[..., 2 * h:].sum(axis=axes)
        else:
            d_reset_hidden = loop.d_reset_hidden

            def body():
                carried = None
                for k, s in reversed(list(enumerate(steps))):
                    out = carries[k % 2]
                    kernels.gru_cho_backward_n(dh_in[s], gates[s], hs[s + po], pins,
                                               out=(dgates[s], out), dh_next=carried)
                    kernels.gemm(dgates[s, :, 2 * h:], u[:, 2 * h:].T, d_reset_hidden)   # dL/d(r h_{t-1})
                    kernels.gru_cho_backward_r(d_reset_hidden, gates[s], hs[s + po], dgates[s], out, pins)
                    carried = None
                    if not self._cut(k):
                        kernels.gemm(dgates[s, :, :2 * h], u[:, :2 * h].T, out, accumulate=True)
                        carried = out
            loop.run(body)
            du = self.grads["U" + sfx]
            flat_h, flat_g = hs[po:po + t].reshape(-1, h), dgates.reshape(-1, 3 * h)
            du[:, :2 * h] += flat_h.T @ flat_g[:, :2 * h]
            du[:, 2 * h:] += fwd.reset_hidden.reshape(-1, h).T @ flat_g[:, 2 * h:]
        self._initial_grad("h0", sfx, carries[0])         # processing index 0 is never cut
        return dgates

    def _gru_steps(self, xp, gates, hs, u, steps, po, no, table, sfx, cache):
        """The forward step loop of either form; fills ``hs`` and the form's cache entries."""
        h = self.units
        if self.pytorch_form:
            hidden = xp.empty_like(gates)                # h_{t-1} U per step, kept for backward
            b_hn = self.params["b_hn" + sfx]
            rz, n = xp.empty(gates.shape[1:-1] + (2 * h,), gates.dtype), xp.empty_like(hs[0])
            for s in steps:
                xp.matmul(hs[s + po], u, out=hidden[s])
                ops.gru_cell_forward_pytorch(gates[s], hidden[s], b_hn, hs[s + po], hs[s + no], table, rz, n)
            cache["hidden"] = hidden
        else:
            reset_hidden = xp.empty_like(hs[1:])          # r_t * h_{t-1} per step, kept for backward
            tmp_rz, tmp_n = xp.empty(gates.shape[1:-1] + (2 * h,), gates.dtype), xp.empty_like(hs[0])
            for s in steps:
                xp.matmul(hs[s + po], u[:, :2 * h], out=tmp_rz)
                ops.gru_cell_gates_forward_cho(gates[s], tmp_rz, hs[s + po], reset_hidden[s], table)
                xp.matmul(reset_hidden[s], u[:, 2 * h:], out=tmp_n)
                ops.gru_cell_candidate_forward_cho(gates[s], tmp_n, hs[s + po], hs[s + no])
            cache["reset_hidden"] = reset_hidden

    def _run_backward(self, dh_seq, cache, sfx, reverse, rec):
        if "loop" in cache:
            return self._kernel_backward(dh_seq, cache, sfx, reverse)
        xp = get_array_module(dh_seq)
        hs, gates = cache["h"], cache["gates"]
        t, h = dh_seq.shape[0], self.units
        u = self.params["U" + sfx]
        pinned = tuple(self._pins())
        steps, (po, no) = self._order(t, reverse)
        dgates = xp.empty_like(gates)
        dh = xp.zeros_like(dh_seq[0])
        dh_prev = xp.empty_like(dh)
        if self.pytorch_form:
            hidden = cache["hidden"]
            dhidden = xp.empty_like(gates)
            for k, s in reversed(list(enumerate(steps))):
                dh += dh_seq[s]
                if rec is not None:
                    self._record_norm(rec, "h", s, dh)
                ops.gru_cell_backward_pytorch(gates[s], hidden[s, ..., 2 * h:], hs[s + po], dh,
                                              dgates[s], dhidden[s], dh_prev, pinned)
                xp.matmul(dhidden[s], u.T, out=dh)        # dL/dh_{t-1} = dhidden U^T + (1 - z) dh
                dh += dh_prev
                if self._cut(k):
                    dh[...] = 0
            self._recurrent_weight_grad(hs[po:po + t], dhidden, sfx)
            axes = tuple(range(dhidden.ndim - 1))
            self.grads["b_hn" + sfx] += dhidden[..., 2 * h:].sum(axis=axes)
        else:
            reset_hidden = cache["reset_hidden"]
            dreset_hidden = xp.empty_like(dh)
            u_rz_t, u_n_t = u[:, :2 * h].T, u[:, 2 * h:].T
            for k, s in reversed(list(enumerate(steps))):
                dh += dh_seq[s]
                if rec is not None:
                    self._record_norm(rec, "h", s, dh)
                ops.gru_cell_candidate_backward_cho(gates[s], hs[s + po], dh, dgates[s], dh_prev)
                xp.matmul(dgates[s, ..., 2 * h:], u_n_t, out=dreset_hidden)   # dL/d(r h_{t-1})
                ops.gru_cell_reset_backward_cho(gates[s], hs[s + po], dreset_hidden, dgates[s],
                                                dh_prev, pinned)
                xp.matmul(dgates[s, ..., :2 * h], u_rz_t, out=dh)
                dh += dh_prev
                if self._cut(k):
                    dh[...] = 0
            du = self.grads["U" + sfx]
            flat_h, flat_g = hs[po:po + t].reshape(-1, h), dgates.reshape(-1, 3 * h)
            du[:, :2 * h] += flat_h.T @ flat_g[:, :2 * h]
            du[:, 2 * h:] += reset_hidden.reshape(-1, h).T @ flat_g[:, 2 * h:]
        self._initial_grad("h0", sfx, dh)
        return dgates


# ============================================================================ ConvLSTM2D
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
    count independent of the frame size), learned initial states (F,). The convolutions run
    as im2col + GEMM (``compute.ops.convlstm``): the input's for all T in one GEMM, the
    recurrent one per step.
    """

    type_name = "ConvLSTM2D"
    summary = "LSTM whose products are convolutions: a cell state per pixel, for video clips."
    step_rank = 4
    settings_spec = (
        Setting("filters", "int", 8, "Filters", "Channels F of the hidden and cell states.", 1, 1024),
        Setting("kernel_size", "int", 3, "Kernel size", "Odd k of the k x k convolutions ('same' padding).",
                1, 15),
    ) + _common_settings("filters") + (
        _pin_setting("input", "Input gate"),
        _pin_setting("forget", "Forget gate"),
        _pin_setting("output", "Output gate"),
    )

    @property
    def units(self) -> int:
        return self.settings["filters"]

    @property
    def coupled(self) -> bool:
        return False

    @property
    def peephole(self) -> bool:
        return True

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
        return {"W": _glorot(rng, k * k * c, k * k * f, (k, k, c, 4 * f)),
                "U": _glorot(rng, k * k * f, k * k * f, (k, k, f, 4 * f)), "b": b,
                "p_i": np.zeros(f), "p_f": np.zeros(f), "p_o": np.zeros(f)}

    def _pins(self):
        pins = {}
        for k, name in ((0, "input"), (1, "forget"), (3, "output")):
            if self.settings[f"pin_{name}"] != "learned":
                pins[k] = float(self.settings[f"pin_{name}"])
        return pins

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

    def _project(self, cols, sfx, t, n, out=None):
        w = self.params["W" + sfx]
        if out is None:
            a = cols @ w.reshape(-1, w.shape[-1])
        else:
            a = out.reshape(-1, w.shape[-1])
            get_array_module(cols).matmul(cols, w.reshape(-1, w.shape[-1]), out=a)
        a += self.params["b" + sfx]
        self._hcols = getattr(self, "_hcols", {})
        f, k = self.units, self.settings["kernel_size"]
        self._hcols[sfx] = get_array_module(cols).empty((t, n * self._rows(n)[1], k * k * f), dtype=cols.dtype)
        return a.reshape((t,) + self._rows(n) + (w.shape[-1],))

    def _project_backward(self, cols, da, sfx):
        w = self.params["W" + sfx]
        w2 = w.reshape(-1, w.shape[-1])
        da2 = da.reshape(-1, w.shape[-1])
        self.grads["W" + sfx] += (cols.T @ da2).reshape(w.shape)
        self.grads["b" + sfx] += da2.sum(axis=0)
        return da2 @ w2.T

    def _recurrent_product(self, h, sfx, out, t):
        xp = get_array_module(h)
        n, p, f = h.shape
        u = self.params["U" + sfx]
        hcols = self._hcols[sfx][t]                       # kept: dU is one GEMM over all steps
        conv_ops.im2col_same(h.reshape(n, *self._frame, f), self.settings["kernel_size"], out=hcols)
        xp.matmul(hcols, u.reshape(-1, u.shape[-1]), out=out.reshape(n * p, -1))

    # The kernel path shares LSTM's loop; the recurrent convolution is im2col (array code,
    # with a temporary) + GEMM, so the loop is not captured as a CUDA graph.
    capturable = False

    def _kernel_recurrent(self, h_prev, u, pre, t, sfx):
        """``pre += im2col(h_{t-1}) U``: ``h_prev`` (N*P, F) and ``pre`` (N*P, 4F) as the LSTM
        loop passes them; the columns are kept for dU."""
        f, k = self.units, self.settings["kernel_size"]
        hcols = self._hcols[sfx][t]
        conv_ops.im2col_same(h_prev.reshape(-1, *self._frame, f), k, out=hcols)
        kernels.gemm(hcols, u.reshape(-1, u.shape[-1]), pre, accumulate=True)

    def _kernel_recurrent_backward(self, d_pre, u, out, t, sfx):
        self._recurrent_backward(d_pre, sfx, out, t)

    def _recurrent_backward(self, da, sfx, out, t):
        n, p, g = da.shape
        u = self.params["U" + sfx]
        dcols = da.reshape(n * p, g) @ u.reshape(-1, g).T
        f = self.units
        out[...] = conv_ops.col2im_same(dcols, (n,) + self._frame + (f,),
                                        self.settings["kernel_size"]).reshape(n, p, f)

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
        xp = get_array_module(grad)
        n, t, f, hh, ww = grad.shape
        return xp.ascontiguousarray(grad.transpose(1, 0, 3, 4, 2)).reshape(t, n, hh * ww, f)

    def _public_step(self, h):
        n, _, f = h.shape
        return h.reshape(n, *self._frame, f).transpose(0, 3, 1, 2)

    def _internal_step(self, grad):
        n, f = grad.shape[:2]
        return grad.transpose(0, 2, 3, 1).reshape(n, -1, f)
