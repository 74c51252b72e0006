"""Export a project's model to ONNX, so it runs outside GateScope (ONNX Runtime, other tools).

``export_project(project, path)`` builds the project's model with its saved weights (an
untrained project exports its initial weights and the summary says so), translates every
block into standard ONNX operators, checks the result with ``onnx.checker`` and writes it.

The exported graph has one input, ``input``, shaped like the Input block with a free batch
axis first (``(batch,) + shape``), and one output, ``output``: class probabilities for a
Classify head (the softmax is part of the model), the values for a Regress head. The Input
block's preprocessing settings, the class names and the task go into the model's metadata
(``metadata_props``, key ``gatescope``, a JSON object) so a program using the file knows how
to prepare frames and name the classes.

How blocks map (the details are in ``docs/onnx.md``):

- Dense -> Gemm; ReLU, LeakyReLU, Tanh, Sigmoid, Softmax -> the operator of that name;
  Flatten -> Flatten; Dropout -> nothing (it is the identity at inference).
- Conv2D -> Conv; Conv1D -> Conv with a 1-D kernel between two Transposes
  ((N, T, F) -> (N, F, T) and back); MaxPool/AvgPool 1D/2D -> MaxPool/AveragePool (1-D ones
  between Transposes too); GlobalAvgPool -> GlobalAveragePool (images) or ReduceMean over time
  (sequences); GlobalMaxPool1D -> ReduceMax over time; BatchNorm -> BatchNormalization with the
  running statistics.
- Embedding -> Cast of the input to int64, then Gather of the table's rows (ids outside the
  vocabulary are an error in ONNX Runtime, as in GateScope); TimeSlice -> Slice along time;
  RepeatSteps -> Unsqueeze and Tile.
- A state wire (an encoder-decoder's handover) -> the source's ``Y_h`` (and ``Y_c``) as the
  ``initial_h`` (and ``initial_c``) of the block it starts; from a non-recurrent block, its
  output unsqueezed to ``(1, N, H)`` as ``initial_h``. The exported model computes what
  ``Model.forward`` does: the decoder reads whatever the Input's answer steps hold (teacher
  forcing); the step-by-step feedback of ``compute.generate.answer_greedily`` is a loop around
  the model, not part of it. Unrolled blocks (pinned gates, the coupled LSTM) refuse state wires.
- Add -> Add; Concat -> Concat along the feature or channel axis.
- A time-distributed block (a Conv2D fed a video clip, a Dense fed a sequence) is wrapped in
  Reshape (N, T, ...) -> (N*T, ...) and back.
- Classify -> Softmax (the output is probabilities); Regress -> Identity.
- Recurrent blocks -> ONNX's own RNN, LSTM and GRU operators where one computes exactly what
  the block computes, otherwise an unrolled graph of primitive operators (see
  ``_emit_recurrent``).

Nothing is ever exported silently wrong: a block this exporter cannot translate raises
``ExportError`` naming the block.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gatescope.compute.layers.heads import class_names
from gatescope.compute.layers.recurrent import pinned_gates
from gatescope.studio.atomic import write_atomically

OPSET = 17
"""The ONNX operator set the exported models declare (introduced with ONNX 1.12)."""

IR_VERSION = 8
"""The ONNX file-format version written: the one that goes with opset 17, so older runtimes load it."""

INPUT_NAME = "input"
OUTPUT_NAME = "output"
METADATA_KEY = "gatescope"
MISSING_ONNX = "ONNX export needs the onnx extra: pip install 'gatescope[onnx]'"


class ExportError(Exception):
    """The project cannot be exported; the message says why, naming the block concerned."""


# ============================================================================ gate layouts
def reorder_gate_blocks(array: np.ndarray, ours: str, theirs: str, axis: int = -1) -> np.ndarray:
    """``array`` with its gate blocks along ``axis`` moved from the order ``ours`` to ``theirs``.

    Each letter names one gate block of equal size, e.g. ``reorder_gate_blocks(W, "ifgo",
    "iofg")`` turns GateScope's LSTM layout (input, forget, candidate, output) into ONNX's
    (input, output, forget, cell candidate).
    """
    if sorted(ours) != sorted(theirs):
        raise ValueError(f"gate orders {ours!r} and {theirs!r} do not name the same gates")
    array = np.asarray(array)
    size = array.shape[axis]
    if size % len(ours):
        raise ValueError(f"axis of size {size} does not split into {len(ours)} gate blocks")
    blocks = dict(zip(ours, np.split(array, len(ours), axis=axis)))
    return np.concatenate([blocks[g] for g in theirs], axis=axis)


def lstm_to_onnx(W: np.ndarray, U: np.ndarray, b_input: np.ndarray | None,
                 b_hidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of an LSTM in ONNX's layout: ``(W, R, B)``.

    Ours: ``W`` (D, 4H), ``U`` (H, 4H), biases (4H,), gates stacked ``i, f, g, o``.
    ONNX: ``W`` (4H, D), ``R`` (4H, H), ``B`` (8H,) = input bias then recurrent bias, gates
    stacked ``i, o, f, c`` (c is our candidate g).
    """
    units = U.shape[0]
    w = reorder_gate_blocks(W, "ifgo", "iofg").T
    r = reorder_gate_blocks(U, "ifgo", "iofg").T
    b = reorder_gate_blocks(_bias(b_input, 4 * units), "ifgo", "iofg")
    rb = reorder_gate_blocks(_bias(b_hidden, 4 * units), "ifgo", "iofg")
    return w, r, np.concatenate([b, rb])


