"""What every block of the model graph is: settings, shape inference, parameters, forward, backward.

A layer owns named parameters (``params``) and their gradients (``grads``). ``forward`` keeps
exactly what ``backward`` needs on the layer; ``backward`` accumulates parameter gradients
with ``+=`` and returns the gradient of each input. Shapes given to and returned by
``output_shape`` are per sample, without the batch axis: image ``(C, H, W)``, vector ``(F,)``,
sequence ``(T, F)``, video clip ``(T, C, H, W)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

RANK_NAMES = {1: "vector", 2: "sequence", 3: "image", 4: "video clip"}
MAX_SHAPE_VALUES = 2**31
"""The most values a shape setting may hold per sample (a 46,000 x 46,000 image): products of
shapes, batch sizes and units are computed in int64 and must not overflow."""


def describe_shape(shape: tuple[int, ...]) -> str:
    """'image 1x8x8', 'sequence 100x2', ... as a student reads it."""
    kind = RANK_NAMES.get(len(shape), f"rank-{len(shape)} tensor")
    return f"{kind} {'x'.join(str(s) for s in shape)}"


def reshape_target(shape: tuple[int, ...], rank: int) -> tuple[int, ...] | None:
    """The natural reading of a vector ``shape`` with ``rank`` axes, or None: a vector of F as a
    sequence of F steps of one feature ``(F, 1)``; a vector of a square number of values as one
    grey square image ``(1, S, S)``. (A sequence fed to an image block gets no such hint: reading
    steps x features as a picture is rarely what was meant.)"""
    values = int(np.prod(shape))
    if len(shape) == 1 and rank == 2:
        return (values, 1)
    if len(shape) == 1 and rank == 3:
        side = int(round(values ** 0.5))
        return (1, side, side) if side * side == values else None
    return None


def reshape_hint(shape: tuple[int, ...], rank: int) -> str:
    """A sentence pointing at the Reshape block that turns ``shape`` into ``rank`` axes, or ''."""
    target = reshape_target(tuple(shape), rank)
    if target is None or len(shape) >= rank:
        return ""
    return (f"put a Reshape block before it with shape {', '.join(map(str, target))} "
            f"(it reads each {describe_shape(tuple(shape))} as {with_article(describe_shape(target))})")


def with_article(noun: str) -> str:
    """``'an image'``, ``'a sequence'``, ``'an LSTM'``, ``'a GRU'``: the indefinite article a word
    takes, by its first letter, or for a capitalised acronym by how that letter is said ("el")."""
    word = noun.split(" ")[0]
    acronym = len(word) > 1 and word[:2].isupper()
    vowel = noun[:1] in "AEFHILMNORSX" if acronym else noun[:1].lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {noun}"


class ShapeError(ValueError):
    """A block cannot work with what it is fed. The message says why and what to change."""


class SettingsError(ValueError):
    """A block setting has a value it cannot take. The message names the setting."""


@dataclass(frozen=True)
class Setting:
    """One user-editable setting of a block, described so the inspector can pick its widget.

    ``kind``: ``int``, ``float``, ``bool``, ``choice``, ``str``, ``shape`` (tuple of ints) or
    ``padding`` (``valid``, ``same`` or an int).
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this setting's type, or SettingsError naming the problem."""
        name = self.label or self.name
        try:
            if self.kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out = int(value)
            elif self.kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not np.isfinite(out):
                    raise ValueError
            elif self.kind == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError
                out = bool(value)
            elif self.kind == "choice":
                if value not in self.choices:
                    raise SettingsError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
                out = value
            elif self.kind == "str":
                if not isinstance(value, str):
                    raise ValueError
                out = value
            elif self.kind == "shape":
                if isinstance(value, (str, bytes)) or not all(
                        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
                    raise ValueError
                out = tuple(int(v) for v in value)
                if not 1 <= len(out) <= 4 or min(out) < 1:
                    raise SettingsError(f"{name} must be 1 to 4 positive sizes, not {list(value)}")
                if math.prod(out) > MAX_SHAPE_VALUES:  # beyond it, shape products overflow int64 in NumPy
                    raise SettingsError(f"{name} {list(out)} holds {math.prod(out):,} values per sample; "
                                        f"at most {MAX_SHAPE_VALUES:,} are allowed")
            elif self.kind == "padding":
                if value in ("valid", "same"):
                    out = value
                elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
                    out = int(value)
                else:
                    raise SettingsError(f"{name} must be 'valid', 'same' or a number >= 0, not {value!r}")
            else:  # pragma: no cover - a programming error in a layer's spec
                raise AssertionError(f"unknown setting kind {self.kind}")
        except SettingsError:
            raise
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be a{'n' if self.kind == 'int' else ''} {self.kind}, "
                                f"not {value!r}") from None
        if self.minimum is not None and out < self.minimum:
            raise SettingsError(f"{name} must be at least {self.minimum:g}, not {out}")
        if self.maximum is not None and out > self.maximum:
            raise SettingsError(f"{name} must be at most {self.maximum:g}, not {out}")
        return out


