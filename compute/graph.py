"""The model graph: a DAG of blocks wired output -> input port.

``analyse(spec)`` validates a graph and infers every block's output shape and parameter
count without building anything, reporting each problem against the block it concerns in
words a student understands. ``Model`` runs a valid graph: layers in topological order
forward, and back in reverse, accumulating gradients (``+=``) where an output feeds several
blocks.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gatescope.compute import layers as layer_registry
from gatescope.compute.layers.base import Layer, SettingsError, ShapeError, describe_shape
from gatescope.compute.layers.heads import Head

MAX_PARAMETERS = 2**28
"""The most weights a model may have: 2^28 (1.07 GB as float32; training with Adam holds four
times that: weights, gradients, two moments), so the weights and optimizer state of any model
fit in a project file. A graph asking for more is refused by ``analyse`` before anything is
allocated (one Input shape can ask for 8e12, which ended in a MemoryError)."""


def weights_text(count: int) -> str:
    """``'8,000,000 weights (0.032 GB as float32)'``: a model's size as every message says it."""
    gigabytes = 4 * count / 1e9
    return f"{count:,} weights ({f'{gigabytes:,.0f}' if gigabytes >= 100 else f'{gigabytes:.3g}'} GB as float32)"


@dataclass
class Block:
    """One block of the graph: a unique ``id``, its ``type`` (a registry name) and settings."""

    id: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # JSON gives lists where settings hold tuples (shapes): one spelling, so specs compare equal
        self.settings = {k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items()}


@dataclass(frozen=True)
class Wire:
    """The output of block ``src`` feeds input ``port`` of block ``dst``."""

    src: str
    dst: str
    port: int = 0