def peephole_to_onnx(p_i: np.ndarray, p_f: np.ndarray, p_o: np.ndarray) -> np.ndarray:
    """ONNX's peephole input ``P`` (3H,), stacked ``i, o, f``."""
    return np.concatenate([p_i, p_o, p_f])


def gru_to_onnx(W: np.ndarray, U: np.ndarray, b_input: np.ndarray | None, b_hidden: np.ndarray | None,
                flip_update: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of a GRU in ONNX's layout: ``(W, R, B)``.

    Ours: ``W`` (D, 3H), ``U`` (H, 3H), gates stacked ``r, z, n``. ONNX: ``W`` (3H, D), ``R``
    (3H, H), ``B`` (6H,) = input bias then recurrent bias, gates stacked ``z, r, h``.

    ONNX updates ``h_t = (1 - z_t) * h~_t + z_t * h_{t-1}``. When the block uses the other
    convention, ``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t`` (``flip_update``), the update gate's
    weights and biases are negated: ``1 - sigmoid(a) = sigmoid(-a)``, so ONNX's z is our 1 - z.
    """
    units = U.shape[0]
    w = W.copy()
    u = U.copy()
    b = _bias(b_input, 3 * units).copy()
    rb = _bias(b_hidden, 3 * units).copy()
    if flip_update:
        z = slice(units, 2 * units)
        for a in (w, u, b, rb):
            a[..., z] *= -1
    return (reorder_gate_blocks(w, "rzn", "zrn").T, reorder_gate_blocks(u, "rzn", "zrn").T,
            np.concatenate([reorder_gate_blocks(b, "rzn", "zrn"), reorder_gate_blocks(rb, "rzn", "zrn")]))


def _bias(b: np.ndarray | None, size: int) -> np.ndarray:
    return np.zeros(size, dtype=np.float32) if b is None else np.asarray(b)


# ============================================================================ graph builder
class _Graph:
    """Collects nodes and initializers with unique names; every helper returns output names."""

    def __init__(self, helper, numpy_helper, unroll_recurrent: bool = False):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.unroll_recurrent = unroll_recurrent
        self.nodes: list = []
        self.initializers: list = []
        self._used: set[str] = {INPUT_NAME, OUTPUT_NAME}
        self._ints: dict[tuple, str] = {}
        self.ops_of_block: list[str] = []
        self.final_states: dict[str, dict[str, str]] = {}   # block id -> its Y_h (and Y_c), (1, N, H)

    def name(self, base: str) -> str:
        """A fresh tensor name starting with ``base``."""
        base = base.replace("/", "_")
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def const(self, base: str, array, dtype=np.float32) -> str:
        """An initializer holding ``array`` (float32 unless ``dtype`` says otherwise)."""
        name = self.name(base)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def ints(self, base: str, values) -> str:
        """An int64 initializer (shapes, axes, indices), shared by every node that needs the same values."""
        array = np.asarray(values, dtype=np.int64)
        key = (array.shape, tuple(array.ravel().tolist()))
        if key not in self._ints:
            self._ints[key] = self.const(base, array, np.int64)
        return self._ints[key]

    def op(self, op_type: str, inputs: list[str], base: str, outputs: int | list[str] = 1, **attrs):
        """Add one node; returns its output name (or the list of them when ``outputs`` > 1)."""
        names = outputs if isinstance(outputs, list) else [self.name(f"{base}_{op_type}") for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, inputs, names, name=self.name(f"{base}_{op_type}_node"),
                                                **attrs))
        self.ops_of_block.append(op_type)
        return names[0] if len(names) == 1 else names

    def reshape(self, x: str, shape, base: str) -> str:
        return self.op("Reshape", [x, self.ints(f"{base}_shape", shape)], base)

    def transpose(self, x: str, perm, base: str) -> str:
        return self.op("Transpose", [x], base, perm=list(perm))

    def gather(self, x: str, index: int, axis: int, base: str) -> str:
        """``x`` indexed at ``index`` along ``axis`` (the axis is dropped)."""
        return self.op("Gather", [x, self.ints(f"{base}_index", index)], base, axis=axis)

    def slice(self, x: str, start: int, end: int, axis: int, base: str) -> str:
        return self.op("Slice", [x, self.ints(f"{base}_start", [start]), self.ints(f"{base}_end", [end]),
                                 self.ints(f"{base}_axis", [axis])], base)


class _Block:
    """What an emitter needs to know about one block: its id, layer, weights and shapes."""

    def __init__(self, block_id: str, layer, params: dict[str, np.ndarray], in_shapes, out_shape):
        self.id, self.layer, self.params = block_id, layer, params
        self.type = layer.type_name
        self.in_shapes: list[tuple[int, ...]] = [tuple(s) for s in in_shapes]  # per sample (per step)
        self.out_shape: tuple[int, ...] = tuple(out_shape)                       # per sample (per step)
        self.settings: dict[str, Any] = layer.settings
        self.state_in: dict[str, str] | None = None   # a state wire's initial h (and C), (1, N, H)
        self.hands_state = False                      # whether a state wire reads its final state


Emitter = Callable[[_Graph, _Block, list[str]], str]


# ============================================================================ feed-forward blocks
def _dense(g: _Graph, b: _Block, xs: list[str]) -> str:
    inputs = [xs[0], g.const(f"{b.id}_W", b.params["W"])]
    if "b" in b.params:
        inputs.append(g.const(f"{b.id}_b", b.params["b"]))
    return g.op("Gemm", inputs, b.id)


def _elementwise(op_type: str, **attrs) -> Emitter:
    def emit(g: _Graph, b: _Block, xs: list[str]) -> str:
        return g.op(op_type, [xs[0]], b.id, **attrs)
    emit.__doc__ = f"The block as ONNX {op_type}."
    return emit


def _leaky_relu(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("LeakyRelu", [xs[0]], b.id, alpha=float(b.settings["slope"]))


def _flatten(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("Flatten", [xs[0]], b.id, axis=1)


def _reshape(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.reshape(xs[0], [-1] + list(b.settings["shape"]), b.id)  # -1: the batch axis stays free


def _dropout(g: _Graph, b: _Block, xs: list[str]) -> str:
    return xs[0]  # the identity at inference: left out of the exported graph


def _conv2d(g: _Graph, b: _Block, xs: list[str]) -> str:
    k, s = b.settings["kernel_size"], b.settings["stride"]
    _, h, w = b.in_shapes[0]
    (top, bottom), (left, right) = b.layer._pads(h), b.layer._pads(w)
    inputs = [xs[0], g.const(f"{b.id}_W", b.params["W"])]
    if "b" in b.params:
        inputs.append(g.const(f"{b.id}_b", b.params["b"]))
    return g.op("Conv", inputs, b.id, kernel_shape=[k, k], strides=[s, s], pads=[top, left, bottom, right])


def _conv1d(g: _Graph, b: _Block, xs: list[str]) -> str:
    k, s = b.settings["kernel_size"], b.settings["stride"]
    before, after = b.layer._pads(b.in_shapes[0][0])
    channels_first = g.transpose(xs[0], [0, 2, 1], b.id)  # (N, T, F) -> (N, F, T)
    inputs = [channels_first, g.const(f"{b.id}_W", b.params["W"])]
    if "b" in b.params:
        inputs.append(g.const(f"{b.id}_b", b.params["b"]))
    y = g.op("Conv", inputs, b.id, kernel_shape=[k], strides=[s], pads=[before, after])
    return g.transpose(y, [0, 2, 1], b.id)


def _pool(op_type: str, spatial: int) -> Emitter:
    def emit(g: _Graph, b: _Block, xs: list[str]) -> str:
        size, stride = b.settings["size"], b.layer.stride
        attrs = dict(kernel_shape=[size] * spatial, strides=[stride] * spatial)
        if spatial == 2:
            return g.op(op_type, [xs[0]], b.id, **attrs)
        channels_first = g.transpose(xs[0], [0, 2, 1], b.id)  # pool each feature over time
        return g.transpose(g.op(op_type, [channels_first], b.id, **attrs), [0, 2, 1], b.id)
    emit.__doc__ = f"The block as ONNX {op_type} over {spatial} axis/axes."
    return emit


def _global_avg_pool(g: _Graph, b: _Block, xs: list[str]) -> str:
    if len(b.in_shapes[0]) == 3:  # image (C, H, W) -> (C,)
        return g.op("Flatten", [g.op("GlobalAveragePool", [xs[0]], b.id)], b.id, axis=1)
    return g.op("ReduceMean", [xs[0]], b.id, axes=[1], keepdims=0)  # sequence: mean over time


def _global_max_pool_1d(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("ReduceMax", [xs[0]], b.id, axes=[1], keepdims=0)  # the largest of each feature over time


def _time_slice(g: _Graph, b: _Block, xs: list[str]) -> str:
    start, stop = b.layer._span(b.in_shapes[0][0])
    return g.slice(xs[0], start, stop, 1, b.id)


def _repeat_steps(g: _Graph, b: _Block, xs: list[str]) -> str:
    steps = b.settings["steps"]
    return g.op("Tile", [g.op("Unsqueeze", [xs[0], g.ints(f"{b.id}_axis", [1])], b.id),
                         g.ints(f"{b.id}_repeats", [1, steps, 1])], b.id)   # (N, F) -> (N, steps, F)


def _embedding(g: _Graph, b: _Block, xs: list[str]) -> str:
    ids = g.op("Cast", [xs[0]], b.id, to=g.helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)))
    return g.op("Gather", [g.const(f"{b.id}_W", b.params["W"]), ids], b.id, axis=0)  # (N, T) -> (N, T, D)


def _batch_norm(g: _Graph, b: _Block, xs: list[str]) -> str:
    stats = [g.const(f"{b.id}_{n}", b.params[n]) for n in ("gamma", "beta", "running_mean", "running_var")]
    eps = float(b.settings["epsilon"])
    if len(b.in_shapes[0]) == 2:  # sequence (T, F): the features are the channels
        channels_first = g.transpose(xs[0], [0, 2, 1], b.id)
        y = g.op("BatchNormalization", [channels_first] + stats, b.id, epsilon=eps)
        return g.transpose(y, [0, 2, 1], b.id)
    return g.op("BatchNormalization", [xs[0]] + stats, b.id, epsilon=eps)


def _add(g: _Graph, b: _Block, xs: list[str]) -> str:
    total = xs[0]
    for x in xs[1:]:
        total = g.op("Add", [total, x], b.id)
    return total


def _concat(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("Concat", xs, b.id, axis=b.layer._axis(len(b.in_shapes[0])) + 1)


def _classify(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("Softmax", [xs[0]], b.id, outputs=[OUTPUT_NAME], axis=-1)


def _regress(g: _Graph, b: _Block, xs: list[str]) -> str:
    return g.op("Identity", [xs[0]], b.id, outputs=[OUTPUT_NAME])


# ============================================================================ recurrent blocks
def _directions(b: _Block) -> tuple[str, ...]:
    """Parameter-name suffixes of the block's directions: forward, then backward if bidirectional."""
    return ("", "_rev") if b.settings["bidirectional"] else ("",)


def _units(b: _Block) -> int:
    return b.settings["filters"] if b.type == "ConvLSTM2D" else b.settings["hidden_size"]


def _merge_directions(g: _Graph, b: _Block, outs: list[str]) -> str:
    """Join per-direction outputs as the block does: concat along the units (forward first) or sum."""
    if len(outs) == 1:
        return outs[0]
    if b.settings["merge"] == "sum":
        return g.op("Add", outs, b.id)
    return g.op("Concat", outs, b.id, axis=2 if b.settings["return_sequences"] else 1)


def _emit_recurrent(g: _Graph, b: _Block, xs: list[str]) -> str:
    """A recurrent block: ONNX's own operator where it computes exactly what the block does,
    otherwise the block unrolled over its (fixed) number of timesteps in primitive operators.

    - SimpleRNN (tanh or relu) -> RNN.
    - LSTM standard -> LSTM; peephole -> LSTM with its peephole input P.
    - GRU -> GRU, ``linear_before_reset`` 0 for Cho's form, 1 for PyTorch's, the update gate
      negated to match ONNX's convention (see ``gru_to_onnx``).
    - Unrolled: LSTM coupled, any block with a pinned gate, ConvLSTM2D (Conv per step), and
      every recurrent block when the export asks for ``unroll_recurrent`` (for converters that
      lack the RNN, LSTM and GRU operators, such as onnx2torch).
    """
    if b.type == "ConvLSTM2D":
        return _unrolled(g, b, xs[0], conv=True)
    native = (not g.unroll_recurrent and not pinned_gates(b.settings)
              and not (b.type == "LSTM" and b.settings["variant"] == "coupled"))
    if native:
        return _native_recurrent(g, b, xs[0])
    if b.state_in is not None or b.hands_state:
        raise ExportError(f"block {b.id} ({b.type}) is unrolled in the export (a pinned gate, the coupled "
                          "variant, or unroll_recurrent), and an unrolled block does not take or hand over a "
                          "state wire yet; unpin its gates or use the standard variant")
    return _unrolled(g, b, xs[0], conv=False)


def _state_in(g: _Graph, model, source: str, values: dict[str, str]) -> dict[str, str]:
    """What a state wire from ``source`` hands over, as ONNX's ``initial_h`` (and ``initial_c``)
    ``(1, N, H)``: a recurrent block's Y_h (and Y_c), or any other block's output as h_0."""
    if model.layers[source].hands_state:
        return g.final_states[source]
    return {"h0": g.op("Unsqueeze", [values[source], g.ints(f"{source}_axis0", [0])], f"{source}_state")}


def _native_recurrent(g: _Graph, b: _Block, x: str) -> str:
    """SimpleRNN / LSTM / GRU as ONNX's RNN / LSTM / GRU (time-major inside, ``layout`` 0)."""
    units, dirs = _units(b), _directions(b)
    p = b.params
    weights, peepholes = [], []
    attrs: dict[str, Any] = {"hidden_size": units,
                             "direction": "bidirectional" if len(dirs) == 2 else "forward"}
    for sfx in dirs:
        if b.type == "SimpleRNN":
            weights.append((p["W" + sfx].T, p["U" + sfx].T, np.concatenate([p["b" + sfx], np.zeros(units)])))
        elif b.type == "LSTM":
            weights.append(lstm_to_onnx(p["W" + sfx], p["U" + sfx], p["b" + sfx]))
            if b.settings["variant"] == "peephole":
                peepholes.append(peephole_to_onnx(p["p_i" + sfx], p["p_f" + sfx], p["p_o" + sfx]))
        else:
            pytorch = b.settings["form"] == "pytorch"
            b_hidden = np.concatenate([np.zeros(2 * units), p["b_hn" + sfx]]) if pytorch else None
            weights.append(gru_to_onnx(p["W" + sfx], p["U" + sfx], p["b" + sfx], b_hidden, flip_update=True))
            attrs["linear_before_reset"] = 1 if pytorch else 0
    if b.type == "SimpleRNN":
        attrs["activations"] = ["Tanh" if b.settings["activation"] == "tanh" else "Relu"] * len(dirs)
    op_type = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}[b.type]

    time_major = g.transpose(x, [1, 0, 2], b.id)  # (N, T, D) -> (T, N, D)
    inputs = [time_major] + [g.const(f"{b.id}_{name}", np.stack([w[k] for w in weights]))
                             for k, name in enumerate(("W", "R", "B"))]
    if b.state_in is not None:        # a state wire: initial_h (and initial_c; left out, it is zero)
        inputs += ["", b.state_in["h0"]] + ([b.state_in["c0"]] if "c0" in b.state_in else [])
    elif b.settings["initial_state"] == "learned":
        states = ("h0", "c0") if b.type == "LSTM" else ("h0",)
        inputs.append("")  # sequence_lens: every sequence has all T steps
        batch = g.op("Shape", [x], f"{b.id}_batch", start=0, end=1)
        target = g.op("Concat", [g.ints(f"{b.id}_dirs", [len(dirs)]), batch, g.ints(f"{b.id}_units", [units])],
                      f"{b.id}_state_shape", axis=0)
        for name in states:
            # (directions, 1, H) tiled over the batch: ONNX wants (directions, batch, H).
            learned = g.const(f"{b.id}_{name}", np.stack([p[name + sfx] for sfx in dirs])[:, None, :])
            inputs.append(g.op("Expand", [learned, target], f"{b.id}_{name}"))
    if peepholes:
        inputs += [""] * (7 - len(inputs)) + [g.const(f"{b.id}_P", np.stack(peepholes))]

    sequences = b.settings["return_sequences"]
    outputs = [g.name(f"{b.id}_Y") if sequences else "",                                   # (T, dirs, N, H)
               g.name(f"{b.id}_Y_h") if b.hands_state or not sequences else ""]             # (dirs, N, H)
    if b.hands_state and b.type == "LSTM":
        outputs.append(g.name(f"{b.id}_Y_c"))
    while not outputs[-1]:
        outputs.pop()
    g.op(op_type, inputs, b.id, outputs=list(outputs), **attrs)
    if b.hands_state:
        g.final_states[b.id] = {"h0": outputs[1], **({"c0": outputs[2]} if b.type == "LSTM" else {})}
    if sequences:
        y = g.transpose(outputs[0], [2, 0, 1, 3], b.id)                            # (N, T, dirs, H)
        if len(dirs) == 2 and b.settings["merge"] == "sum":
            return g.op("ReduceSum", [y, g.ints(f"{b.id}_axes", [2])], b.id, keepdims=0)
        return g.reshape(y, [0, 0, len(dirs) * units], b.id)                        # forward first
    last = g.transpose(outputs[1], [1, 0, 2], b.id)                                     # (N, dirs, H)
    if len(dirs) == 2 and b.settings["merge"] == "sum":
        return g.op("ReduceSum", [last, g.ints(f"{b.id}_axes", [1])], b.id, keepdims=0)
    return g.reshape(last, [0, len(dirs) * units], b.id)


