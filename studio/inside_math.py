"""Qt-free computations behind the "inside the network" panels.

Everything here takes engine objects or probe arrays and returns plain NumPy arrays and
Python values: one probed sample's view of a recurrent layer's probe data, gate health
statistics and the sentences that flag a sick gate, the input of a sample described for a
time axis, and the test samples a probe is drawn from (the same split the trainer uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gatescope.compute.datasets import Dataset
from gatescope.compute.train import dataset_split

SATURATED_LOW = 0.05
SATURATED_HIGH = 0.95
STILL_STD = 1e-3            # a unit whose std over time is below this never moves
SATURATED_FLAG = 0.9        # flag a gate with more than this share of saturated values
FROZEN_FLAG = 0.5           # ... or more than this share of units that never move

GATE_WORDS = {"input": "input gate i_t", "forget": "forget gate f_t", "candidate": "candidate",
              "output": "output gate o_t", "reset": "reset gate r_t", "update": "update gate z_t"}


def unwrap_probes(probe_data: dict[str, Any]) -> dict[str, Any]:
    """``probe_data`` with nested dicts unwrapped.

    ``compute.train.collect_probes`` copies every value with ``np.array``, which turns the
    nested ``gates`` dict into a 0-d object array; this gives the dict back.
    """
    out = {}
    for key, value in probe_data.items():
        if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
            value = value.item()
        out[key] = value
    return out


def _per_unit(values: np.ndarray) -> np.ndarray:
    """``(S, T, H)`` as is; ConvLSTM's ``(S, T, F, H, W)`` averaged over pixels to ``(S, T, F)``."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim > 3:
        values = values.reshape(values.shape[:3] + (-1,)).mean(axis=-1)
    return values


@dataclass
class SampleProbe:
    """One probed sample of one recurrent layer (one direction).

    ``gates``: gate name -> ``(T, H)``; ``hidden``: h_t ``(T, H)``; ``cell``: C_t ``(T, H)``
    or None; ``grad_hidden`` / ``grad_cell``: ||dL/dh_t|| / ||dL/dC_t|| ``(T,)`` or None
    (no backward pass yet). ConvLSTM maps are averaged over pixels (one value per filter).
    """

    gates: dict[str, np.ndarray] = field(default_factory=dict)
    hidden: np.ndarray | None = None
    cell: np.ndarray | None = None
    grad_hidden: np.ndarray | None = None
    grad_cell: np.ndarray | None = None


def sample_probe(probe_data: dict[str, Any], sample: int = 0, direction: str = "") -> SampleProbe:
    """The ``sample``-th probed sample of ``probe_data`` (``direction`` ``""`` or ``"_rev"``)."""
    data = unwrap_probes(probe_data)
    gates = {name: _per_unit(v)[sample] for name, v in (data.get("gates" + direction) or {}).items()}
    view = SampleProbe(gates=gates)
    if "hidden_state" + direction in data:
        view.hidden = _per_unit(data["hidden_state" + direction])[sample]
    if "cell_state" + direction in data:
        view.cell = _per_unit(data["cell_state" + direction])[sample]
    if "grad_hidden_norm" + direction in data:
        view.grad_hidden = np.asarray(data["grad_hidden_norm" + direction], dtype=np.float64)[sample]
    if "grad_cell_norm" + direction in data:
        view.grad_cell = np.asarray(data["grad_cell_norm" + direction], dtype=np.float64)[sample]
    return view


def gate_health(probe_data: dict[str, Any], direction: str = "", low: float = SATURATED_LOW,
                high: float = SATURATED_HIGH, still_std: float = STILL_STD) -> dict[str, dict[str, float]]:
    """Saturation and stillness of every gate over all probed samples.

    Returns gate name -> ``{"saturated_low", "saturated_high", "saturated", "frozen_units"}``,
    fractions in 0..1: the share of values below ``low`` / above ``high`` (for the tanh
    candidate: below ``-high`` / above ``high``), their sum, and the share of units whose
    standard deviation over time is below ``still_std`` in every probed sample.
    """
    data = unwrap_probes(probe_data)
    health: dict[str, dict[str, float]] = {}
    for name, values in (data.get("gates" + direction) or {}).items():
        values = _per_unit(values)                                  # (S, T, H)
        low_edge = -high if name == "candidate" else low
        saturated_low = float(np.mean(values < low_edge))
        saturated_high = float(np.mean(values > high))
        still = np.all(values.std(axis=1) < still_std, axis=0)     # (H,)
        health[name] = {"saturated_low": saturated_low, "saturated_high": saturated_high,
                        "saturated": saturated_low + saturated_high, "frozen_units": float(np.mean(still))}
    return health