@dataclass
class GraphSpec:
    blocks: list[Block] = field(default_factory=list)
    wires: list[Wire] = field(default_factory=list)

    def block(self, block_id: str) -> Block:
        for b in self.blocks:
            if b.id == block_id:
                return b
        raise KeyError(block_id)

    def to_dict(self) -> dict:
        return {
            "blocks": [{"id": b.id, "type": b.type, "settings": jsonable(b.settings)} for b in self.blocks],
            "wires": [{"src": w.src, "dst": w.dst, "port": w.port} for w in self.wires],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "GraphSpec":
        return cls([Block(b["id"], b["type"], dict(b.get("settings", {}))) for b in data["blocks"]],
                   [Wire(w["src"], w["dst"], int(w.get("port", 0))) for w in data["wires"]])

    @classmethod
    def chain(cls, *blocks: tuple[str, dict]) -> "GraphSpec":
        """A straight chain of blocks, ids ``b0, b1, ...``: the quickest way to write a model."""
        spec = cls([Block(f"b{i}", t, dict(s)) for i, (t, s) in enumerate(blocks)])
        spec.wires = [Wire(f"b{i}", f"b{i + 1}") for i in range(len(blocks) - 1)]
        return spec


def jsonable(settings: dict) -> dict:
    """A block's settings as JSON holds them (tuples, such as a shape, as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


@dataclass
class BlockInfo:
    """What analysis found out about one block."""

    layer: Layer | None = None
    in_shapes: list[tuple[int, ...]] = field(default_factory=list)
    out_shape: tuple[int, ...] | None = None
    time_distributed: bool = False
    param_count: int = 0
    param_formula: str = ""
    size_formula: str = ""
    error: str | None = None
    warning: str | None = None


@dataclass
class Analysis:
    """Per-block shapes, parameter counts and errors, and errors of the graph as a whole."""

    info: dict[str, BlockInfo]
    order: list[str]
    graph_errors: list[str]
    input_id: str | None
    head_id: str | None

    @property
    def ok(self) -> bool:
        return not self.graph_errors and all(i.error is None for i in self.info.values())

    @property
    def total_params(self) -> int:
        return sum(i.param_count for i in self.info.values())

    def errors(self) -> list[str]:
        """Every problem, one sentence each, block-specific ones prefixed with the block id."""
        return list(self.graph_errors) + [f"{bid}: {i.error}" for bid, i in self.info.items() if i.error]

    def first_error(self) -> str | None:
        errs = self.errors()
        return errs[0] if errs else None

    @property
    def task(self) -> str | None:
        if self.head_id is None or self.info[self.head_id].layer is None:
            return None
        return self.info[self.head_id].layer.task


def analyse(spec: GraphSpec) -> Analysis:
    """Validate ``spec`` and infer shapes; never raises for a bad graph, reports instead."""
    info = {b.id: BlockInfo() for b in spec.blocks}
    graph_errors: list[str] = []
    if len(info) != len(spec.blocks):
        graph_errors.append("two blocks share an id; every block needs its own")

    for b in spec.blocks:
        try:
            info[b.id].layer = layer_registry.create(b.type, b.settings)
        except SettingsError as exc:
            info[b.id].error = str(exc)

    # Wires: known ends, ports in range, one wire per port.
    feeds: dict[str, dict[int, str]] = defaultdict(dict)
    consumers: dict[str, list[str]] = defaultdict(list)
    for w in spec.wires:
        if w.src not in info or w.dst not in info:
            graph_errors.append(f"a wire joins {w.src} to {w.dst}, but one of them does not exist")
            continue
        if w.src == w.dst:
            info[w.dst].error = "is wired to itself; a model cannot feed a block its own output"
            continue
        layer = info[w.dst].layer
        if layer is not None and layer.n_inputs is not None and not 0 <= w.port < layer.n_inputs:
            info[w.dst].error = (f"has no input {w.port + 1}" if layer.n_inputs else
                                 "is an Input and takes no wires; wire from it, not into it")
            continue
        if w.port in feeds[w.dst]:
            info[w.dst].error = f"input {w.port + 1} is wired twice; remove one of the wires"
            continue
        feeds[w.dst][w.port] = w.src
        consumers[w.src].append(w.dst)

    # Topological order (Kahn); what is left over sits on a cycle.
    indegree = {bid: len(feeds[bid]) for bid in info}
    ready = [b.id for b in spec.blocks if indegree[b.id] == 0]
    order: list[str] = []
    while ready:
        bid = ready.pop(0)
        order.append(bid)
        for c in consumers[bid]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    for bid in info:
        if bid not in order:
            info[bid].error = info[bid].error or ("is part of a cycle; a model must flow one way, "
                                                   "from the Input to the output")

    inputs = [b.id for b in spec.blocks if b.type == "Input"]
    heads = [b.id for b in spec.blocks if isinstance(info[b.id].layer, Head)]
    if not inputs:
        graph_errors.append("the model has no Input block; drag one from the Input group")
    elif len(inputs) > 1:
        for bid in inputs[1:]:
            info[bid].error = info[bid].error or "a model takes one Input block; delete the extra one"
    if not heads:
        graph_errors.append("the model has no output block; end it with Classify or Regress")
    elif len(heads) > 1:
        for bid in heads[1:]:
            info[bid].error = info[bid].error or "a model has one output block; delete the extra one"

    # Shapes, in topological order.
    for bid in order:
        block_info, layer = info[bid], info[bid].layer
        if layer is None or block_info.error:
            continue
        n_wanted = layer.n_inputs
        ports = feeds[bid]
        if n_wanted is None:
            if len(ports) < 2 or sorted(ports) != list(range(len(ports))):
                block_info.error = "needs two or more inputs wired, one per port"
                continue
        else:
            missing = [p + 1 for p in range(n_wanted) if p not in ports and p not in layer.optional_ports]
            if missing:
                block_info.error = (f"input {missing[0]} is not connected; wire a block's output into it"
                                    if n_wanted > 1 else "its input is not connected; wire a block's output into it")
                continue
        state_source = ports.get(layer.state_port) if layer.state_port is not None else None
        sources = [ports[p] for p in sorted(ports) if p != layer.state_port]
        if any(info[s].out_shape is None for s in sources + ([state_source] if state_source else [])):
            block_info.error = "waits for the block before it, which has a problem"
            continue
        if state_source is not None:
            problem = layer.state_problem(info[state_source].layer, info[state_source].out_shape)
            if problem:
                block_info.error = problem
                continue
        shapes = [info[s].out_shape for s in sources]
        try:
            distributed = layer.time_distributed(shapes)
            step_shapes = [s[1:] for s in shapes] if distributed else shapes
            if distributed and len({s[0] for s in shapes}) > 1:
                raise ShapeError("its inputs have different numbers of timesteps")
            out = layer.output_shape(step_shapes)
            block_info.in_shapes = step_shapes
            block_info.time_distributed = distributed
            block_info.out_shape = (shapes[0][0],) + tuple(out) if distributed else tuple(out)
            block_info.param_count = layer.param_count(step_shapes)
            block_info.param_formula = layer.param_formula(step_shapes)
            block_info.size_formula = layer.size_formula(step_shapes)
        except ShapeError as exc:
            block_info.error = str(exc)
        except SettingsError as exc:
            block_info.error = str(exc)

    total = sum(i.param_count for i in info.values())
    if total > MAX_PARAMETERS:
        largest = max(info, key=lambda bid: info[bid].param_count)
        graph_errors.append(f"the model would have {weights_text(total)}, more than the {MAX_PARAMETERS:,} "
                            f"GateScope builds; make {largest} ({info[largest].param_count:,} weights) or the "
                            "Input before it smaller")

    for bid in order:
        layer = info[bid].layer
        if layer is not None and not isinstance(layer, Head) and not consumers[bid] and not info[bid].error:
            info[bid].warning = "its output is not used; wire it on or delete it"
    return Analysis(info, order, graph_errors, inputs[0] if inputs else None, heads[0] if heads else None)


def input_problem(analysis: Analysis, spec: GraphSpec, x) -> str | None:
    """Why the samples ``x`` cannot go through the blocks the Input feeds (values those blocks
    cannot read, such as token ids outside an Embedding's vocabulary), naming the block; None
    when they can. Shapes are ``fit_problem``'s to check (``compute.train``)."""
    for wire in spec.wires:
        layer = analysis.info[wire.dst].layer if wire.dst in analysis.info else None
        if wire.src == analysis.input_id and layer is not None:
            problem = layer.input_problem(x)
            if problem:
                return f"the data does not fit {wire.dst} ({layer.type_name}): {problem}"
    return None


class GraphError(ValueError):
    """The graph cannot be built; the message lists the problems."""


class Model:
    """A runnable model built from a valid graph.

    ``forward(x)`` takes a batch shaped as the Input block says (batch first) and returns the
    head's predictions; ``loss(y)`` then ``backward()`` fill every layer's ``grads``.
    """

    def __init__(self, spec: GraphSpec, seed: int = 0, xp=np, dtype=np.float32):
        analysis = analyse(spec)
        if not analysis.ok:
            raise GraphError("the model cannot be built: " + "; ".join(analysis.errors()))
        self.spec, self.analysis, self.xp, self.dtype = spec, analysis, xp, np.dtype(dtype)
        self.order = [bid for bid in analysis.order]
        self.layers: dict[str, Layer] = {bid: analysis.info[bid].layer for bid in self.order}
        self.sources: dict[str, list[str]] = {}
        self.state_sources: dict[str, str] = {}   # block -> the block whose state starts it
        ports: dict[str, dict[int, str]] = defaultdict(dict)
        for w in spec.wires:
            ports[w.dst][w.port] = w.src
        for bid in self.order:
            state_port = self.layers[bid].state_port
            self.sources[bid] = [ports[bid][p] for p in sorted(ports[bid]) if p != state_port]
            if state_port in ports[bid]:
                self.state_sources[bid] = ports[bid][state_port]
        rng = np.random.default_rng(seed)
        for bid in self.order:  # initialised in topological order, so a seed fixes every weight
            self.layers[bid].build(analysis.info[bid].in_shapes, rng, xp, self.dtype)
        self.input_id, self.head_id = analysis.input_id, analysis.head_id
        self.head: Head = self.layers[self.head_id]  # type: ignore[assignment]
        self.input_shape = analysis.info[self.input_id].out_shape
        self.task = self.head.task
        self._outputs: dict[str, Any] = {}

    # ----------------------------------------------------------------- running
    def forward(self, x, training: bool = False):
        """Predictions of the head for the batch ``x`` of shape ``(N,) + input_shape``."""
        xp = self.xp
        x = xp.asarray(x, dtype=self.dtype)
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"the model takes samples of shape {self.input_shape} "
                             f"({describe_shape(self.input_shape)}), not {tuple(x.shape[1:])}")
        outputs: dict[str, Any] = {}
        for bid in self.order:
            layer = self.layers[bid]
            if bid == self.input_id:
                outputs[bid] = x
                continue
            inputs = [outputs[s] for s in self.sources[bid]]
            if bid in self.state_sources:
                inputs.append(self._handed_state(self.state_sources[bid], outputs))
            if self.analysis.info[bid].time_distributed:
                n, t = inputs[0].shape[:2]
                y = layer.forward([a.reshape((n * t,) + a.shape[2:]) for a in inputs], training)
                outputs[bid] = y.reshape((n, t) + y.shape[1:])
            else:
                outputs[bid] = layer.forward(inputs, training)
        self._outputs = outputs
        return outputs[self.head_id]

    def loss(self, targets) -> float:
        """The head's loss for the last forward pass against ``targets``."""
        return self.head.loss(targets)

    def _handed_state(self, source: str, outputs: dict) -> dict:
        """What a state wire from ``source`` carries: a recurrent block's final state (h, and C
        from an LSTM), or any other block's output as h_0."""
        layer = self.layers[source]
        return layer.final_state() if layer.hands_state else {"h0": outputs[source]}

    def backward(self) -> None:
        """Backpropagate the head's loss gradient through every block, adding into ``grads``.
        A state wire carries its gradient back the same way: dL/d(initial state) of the block it
        starts becomes dL/d(final state) of the block that handed it over (BPTT runs on through
        the handover), or dL/d(output) of a block whose output was the initial h."""
        grads: dict[str, Any] = {self.head_id: None}
        state_grads: dict[str, dict] = {}
        for bid in reversed(self.order):
            if bid == self.input_id or (bid not in grads and bid not in state_grads):
                continue
            layer = self.layers[bid]
            # a block read only through its state wire gets no gradient on its output
            grad = grads.pop(bid) if bid in grads else self.xp.zeros_like(self._outputs[bid])
            if self.analysis.info[bid].time_distributed:
                n, t = grad.shape[:2]
                d_inputs = layer.backward(grad.reshape((n * t,) + grad.shape[2:]))
                d_inputs = [d.reshape((n, t) + d.shape[1:]) for d in d_inputs]
            elif bid in state_grads:
                d_inputs = layer.backward(grad, final_state_grad=state_grads.pop(bid))
            else:
                d_inputs = layer.backward(grad)
            for src, d in zip(self.sources[bid], d_inputs):
                if src in grads:
                    grads[src] = grads[src] + d  # an output that feeds several blocks
                else:
                    grads[src] = d
            if bid in self.state_sources:
                src, d_state = self.state_sources[bid], d_inputs[len(self.sources[bid])]
                if not self.layers[src].hands_state:
                    grads[src] = grads[src] + d_state["h0"] if src in grads else d_state["h0"]
                elif src in state_grads:
                    state_grads[src] = {k: state_grads[src][k] + v for k, v in d_state.items()}
                else:
                    state_grads[src] = d_state

    def zero_grads(self) -> None:
        for layer in self.layers.values():
            layer.zero_grads()

    def set_rng(self, rng: np.random.Generator) -> None:
        for layer in self.layers.values():
            layer.set_rng(rng)

    def output_of(self, block_id: str):
        """The batch output of ``block_id`` from the last forward pass (feature maps, ...)."""
        return self._outputs[block_id]

    # ----------------------------------------------------------------- parameters
    def parameters(self) -> list[tuple[str, Any, Any]]:
        """``(block_id/name, param, grad)`` for every trainable parameter, in a stable order.

        Buffers (running statistics a layer lists in ``buffers``) are left out: the optimizer
        never touches them, but ``state_dict`` saves them.
        """
        return [(f"{bid}/{name}", p, self.layers[bid].grads[name])
                for bid in self.order for name, p in self.layers[bid].params.items()
                if name not in getattr(self.layers[bid], "buffers", ())]

    def arrays(self) -> dict[str, Any]:
        """Every parameter and buffer, keyed ``block_id/name``, on the model's device."""
        return {f"{bid}/{name}": p for bid in self.order for name, p in self.layers[bid].params.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a host NumPy array, keyed ``block_id/name``."""
        from gatescope.compute.backend import to_numpy
        return {name: to_numpy(p).copy() for name, p in self.arrays().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters; ValueError naming the first missing or misshapen array."""
        own = self.arrays()
        for name, p in own.items():
            if name not in state:
                raise ValueError(f"the saved weights have no array {name}")
            if tuple(state[name].shape) != tuple(p.shape):
                raise ValueError(f"the saved array {name} has shape {tuple(state[name].shape)}, "
                                 f"but the block needs {tuple(p.shape)}")
        for name, p in own.items():
            p[...] = self.xp.asarray(state[name], dtype=p.dtype)

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Host predictions for a host batch of any size, in chunks of ``batch_size``."""
        from gatescope.compute.backend import to_numpy
        out = [to_numpy(self.forward(x[i:i + batch_size], training=False))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0,) + tuple(self.analysis.info[self.head_id].out_shape))