def _unrolled(g: _Graph, b: _Block, x: str, conv: bool) -> str:
    """The block written out step by step in primitive operators (MatMul or Conv, Sigmoid,
    Tanh, Mul, Add), one copy of the cell per timestep and direction, exactly the engine's math.

    Gates are split along axis 1: a dense state is (N, H), a ConvLSTM2D state (N, F, H, W).
    A pinned gate is its constant. A zero initial state drops the terms it would zero; a
    learned one is a constant of batch size 1 that broadcasts over the batch.
    """
    steps = b.in_shapes[0][0]
    outs = []
    for sfx in _directions(b):
        reverse = sfx == "_rev"
        cell = _ConvCell(g, b, sfx, x) if conv else _DenseCell(g, b, sfx, x)
        state = cell.initial_state()
        hidden: dict[int, str] = {}
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            state = cell.step(t, state)
            hidden[t] = state[0]
        if b.settings["return_sequences"]:
            seq = [g.op("Unsqueeze", [hidden[t], g.ints(f"{b.id}_time_axis", [1])], b.id) for t in range(steps)]
            outs.append(g.op("Concat", seq, b.id, axis=1) if steps > 1 else seq[0])
        else:
            outs.append(hidden[0 if reverse else steps - 1])
    return _merge_directions(g, b, outs)


