"""What every recurrent block shares: settings, directions, merging, initial states,
truncation, gate pins, probes, the dense projections, and the persistent step loops.

A cell (``simple_rnn.py``, ``lstm.py``, ``gru.py``, ``convlstm.py``) writes its equations, then
one forward and one backward step loop per direction over the kernel contract
(``compute.kernels``); this base class runs them for each direction and joins the results.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.backend import get_array_module, to_numpy
from gatescope.compute.kernels import graphs
from gatescope.compute.layers.base import Layer, Setting, describe_shape, with_article

PIN_CHOICES = ("learned", "0", "1")


def common_settings(units_name: str = "hidden_size") -> tuple[Setting, ...]:
    """The settings every recurrent block has (``hidden_size`` unless the cell names its
    units otherwise, as ConvLSTM2D's ``filters``)."""
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


def pin_setting(gate: str, label: str) -> Setting:
    return Setting(f"pin_{gate}", "choice", "learned", label,
                   f"Learn the {gate} gate, or pin it to all 0s or all 1s (forward and backward).",
                   choices=PIN_CHOICES)


def pinned_gates(settings: dict) -> dict[str, float]:
    """Gate name -> the constant a block's settings pin it to (``pin_forget = "1"`` gives
    ``{"forget": 1.0}``), for every gate override that is not ``learned``. The one reader of
    the ``pin_*`` settings: the layers, the inside panels and the ONNX export use it."""
    return {key[len("pin_"):]: float(value) for key, value in settings.items()
            if key.startswith("pin_") and str(value) != "learned"}


def glorot(rng, fan_in, fan_out, shape):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def orthogonal(rng, units, blocks):
    """``(units, blocks * units)``: one random orthogonal matrix per gate block."""
    mats = []
    for _ in range(blocks):
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        mats.append(q * np.sign(np.diag(r)))
    return np.concatenate(mats, axis=1)


def flat(a):
    """A step's ``rows + (units,)`` array as the kernels' ``(B, units)`` matrix (a view:
    ConvLSTM's ``(N, P, units)`` pixel rows become N*P kernel rows)."""
    return a.reshape(-1, a.shape[-1])


def by_step(a):
    """A ``(T,) + rows + (units,)`` buffer as ``(T, B, units)`` (a view), so that each step's
    slice is the kernels' matrix without a reshape per step."""
    return a.reshape(a.shape[0], -1, a.shape[-1])


class GradientNorms:
    """The probes' per-step gradient norms, recorded from the backward step loop: for each
    probed sample the Euclidean norm over the units of the total dL/dh_t (and dL/dC_t), and
    the same over the whole batch."""

    def __init__(self, xp, samples, t: int, dtype, cell: bool):
        self.samples = xp.asarray(samples)
        self.norms = {"h": xp.zeros((t, len(samples)), dtype), "h_batch": xp.zeros(t, dtype)}
        if cell:
            self.norms.update(c=xp.zeros((t, len(samples)), dtype), c_batch=xp.zeros(t, dtype))

    def _record(self, key: str, t: int, grad) -> None:
        xp = get_array_module(grad)
        rows = grad.reshape(grad.shape[0], -1)
        squares = (rows * rows).sum(axis=1)
        self.norms[key][t] = xp.sqrt(squares[self.samples])
        self.norms[key + "_batch"][t] = xp.sqrt(squares.sum())

    def record(self, t: int, dh, carried, dc=None) -> None:
        """Step ``t``: ``dh`` from above plus ``carried`` (from step t+1, None: nothing) is the
        total dL/dh_t; ``dc`` the total dL/dC_t (cells with a cell state)."""
        self._record("h", t, dh if carried is None else dh + carried.reshape(dh.shape))
        if dc is not None:
            self._record("c", t, dc)

    def store(self, probe_data: dict, sfx: str) -> None:
        probe_data["grad_hidden_norm" + sfx] = to_numpy(self.norms["h"]).T.copy()
        probe_data["grad_hidden_norm_batch" + sfx] = to_numpy(self.norms["h_batch"])
        if "c" in self.norms:
            probe_data["grad_cell_norm" + sfx] = to_numpy(self.norms["c"]).T.copy()
            probe_data["grad_cell_norm_batch" + sfx] = to_numpy(self.norms["c_batch"])


class Recurrent(Layer):
    """The shared base of the recurrent blocks (see the package's docstring for the settings,
    the probes and how the step loops run).

    A cell defines its parameters (``_direction_shapes``, ``_direction_init``,
    ``_formula_terms``), the gates it can pin (``pin_letters``: setting suffix -> the kernels'
    gate letter), and per direction ``_forward_direction`` and ``_backward_direction``, which
    run its step loops and return ``dL/d(x_t W + b)`` for every step.
    """

    category = "Recurrent"
    step_rank = 2
    n_inputs = 2
    optional_ports = (1,)
    state_port = 1
    port_names = ("sequence", "initial state")
    hands_state = True
    has_cell = False
    gate_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ("h0",)
    pin_letters: dict[str, str] = {}
    #: ConvLSTM2D sets False: its recurrent convolution runs array code inside the loop.
    capturable = True
    #: ConvLSTM2D sets False: its states are maps, which no state wire carries.
    state_wirable = True
    _MAX_LOOPS = 4  # geometries kept per layer (a last, smaller batch is a second one)

    def __init__(self, **settings):
        super().__init__(**settings)
        self.probe = None
        self.probe_data: dict = {}
        self._state_in: dict | None = None      # the initial state a state wire handed over
        self._state_grad: dict = {}

    # ----------------------------------------------------------------- state wires
    def _state_words(self) -> str:
        return "h and C" if self.has_cell else "h alone"

    def state_problem(self, source: Layer | None, source_shape: tuple[int, ...]) -> str | None:
        """Why the block ``source`` (output shape ``source_shape``) cannot start this one's state
        through its state port, in words; None when it can. A recurrent source hands over its
        final state (h, and C from an LSTM): the kinds and sizes must match. Any other block's
        output is taken as h_0, a vector of ``hidden_size`` values (an LSTM's C_0 is then zero)."""
        own = self.type_name
        if self.settings["bidirectional"]:
            return (f"a bidirectional {own} cannot take a wired initial state (its backward half starts "
                    "from the end of the sequence); turn Bidirectional off")
        if self.settings["initial_state"] == "learned":
            return "its initial state is wired, so it cannot also learn one; set Initial state to zero"
        if source is not None and source.hands_state:
            kind = source.type_name
            if not source.state_wirable:
                return f"a {kind} cannot hand over its state (its states are maps, not vectors)"
            if source.settings["bidirectional"]:
                return (f"a bidirectional {kind} has two final states; turn its Bidirectional off to hand "
                        "its state over")
            if source.has_cell != self.has_cell:
                return (f"{with_article(kind)}'s state ({source._state_words()}) cannot start {with_article(own)}, "
                        f"whose state is {self._state_words()}; use the same kind of block for both, or "
                        "wire its output (its last h) through a Dense block")
            if source.units != self.units:
                return (f"the {kind} handing over its state has {source.units} units but this {own} has "
                        f"{self.units}; give both the same hidden size")
            return None
        if tuple(source_shape) != (self.units,):
            return (f"its initial state is fed {with_article(describe_shape(tuple(source_shape)))}, but it takes "
                    f"a vector of {self.units} values (its hidden size) as h_0")
        return None

    def final_state(self) -> dict:
        """The state after the last step of the last forward: ``{"h0": (N, H)}``, and ``"c0"`` for
        an LSTM, named as the initial state they start (copies: the loop's buffers are reused)."""
        return {name: self._ctx[""][key][-1].copy() for name, key in (("h0", "h"), ("c0", "c"))
                if key in self._ctx[""]}

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

    def kernel_pins(self) -> dict[str, float] | None:
        """The gate overrides as ``compute.kernels`` takes them (gate letter -> constant), or
        None when no gate is pinned."""
        pins = {self.pin_letters[name]: value for name, value in pinned_gates(self.settings).items()}
        return pins or None

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

    def _project(self, xs, sfx, out):
        """``out <- x_t W + b`` for every step at once (one GEMM and the bias): ``out`` is the
        loop's ``(T,) + rows + (G,)`` buffer."""
        w = self.params["W" + sfx]
        a = out.reshape(-1, w.shape[-1])
        get_array_module(xs).matmul(xs, w.reshape(-1, w.shape[-1]), out=a)
        a += self.params["b" + sfx]

    def _project_backward(self, xs, da, sfx):
        """Adds dW, db from ``da`` ``(T,) + rows + (G,)``; returns the gradient of ``xs``."""
        w = self.params["W" + sfx]
        w2 = w.reshape(-1, w.shape[-1])
        da2 = da.reshape(-1, w2.shape[1])
        self.grads["W" + sfx] += (xs.T @ da2).reshape(w.shape)
        self.grads["b" + sfx] += da2.sum(axis=0)
        return da2 @ w2.T

    def _recurrent_weight_grad(self, h_prev_all, da_all, sfx):
        """``dU += sum_t h_{t-1}^T da_t`` as one GEMM over all steps."""
        u = self.params["U" + sfx]
        self.grads["U" + sfx] += h_prev_all.reshape(-1, u.shape[0]).T @ da_all.reshape(-1, u.shape[1])

    def _public_seq(self, seq):
        """Time-major ``(T, S) + unit axes`` -> batch-first ``(S, T) + public unit shape``."""
        return seq.swapaxes(0, 1)

    def _internal_seq(self, grad):
        """Batch-first ``(N, T) + public unit shape`` -> time-major internal layout."""
        return grad.swapaxes(0, 1)

    def _public_step(self, h):
        return h

    def _internal_step(self, grad):
        return grad

    # ----------------------------------------------------------------- persistent step loops
    def _loops(self, sfx, t, rows, make_forward):
        """The persistent step loops of direction ``sfx`` for ``t`` steps of ``rows``: a dict
        with ``"forward"`` (a ``graphs.StepLoop`` whose buffers ``make_forward()`` allocates
        once) and, after the first backward, ``"backward"``. Keyed by the geometry, the dtype
        and every setting (variant, pins, truncation, ...), so a graph is only replayed for the
        loop it recorded. Not capturable (ConvLSTM2D): fresh buffers, eager every call."""
        what = f"{self.type_name}{' reverse' if sfx else ''} ({t} steps, rows {rows})"
        if not self.capturable:
            loop = graphs.StepLoop(what, make_forward())
            loop.eager_reason = "not capturable"
            return {"forward": loop, "what": what}
        key = (sfx, t, tuple(rows), tuple(sorted((k, repr(v)) for k, v in self.settings.items())),
               self._dtype_key())
        store = self.__dict__.setdefault("_step_loops", {})
        if key not in store:
            while len(store) >= self._MAX_LOOPS:
                store.pop(next(iter(store)))
            store[key] = {"forward": graphs.StepLoop(what, make_forward()), "what": what}
        else:
            store[key] = store.pop(key)  # most recently used last
        return store[key]

    def _dtype_key(self):
        w = self.params["W"]
        return (get_array_module(w).__name__, w.dtype.str)

    def _backward_loop(self, loops, make_backward):
        """The backward ``StepLoop`` beside ``loops["forward"]``: its own buffers from
        ``make_backward()`` plus the forward's, which it reads."""
        if "backward" not in loops:
            buffers = dict(loops["forward"].buffers)
            buffers.update(make_backward())
            loop = graphs.StepLoop(loops["what"] + " backward", buffers)
            if loops["forward"].eager_reason == "not capturable":
                loop.eager_reason = "not capturable"
                return loop
            loops["backward"] = loop
        return loops["backward"]

    def _forward_loop(self, xs, n, t, sfx, reverse, gate_width, extra):
        """The common forward set-up: the persistent loops (see :meth:`_loops`) with buffers
        ``pre`` (the input projection, ``(T,) + rows + (gate_width,)``), ``hs``
        (``(T+1,) + rows + (H,)``), ``u`` (a copy of U, so a graph never reads a replaced
        array) and ``extra`` (name -> shape); the projection, U and the initial state written
        in. Returns ``(loops, forward loop)``."""
        xp = get_array_module(xs)
        rows = self._rows(n)
        u = self.params["U" + sfx]
        shapes = {"pre": (t,) + rows + (gate_width,), "hs": (t + 1,) + rows + (self.units,), **extra}

        def make():
            buffers = {name: xp.empty(shape, dtype=xs.dtype) for name, shape in shapes.items()}
            buffers["u"] = xp.empty(u.shape, dtype=u.dtype)
            return buffers

        loops = self._loops(sfx, t, rows, make)
        loop = loops["forward"]
        self._project(xs, sfx, loop.pre)
        loop.u[...] = u
        self._initial("h0", sfx, loop.hs[t if reverse else 0])
        return loops, loop

    def _gradient_in(self, loops, dh_seq, own):
        """The backward loop (its own buffers ``own``: name -> shape, plus ``dh_seq``) with the
        output gradient copied in."""
        xp = get_array_module(dh_seq)
        shapes = {"dh_seq": dh_seq.shape, **own}
        loop = self._backward_loop(loops, lambda: {name: xp.empty(shape, dtype=dh_seq.dtype)
                                                   for name, shape in shapes.items()})
        loop.dh_seq[...] = dh_seq
        return loop

    # ----------------------------------------------------------------- state helpers
    def _initial(self, name, sfx, like):
        """The initial state ``(rows..., H)``: the one a state wire handed over (a missing C_0
        is zero), or zeros, or the learned vector broadcast."""
        if self._state_in is not None:
            like[...] = self._state_in[name] if name in self._state_in else 0
        elif self.settings["initial_state"] == "learned":
            like[...] = self.params[name + sfx]
        else:
            like[...] = 0

    def _initial_grad(self, name, sfx, grad):
        """Takes dL/d(initial state ``name``): kept for the state wire, or added to the learned one."""
        if self._state_in is not None:
            self._state_grad[name] = grad.copy()
        elif self.settings["initial_state"] == "learned":
            axes = tuple(range(grad.ndim - 1))
            self.grads[name + sfx] += grad.sum(axis=axes)

    def _cut(self, processed: int) -> bool:
        """True where truncated BPTT stops the gradient before processing step ``processed``."""
        k = self.settings["truncate_bptt"]
        return bool(k) and processed > 0 and processed % k == 0

    @staticmethod
    def _order(t, reverse):
        """(time index of each processing step, offset of the previous state, of the new one).

        The state array ``hs`` has T+1 entries: going forward ``hs[0]`` is the initial state
        and ``hs[t+1]`` the state after step t; going backward ``hs[T]`` is the initial state
        and ``hs[t]`` the state after reading step t.
        """
        steps = range(t - 1, -1, -1) if reverse else range(t)
        return steps, (1, 0) if reverse else (0, 1)

    # ----------------------------------------------------------------- probes
    def _probe_gate_blocks(self, gates_sel):
        """Gate name -> ``(T, S, ..., H)`` activations from the stored gates of the samples."""
        units = self.units
        return {name: gates_sel[..., k * units:(k + 1) * units] for k, name in enumerate(self.gate_names)}

    def _probe_forward(self, cache, sfx, reverse):
        idx = self._probe_idx
        seq = cache["h"][:-1] if reverse else cache["h"][1:]
        self.probe_data["samples"] = idx.copy()
        self.probe_data["hidden_state" + sfx] = to_numpy(self._public_seq(seq[:, idx]))
        if self.has_cell:
            cseq = cache["c"][:-1] if reverse else cache["c"][1:]
            self.probe_data["cell_state" + sfx] = to_numpy(self._public_seq(cseq[:, idx]))
        gates = {}
        if "gates" in cache:
            for name, block in self._probe_gate_blocks(cache["gates"][:, idx]).items():
                gates[name] = to_numpy(self._public_seq(block))
        self.probe_data["gates" + sfx] = gates

    # ----------------------------------------------------------------- forward / backward
    def forward(self, inputs, training):
        """``inputs``: the sequence, and with a state wire the initial state (see ``state_port``)."""
        x = inputs[0]
        self._state_in = inputs[1] if len(inputs) > 1 else None
        xp = get_array_module(x)
        n, t = x.shape[:2]
        xs = self._time_major(x)
        self._probe_idx = None
        if self.probe is not None:
            self._probe_idx = np.asarray([int(i) for i in self.probe if 0 <= int(i) < n], dtype=np.int64)
            self.probe_data = {}
        self._ctx = {"n": n, "t": t, "xs": xs}
        outs = []
        for sfx in self._suffixes():
            reverse = sfx == "_rev"
            cache = self._forward_direction(xs, n, t, sfx, reverse)
            self._ctx[sfx] = cache
            hs = cache["h"]
            if self.settings["return_sequences"]:
                outs.append(self._public_seq(hs[:-1] if reverse else hs[1:]))
            else:
                outs.append(self._public_step(hs[0] if reverse else hs[-1]))
            if self._probe_idx is not None:
                self._probe_forward(cache, sfx, reverse)
        if len(outs) == 1:
            return outs[0].copy()    # the states live in buffers that the next call overwrites
        if self.settings["merge"] == "sum":
            return outs[0] + outs[1]
        axis = 2 if self.settings["return_sequences"] else 1
        return xp.concatenate(outs, axis=axis)

    def backward(self, grad_output, final_state_grad: dict | None = None):
        """dL/d(output) -> [dL/d(sequence)], plus dL/d(initial state) (a dict like the one
        forward took) when a state wire fed it. ``final_state_grad``: dL/d(final state) from the
        block this one handed its state to (``final_state``'s names), added at the last step."""
        xp = get_array_module(grad_output)
        n, t, xs = self._ctx["n"], self._ctx["t"], self._ctx["xs"]
        self._state_grad = {}
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
                dh_seq = xp.zeros((t,) + cache["h"].shape[1:], dtype=grad_output.dtype)
                dh_seq[0 if reverse else t - 1] = self._internal_step(g)
            if final_state_grad is not None:      # a state wire: never bidirectional (state_problem)
                dh_seq = dh_seq + 0                 # a copy: dh_seq may be a view of grad_output
                dh_seq[t - 1] += final_state_grad["h0"]
                cache["dc_final"] = final_state_grad.get("c0")
            else:
                cache["dc_final"] = None
            norms = None
            if self._probe_idx is not None:
                norms = GradientNorms(xp, self._probe_idx, t, grad_output.dtype, self.has_cell)
            da = self._backward_direction(dh_seq, cache, sfx, reverse, norms)
            if norms is not None:
                norms.store(self.probe_data, sfx)
            d = self._project_backward(xs, da, sfx)
            dxs = d if dxs is None else dxs + d
        if self._state_in is not None:
            return [self._from_time_major(dxs, n, t), dict(self._state_grad)]
        return [self._from_time_major(dxs, n, t)]

    def _forward_direction(self, xs, n, t, sfx, reverse) -> dict:
        """Runs the forward step loop of one direction; returns its cache (``h``: the states
        ``(T+1,) + rows + (H,)``, and what backward and the probes read)."""
        raise NotImplementedError

    def _backward_direction(self, dh_seq, cache, sfx, reverse, norms):
        """Runs the backward step loop of one direction, adds the parameter gradients but W's
        and b's, and returns ``dL/d(x_t W + b)`` for every step. ``norms``: a
        :class:`GradientNorms` to record into, or None when probes are off."""
        raise NotImplementedError