class Layer:
    """Base class of every block. Subclasses set the class attributes and override the methods.

    Class attributes:
      ``type_name``   the block's name in project files and the palette (a contract).
      ``category``    its palette group: Input, Convolution, Pooling, Dense, Recurrent, Merge, Output.
      ``summary``     one plain sentence for the tooltip.
      ``settings_spec`` its settings.
      ``n_inputs``    how many wires it takes; None for two or more (merges).
      ``step_rank``   the rank of the per-sample input it handles natively; fed a tensor of one
                      more rank (a sequence of what it expects) it is applied to every timestep
                      with shared weights (time-distributed, DESIGN section 2). None: any rank.
      ``buffers``     names in ``params`` that are state, not trainable (BatchNorm's running
                      statistics): saved with the weights, never updated from gradients.
      ``optional_ports`` input ports that may stay unwired.
      ``port_names``  what each input port takes, as the canvas names it ("" for plain blocks).
      ``state_port``  the input port that takes an initial state (recurrent blocks: 1), or None.
                      Its wire does not feed ``output_shape``: the block checks it with
                      ``state_problem`` and ``forward`` gets the state as a last input (a dict:
                      ``h0``, and ``c0`` from an LSTM), its gradient returned the same way.
      ``hands_state`` True for blocks whose final state a state wire hands on (``final_state``).
    """

    type_name: ClassVar[str] = ""
    category: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    settings_spec: ClassVar[tuple[Setting, ...]] = ()
    n_inputs: ClassVar[int | None] = 1
    step_rank: ClassVar[int | None] = None
    buffers: ClassVar[tuple[str, ...]] = ()
    optional_ports: ClassVar[tuple[int, ...]] = ()
    port_names: ClassVar[tuple[str, ...]] = ()
    state_port: ClassVar[int | None] = None
    hands_state: ClassVar[bool] = False

    def __init__(self, **settings: Any):
        self.settings = self.coerce_settings(settings)
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.in_shapes: list[tuple[int, ...]] = []

    # ----------------------------------------------------------------- settings
    @classmethod
    def coerce_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with ``settings``, each coerced; SettingsError for unknown or bad ones."""
        spec = {s.name: s for s in cls.settings_spec}
        unknown = sorted(set(settings) - set(spec))
        if unknown:
            raise SettingsError(f"{cls.type_name} has no setting {', '.join(unknown)}")
        return {name: s.coerce(settings.get(name, s.default)) for name, s in spec.items()}

    # ----------------------------------------------------------------- shapes
    def time_distributed(self, in_shapes: list[tuple[int, ...]]) -> bool:
        """True when every input is a sequence of what this block expects per step."""
        return self.step_rank is not None and all(len(s) == self.step_rank + 1 for s in in_shapes)

    def check_rank(self, in_shapes: list[tuple[int, ...]]) -> None:
        """ShapeError unless each input has the rank this block handles natively."""
        if self.step_rank is None:
            return
        for shape in in_shapes:
            if len(shape) != self.step_rank:
                hint = reshape_hint(shape, self.step_rank)
                raise ShapeError(
                    f"{self.type_name} expects {with_article(RANK_NAMES[self.step_rank])} per sample (or a "
                    f"sequence of them), but is fed {with_article(describe_shape(shape))}" +
                    (f"; {hint}" if hint else ""))

    def output_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Per-sample output shape for per-sample (per-step) ``in_shapes``; ShapeError if it cannot work."""
        raise NotImplementedError

    def param_shapes(self, in_shapes: list[tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter for these input shapes. Default: none."""
        return {}

    def param_count(self, in_shapes: list[tuple[int, ...]]) -> int:
        return int(sum(np.prod(s, dtype=np.int64) for s in self.param_shapes(in_shapes).values()))

    def param_formula(self, in_shapes: list[tuple[int, ...]]) -> str:
        """The parameter arithmetic in the lectures' words, e.g. '5 x (3x3x3 + 1) = 140'."""
        n = self.param_count(in_shapes)
        return "no parameters" if n == 0 else f"{n:,} parameters"

    def size_formula(self, in_shapes: list[tuple[int, ...]]) -> str:
        """The output-size arithmetic in the lectures' words for blocks that slide a window
        (``floor((8 + 2x1 - 3) / 1) + 1 = 8``); empty for the others."""
        return ""

    def input_problem(self, x) -> str | None:
        """Why this block cannot read the values of ``x``, a batch straight from the Input (ids
        out of an Embedding's vocabulary), in one sentence; None when it can, or when any values
        do (the default). Checked on the whole dataset before training starts."""
        return None

    # ----------------------------------------------------------------- parameters
    def build(self, in_shapes: list[tuple[int, ...]], rng: np.random.Generator, xp=np,
              dtype=np.float32) -> None:
        """Create parameters for per-step ``in_shapes`` (initialised from ``rng``) and zero grads."""
        self.in_shapes = list(in_shapes)
        host = self.initial_params(in_shapes, rng)
        self.params = {k: xp.asarray(v, dtype=dtype) for k, v in host.items()}
        self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}

    def initial_params(self, in_shapes: list[tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fresh float64 host arrays for every parameter. Default: none."""
        return {}

    def zero_grads(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    # ----------------------------------------------------------------- compute
    def forward(self, inputs: list[Any], training: bool) -> Any:
        """Batch-first inputs -> batch-first output; keeps what backward needs."""
        raise NotImplementedError

    def backward(self, grad_output: Any) -> list[Any]:
        """dL/d(output) -> [dL/d(input) for each input]; adds parameter gradients into ``grads``."""
        raise NotImplementedError

    def set_rng(self, rng: np.random.Generator) -> None:
        """Give a stochastic layer (Dropout) the generator of this step. Default: nothing."""