class _Cell:
    """One direction of an unrolled recurrent block: its weights as constants and one step."""

    def __init__(self, g: _Graph, b: _Block, sfx: str, x: str):
        self.g, self.b, self.sfx = g, b, sfx
        self.base = f"{b.id}{sfx}"
        self.units = _units(b)
        self.pins = pinned_gates(b.settings)
        self._consts: dict[str, str] = {}
        self.projected = self.project(x)  # x_t W + b for every step at once, (N, T, G, ...)

    def param(self, name: str) -> np.ndarray:
        return self.b.params[name + self.sfx]

    def state_shape(self) -> tuple[int, ...]:
        """Shape of a learned initial state constant: batch 1, broadcast over the batch."""
        raise NotImplementedError

    def const(self, name: str, values: np.ndarray) -> str:
        """An initializer made once per direction and reused by every step."""
        if name not in self._consts:
            self._consts[name] = self.g.const(f"{self.base}_{name}", values)
        return self._consts[name]

    def vector(self, name: str, values: np.ndarray) -> str:
        """A per-unit vector as a constant that broadcasts against a state."""
        return self.const(name, np.asarray(values).reshape(self.vector_shape()))

    def vector_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def initial_state(self) -> tuple[str | None, ...]:
        """(h, C) for LSTMs, (h,) otherwise; None for a zero state."""
        names = ("h0", "c0") if self.b.type in ("LSTM", "ConvLSTM2D") else ("h0",)
        if self.b.settings["initial_state"] != "learned":
            return tuple(None for _ in names)
        return tuple(self.const(n, np.broadcast_to(
            self.param(n).reshape(self.vector_shape()), self.state_shape())) for n in names)

    def gates_at(self, t: int, h_prev: str | None) -> str:
        """Pre-activations ``x_t W + b (+ h_{t-1} U)`` of every gate at step ``t``."""
        g = self.g
        a = g.gather(self.projected, t, 1, self.base)
        if h_prev is not None:
            a = g.op("Add", [a, self.recurrent(h_prev)], self.base)
        return a

    def activate(self, pre: str, kind: str, gate: str) -> str:
        """``pre`` through a sigmoid or tanh, or the pinned constant of ``gate``."""
        if gate in self.pins:
            return self.vector(f"pin_{gate}", np.full(self.units, self.pins[gate]))
        return self.g.op("Sigmoid" if kind == "s" else "Tanh", [pre], self.base)

    def split(self, a: str, blocks: int) -> list[str]:
        return self.g.op("Split", [a], self.base, outputs=blocks, axis=1)

    def mul(self, a: str, c: str) -> str:
        return self.g.op("Mul", [a, c], self.base)

    def add(self, a: str, c: str) -> str:
        return self.g.op("Add", [a, c], self.base)

    def sub(self, a: str, c: str) -> str:
        return self.g.op("Sub", [a, c], self.base)

    def step(self, t: int, state: tuple[str | None, ...]) -> tuple[str, ...]:
        """The cell at step ``t``: the new (h, C) or (h,)."""
        if self.b.type == "SimpleRNN":  # h = act(x W + h U + b)
            activation = "Tanh" if self.b.settings["activation"] == "tanh" else "Relu"
            return (self.g.op(activation, [self.gates_at(t, state[0])], self.base),)
        if self.b.type == "GRU":
            return self.gru_step(t, state[0])
        return self.lstm_step(t, state[0], state[1])

    def lstm_step(self, t: int, h_prev: str | None, c_prev: str | None) -> tuple[str, str]:
        b = self.b
        coupled = b.type == "LSTM" and b.settings["variant"] == "coupled"
        peephole = b.type == "ConvLSTM2D" or b.settings.get("variant") == "peephole"
        a = self.gates_at(t, h_prev)
        if coupled:
            a_f, a_g, a_o = self.split(a, 3)
        else:
            a_i, a_f, a_g, a_o = self.split(a, 4)
        if peephole and c_prev is not None:  # input and forget gates peek at C_{t-1}
            if not coupled:
                a_i = self.add(a_i, self.mul(self.vector("p_i", self.param("p_i")), c_prev))
            a_f = self.add(a_f, self.mul(self.vector("p_f", self.param("p_f")), c_prev))
        f = self.activate(a_f, "s", "forget")
        cand = self.activate(a_g, "t", "candidate")
        if coupled:  # C_t = f C_{t-1} + (1 - f) g = g + f (C_{t-1} - g)
            diff = self.sub(c_prev, cand) if c_prev is not None else self.g.op("Neg", [cand], self.base)
            c = self.add(cand, self.mul(f, diff))
        else:
            i = self.activate(a_i, "s", "input")
            written = self.mul(i, cand)
            c = self.add(self.mul(f, c_prev), written) if c_prev is not None else written
        if peephole:  # the output gate peeks at C_t
            a_o = self.add(a_o, self.mul(self.vector("p_o", self.param("p_o")), c))
        o = self.activate(a_o, "s", "output")
        h = self.mul(o, self.g.op("Tanh", [c], self.base))
        return h, c

    def gru_step(self, t: int, h_prev: str | None) -> tuple[str]:
        g, units = self.g, self.units
        pytorch = self.b.settings["form"] == "pytorch"
        a_r, a_z, a_n = self.split(g.gather(self.projected, t, 1, self.base), 3)
        if h_prev is not None:
            u = self.param("U")
            rz = g.op("MatMul", [h_prev, self.const("U_rz", u[:, :2 * units])], self.base)
            h_r, h_z = self.split(rz, 2)
            a_r, a_z = self.add(a_r, h_r), self.add(a_z, h_z)
        r = self.activate(a_r, "s", "reset")
        z = self.activate(a_z, "s", "update")
        if pytorch:  # n = tanh(x W_n + b_n + r (h U_n + b_hn))
            hn = self.vector("b_hn", self.param("b_hn"))
            if h_prev is not None:
                hn = self.add(g.op("MatMul", [h_prev, self.const("U_n", self.param("U")[:, 2 * units:])],
                                   self.base), hn)
            a_n = self.add(a_n, self.mul(r, hn))
        elif h_prev is not None:  # Cho: n = tanh(x W_n + (r h) U_n + b_n)
            reset_hidden = self.mul(r, h_prev)
            a_n = self.add(a_n, g.op("MatMul", [reset_hidden, self.const("U_n", self.param("U")[:, 2 * units:])], self.base))
        n = g.op("Tanh", [a_n], self.base)
        if h_prev is None:  # h = h_prev + z (n - h_prev) with h_prev = 0
            return (self.mul(z, n),)
        return (self.add(h_prev, self.mul(z, self.sub(n, h_prev))),)