def health_findings(health: dict[str, dict[str, float]], pinned: dict[str, float] | None = None,
                    saturated_flag: float = SATURATED_FLAG, frozen_flag: float = FROZEN_FLAG) -> list[str]:
    """Sentences about gates that are stuck; gates pinned by an override (name -> constant, as
    ``compute.layers.recurrent.pinned_gates`` reads them) are left out, since they are constant
    on purpose."""
    pinned = pinned or {}
    findings = []
    for name, stats in health.items():
        if name in pinned:
            continue
        words = GATE_WORDS.get(name, name)
        if stats["saturated"] > saturated_flag:
            where = "shut (near 0)" if stats["saturated_low"] >= stats["saturated_high"] else "wide open (near 1)"
            if name == "candidate":
                where = "at -1 or 1"
            findings.append(f"{words}: {stats['saturated']:.0%} of its values are saturated, mostly {where}; "
                            "it passes almost no gradient and has stopped learning")
        if stats["frozen_units"] > frozen_flag:
            findings.append(f"{words}: {stats['frozen_units']:.0%} of its units never move over time")
    return findings


def pinned_notes(health: dict[str, dict[str, float]], pinned: dict[str, float]) -> list[str]:
    """For each gate in ``health`` that an override pins (name -> constant, as
    ``compute.layers.recurrent.pinned_gates`` reads them): a sentence saying so. A pinned gate
    is constant on purpose: its bars show it frozen, and that is the pin, not a stuck gate."""
    return [f"{GATE_WORDS.get(name, name)} is pinned to {value:g} by an override, so it is constant on purpose "
            "(its units show as never moving); unpin it in the inspector to let it learn"
            for name, value in pinned.items() if name in health]


def describe_input(x: np.ndarray, vocab: list[str] | None = None) -> tuple[str, Any, str] | None:
    """How one sample ``x`` runs along a time axis: ``(kind, values, caption)`` or None.

    A one-hot sequence over ``vocab`` -> ``("text", characters, ...)`` (an all-zero step is
    ``""``); any other sequence ``(T, F)`` -> ``("signal", x, ...)``; a clip ``(T, C, H, W)``
    -> ``("frames", (T, H, W[, 3]), ...)``; anything else (an image, a vector) -> None.
    """
    x = np.asarray(x)
    if x.ndim == 2:
        if vocab and x.shape[1] == len(vocab):
            chars = [vocab[int(i)] if row.any() else "" for i, row in zip(x.argmax(axis=1), x)]
            return "text", chars, "input x_t: " + repr("".join(chars))
        features = x.shape[1]
        return "signal", x, f"input x_t ({features} value{'s' if features > 1 else ''} per step)"
    if x.ndim == 4:
        frames = np.transpose(x, (0, 2, 3, 1)) if x.shape[1] == 3 else x[:, 0]
        return "frames", frames, f"input frames x_t ({x.shape[0]} steps)"
    return None


def probe_pool(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The test samples ``(x, y)`` of ``dataset``, split exactly as ``compute.train.Trainer`` splits it."""
    if dataset.x_test is not None:
        return dataset.x_test, dataset.y_test
    split = dataset_split(dataset, val_fraction, test_fraction, seed)
    if len(split.test):
        return dataset.x[split.test], dataset.y[split.test]
    return dataset.x[split.val if len(split.val) else split.train], dataset.y[split.val if len(split.val) else split.train]


def label_text(y: np.ndarray, dataset: Dataset | None) -> str:
    """A sample's target in words: a class name, a per-step string of characters, or numbers."""
    y = np.asarray(y)
    if dataset is not None and dataset.task == "classification":
        if y.ndim == 0:
            names = dataset.class_names
            return f"label {names[int(y)] if int(y) < len(names) else int(y)}"
        vocab = dataset.vocab or dataset.meta.get("answer", {}).get("vocab")   # characters, or an answer's
        if vocab:
            return "targets " + repr("".join(vocab[int(i)] for i in y.reshape(-1)))
        return "labels " + " ".join(str(int(i)) for i in y.reshape(-1)[:12]) + (" …" if y.size > 12 else "")
    flat = y.reshape(-1)
    return "target " + ", ".join(f"{v:.3g}" for v in flat[:6]) + (" …" if flat.size > 6 else "")
