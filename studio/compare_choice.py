"""What a comparison compares: one block swapped for others of its family, or one setting at
several values (issue 19). Qt-free: the project file (``studio.project``) checks a saved choice
with it and the command line reads one.

``CompareChoice`` is the choice; ``parse_swap("b1=SimpleRNN,LSTM,GRU")`` and
``parse_vary("training.clip_norm=0,1")`` read the command line's spellings; ``from_json`` reads
a project file's ``compare`` member strictly (docs/file-format.md) and ``to_json`` writes it.
``studio.compare`` turns a choice into the variants themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gatescope.compute.train import WHOLE_RANGES

MIN_VARIANTS, MAX_VARIANTS = 2, 6
TRAINING = "training"            # the "block" that names the training settings in --vary
VARIANT_MARK = ":"               # LSTM:peephole: a type and its variant setting
MAX_NAME = 200
MAX_EPOCHS = WHOLE_RANGES["epochs"][1]     # as the epochs setting itself


class ChoiceError(ValueError):
    """A comparison that cannot be made; the message says what to write instead."""


@dataclass(frozen=True)
class CompareChoice:
    """``kind`` ``"swap"``: block ``block`` becomes each of ``options`` (type names, or
    ``LSTM:peephole`` for a type with one of its variants) in turn. ``kind`` ``"vary"``: setting
    ``setting`` of block ``block`` (or of the training settings, ``block == "training"``) takes
    each of ``options`` in turn (values, or their text as typed). ``epochs``: how long each
    variant trains (None: its own ``epochs`` setting)."""

    kind: str
    block: str
    options: tuple
    setting: str = ""
    epochs: int | None = None

    def describe(self) -> str:
        """The choice as the command line spells it (``b1=LSTM,GRU``, ``training.clip_norm=0,1``)."""
        values = ",".join(spell(v) for v in self.options)
        return f"{self.block}={values}" if self.kind == "swap" else f"{self.block}.{self.setting}={values}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "block": self.block}
        if self.kind == "swap":
            data["types"] = list(self.options)
        else:
            data["setting"] = self.setting
            data["values"] = [list(v) if isinstance(v, tuple) else v for v in self.options]
        if self.epochs is not None:
            data["epochs"] = self.epochs
        return data


def spell(value: Any) -> str:
    """A value as the command line writes it: ``true``, ``0.001``, ``8x8``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count_checked(options: list, what: str) -> tuple:
    if not MIN_VARIANTS <= len(options) <= MAX_VARIANTS:
        raise ChoiceError(f"a comparison takes {MIN_VARIANTS} to {MAX_VARIANTS} {what}, not {len(options)}")
    return tuple(options)


def parse_swap(text: str, epochs: int | None = None) -> CompareChoice:
    """``BLOCK_ID=TYPE1,TYPE2,...`` -> a swap; ChoiceError naming what is wrong."""
    block, sep, rest = text.partition("=")
    types = [t.strip() for t in rest.split(",") if t.strip()]
    if not sep or not block.strip() or not types:
        raise ChoiceError(f"--swap takes BLOCK_ID=TYPE1,TYPE2,... (such as b1=SimpleRNN,LSTM,GRU), not {text!r}")
    return CompareChoice("swap", block.strip(), _count_checked(types, "types"), epochs=epochs)


def parse_vary(text: str, epochs: int | None = None) -> CompareChoice:
    """``BLOCK_ID.SETTING=V1,V2,...`` (``training.SETTING`` for a training setting) -> a vary;
    the values stay text until ``studio.compare`` reads them as the setting's kind."""
    target, sep, rest = text.partition("=")
    block, dot, setting = target.strip().rpartition(".")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if not sep or not dot or not block or not setting or not values:
        raise ChoiceError(f"--vary takes BLOCK_ID.SETTING=V1,V2,... (such as b1.hidden_size=16,64 or "
                          f"training.learning_rate=0.001,0.01), not {text!r}")
    return CompareChoice("vary", block, _count_checked(values, "values"), setting=setting, epochs=epochs)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise ChoiceError(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def _value(value: Any, what: str):
    """A setting's value as JSON holds it: a bool, a finite number, a short string or a shape."""
    if isinstance(value, bool) or isinstance(value, str) and len(value) <= MAX_NAME:
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ChoiceError(f"{what} must be finite")
        return value
    if isinstance(value, list) and 1 <= len(value) <= 4 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1_000_000 for v in value):
        return tuple(value)
    raise ChoiceError(f"{what} must be a number, true or false, a short string or a list of up to 4 sizes")


def from_json(data: Any) -> CompareChoice:
    """A saved choice (a project's ``compare`` member), every value checked; ChoiceError saying
    which one is wrong."""
    if not isinstance(data, dict):
        raise ChoiceError("must be an object")
    unknown = sorted(set(data) - {"kind", "block", "types", "setting", "values", "epochs"})
    if unknown:
        raise ChoiceError(f"has unknown keys {', '.join(unknown)}")
    kind = data.get("kind")
    if kind not in ("swap", "vary"):
        raise ChoiceError("kind must be swap or vary")
    block = _name(data.get("block"), "block")
    epochs = data.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool)
                               or not 0 <= epochs <= MAX_EPOCHS):
        raise ChoiceError(f"epochs must be a whole number from 0 to {MAX_EPOCHS:,}")
    if kind == "swap":
        types = data.get("types")
        if not isinstance(types, list):
            raise ChoiceError("types must be a list of block types")
        return CompareChoice("swap", block, _count_checked([_name(t, "each type") for t in types], "types"),
                             epochs=epochs)
    values = data.get("values")
    if not isinstance(values, list):
        raise ChoiceError("values must be a list")
    return CompareChoice("vary", block, _count_checked([_value(v, "each value") for v in values], "values"),
                         setting=_name(data.get("setting"), "setting"), epochs=epochs)