class _DenseCell(_Cell):
    """A vector cell (SimpleRNN, LSTM, GRU): states (N, H), products MatMul."""

    def project(self, x: str) -> str:
        return self.g.op("Add", [self.g.op("MatMul", [x, self.g.const(f"{self.base}_W", self.param("W"))], self.base),
                                 self.g.const(f"{self.base}_b", self.param("b"))], self.base)

    def recurrent(self, h_prev: str) -> str:
        return self.g.op("MatMul", [h_prev, self.const("U", self.param("U"))], self.base)

    def vector_shape(self):
        return (1, self.units)

    def state_shape(self):
        return (1, self.units)


class _ConvCell(_Cell):
    """ConvLSTM2D: states (N, F, H, W); 'same'-padded stride-1 Conv for both products.

    Our kernels are (k, k, C, 4F), gate blocks along the last axis; ONNX's Conv wants
    (4F, C, k, k), which keeps the blocks ``i, f, g, o`` along the output channels.
    """

    def __init__(self, g: _Graph, b: _Block, sfx: str, x: str):
        self.k = b.settings["kernel_size"]
        self.frame = tuple(b.in_shapes[0][2:])
        super().__init__(g, b, sfx, x)

    def conv(self, x: str, kernel: np.ndarray, name: str, bias: np.ndarray | None = None) -> str:
        pad = self.k // 2
        inputs = [x, self.const(name, kernel.transpose(3, 2, 0, 1))]
        if bias is not None:
            inputs.append(self.const(f"{name}_b", bias))
        return self.g.op("Conv", inputs, self.base, kernel_shape=[self.k, self.k], pads=[pad] * 4)

    def project(self, x: str) -> str:
        steps, channels = self.b.in_shapes[0][:2]
        frames = self.g.reshape(x, [-1, channels, *self.frame], self.base)       # (N*T, C, H, W)
        y = self.conv(frames, self.param("W"), "W", self.param("b"))
        return self.g.reshape(y, [-1, steps, 4 * self.units, *self.frame], self.base)

    def recurrent(self, h_prev: str) -> str:
        return self.conv(h_prev, self.param("U"), "U")

    def vector_shape(self):
        return (1, self.units, 1, 1)

    def state_shape(self):
        return (1, self.units) + self.frame


EMITTERS: dict[str, Emitter] = {
    "Dense": _dense,
    "ReLU": _elementwise("Relu"),
    "LeakyReLU": _leaky_relu,
    "Tanh": _elementwise("Tanh"),
    "Sigmoid": _elementwise("Sigmoid"),
    "Softmax": _elementwise("Softmax", axis=-1),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Conv2D": _conv2d,
    "Conv1D": _conv1d,
    "MaxPool2D": _pool("MaxPool", 2),
    "AvgPool2D": _pool("AveragePool", 2),
    "MaxPool1D": _pool("MaxPool", 1),
    "AvgPool1D": _pool("AveragePool", 1),
    "GlobalAvgPool": _global_avg_pool,
    "GlobalMaxPool1D": _global_max_pool_1d,
    "Embedding": _embedding,
    "TimeSlice": _time_slice,
    "RepeatSteps": _repeat_steps,
    "BatchNorm": _batch_norm,
    "Add": _add,
    "Concat": _concat,
    "Classify": _classify,
    "Regress": _regress,
    "SimpleRNN": _emit_recurrent,
    "LSTM": _emit_recurrent,
    "GRU": _emit_recurrent,
    "ConvLSTM2D": _emit_recurrent,
}
"""Block type -> the function that writes its ONNX nodes (inputs and output batch first)."""


# ============================================================================ the export
def _import_onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError(MISSING_ONNX) from None
    return onnx, helper, numpy_helper, TensorProto


def build_onnx(project, unroll_recurrent: bool = False) -> tuple[Any, dict]:
    """The ONNX ``ModelProto`` of ``project`` and the summary ``export_project`` returns.

    ``unroll_recurrent``: write every recurrent block step by step in primitive operators
    instead of ONNX's RNN, LSTM and GRU (same results; a larger graph).

    ExportError when onnx is missing, the graph cannot be built, or a block has no ONNX
    translation (the message names the block).
    """
    onnx, helper, numpy_helper, TensorProto = _import_onnx()
    from gatescope.compute.backend import to_numpy
    from gatescope.compute.graph import GraphError

    try:
        model = project.build_model()
    except (GraphError, ValueError) as exc:
        raise ExportError(f"the model cannot be exported: {exc}") from None
    except MemoryError:
        raise ExportError(f"not enough memory to build the model, of {_model_size(project)}; make it smaller") from None
    info = model.analysis.info
    g = _Graph(helper, numpy_helper, unroll_recurrent)
    values: dict[str, str] = {}
    exported: list[dict] = []
    handing = set(model.state_sources.values())
    for bid in model.order:
        layer = model.layers[bid]
        if bid == model.input_id:
            values[bid] = INPUT_NAME
            continue
        emitter = EMITTERS.get(layer.type_name)
        if emitter is None:
            raise ExportError(f"block {bid} ({layer.type_name}) has no ONNX equivalent yet")
        block_info = info[bid]
        params = {k: to_numpy(v).astype(np.float32) for k, v in layer.params.items()}
        distributed = block_info.time_distributed
        step_out = block_info.out_shape[1:] if distributed else block_info.out_shape
        block = _Block(bid, layer, params, block_info.in_shapes, step_out)
        block.hands_state = bid in handing
        if bid in model.state_sources:
            block.state_in = _state_in(g, model, model.state_sources[bid], values)
        xs = [values[s] for s in model.sources[bid]]
        g.ops_of_block = []
        if distributed:
            steps = block_info.out_shape[0]
            # (N, T, ...) -> (N*T, ...): every timestep is one more sample of the same block.
            xs = [g.reshape(x, [-1] + list(shape), f"{bid}_steps") for x, shape in zip(xs, block.in_shapes)]
            y = emitter(g, block, xs)
            y = g.reshape(y, [-1, steps] + list(step_out), f"{bid}_clips")
        else:
            y = emitter(g, block, xs)
        values[bid] = y
        exported.append({"id": bid, "type": layer.type_name, "onnx": sorted(set(g.ops_of_block)),
                         "time_distributed": distributed})

    in_shape = ["batch"] + list(model.input_shape)
    out_shape = ["batch"] + list(info[model.head_id].out_shape)
    graph = helper.make_graph(
        g.nodes, _safe_name(project.name),
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)],
        initializer=g.initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="GateScope", producer_version=_version())
    onnx_model.ir_version = IR_VERSION
    onnx_model.doc_string = f"GateScope project {project.name!r}"

    input_settings = model.layers[model.input_id].settings
    head = model.layers[model.head_id]
    metadata = {
        "format": "gatescope-onnx",
        "project": project.name,
        "task": model.task,
        "trained": bool(project.trained),
        "input": {"name": INPUT_NAME, "shape": list(input_settings["shape"]),
                  "normalize": input_settings["normalize"], "clip_stride": input_settings["clip_stride"]},
        "output": {"name": OUTPUT_NAME,
                   "meaning": "class probabilities" if model.task == "classification" else "values"},
        "class_names": class_names(head.settings.get("class_names", "")) if model.task == "classification" else [],
    }
    helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(metadata)})
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except Exception as exc:  # a bug of this exporter, never the person's: say so plainly
        raise ExportError(f"the exported model failed ONNX's own check ({exc}); please report this") from None

    summary = {
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "inputs": [{"name": INPUT_NAME, "shape": in_shape}],
        "outputs": [{"name": OUTPUT_NAME, "shape": out_shape, "meaning": metadata["output"]["meaning"]}],
        "blocks": exported,
        "trained": bool(project.trained),
        "metadata": metadata,
    }
    if not project.trained:
        summary["note"] = ("the project is not trained yet: the file holds its initial (random) weights; "
                           "train it and export again for a useful model")
    return onnx_model, summary


def export_project(project, path, unroll_recurrent: bool = False) -> dict:
    """Write ``project``'s model to ``path`` as ONNX; returns a summary of what was written.

    ``unroll_recurrent``: see ``build_onnx``; off by default (ONNX's own recurrent operators).

    The summary: ``path``, ``opset``, ``ir_version``, ``inputs`` and ``outputs`` (names and
    shapes, ``"batch"`` for the free batch axis), ``blocks`` (each block's id, type and the
    ONNX operators it became), ``trained``, ``metadata`` and, for an untrained project, a
    ``note`` saying the weights are the initial ones. ExportError when it cannot.
    """
    onnx_model, summary = build_onnx(project, unroll_recurrent)
    path = Path(path)
    try:
        payload = onnx_model.SerializeToString()
    except (ValueError, MemoryError) as exc:  # protobuf refuses messages over 2 GB
        raise ExportError(f"the model, of {_model_size(project)}, is too large to write as ONNX ({exc})") from None
    try:
        write_atomically(path, payload)  # a full disk leaves an existing file as it was, never truncated
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return {"path": str(path), **summary}


def _model_size(project) -> str:
    from gatescope.compute.graph import analyse, weights_text
    return weights_text(analyse(project.graph).total_params)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "gatescope_model"


def _version() -> str:
    try:
        from gatescope.studio import __version__
    except ImportError:  # pragma: no cover - the package always has it
        return "unknown"
    return __version__
