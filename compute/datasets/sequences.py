"""Generated and bundled sequence datasets: the classic memory tasks, noisy sines, the
lectures' "hello", and character-level text. All generated ones are seeded by ``seed``.

Shapes follow the engine's convention, batch first: ``x`` ``(N, T, F)``; ``y`` ``(N, 1)``
for one regression target per sequence, ``(N, T)`` labels or ``(N, T, 1)`` targets per step.
(The digits read row by row are ``digits`` with ``layout='rows'``.)
"""
from __future__ import annotations

import numpy as np

from gatescope.assets import DATA
from gatescope.compute.datasets import Dataset, register_builtin
from gatescope.compute.datasets.checks import (MAX_GENERATED, MAX_SEED, flag, real_number, sample_budget,
                                               whole_number)

MAX_STEPS = 100_000


@register_builtin("adding", "Adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values")
def adding(n: int = 2000, length: int = 100, seed: int = 0) -> Dataset:
    """``x`` ``(n, length, 2)``: channel 0 uniform values in [0, 1), channel 1 a marker with
    exactly two 1s (one in each half of the sequence). ``y`` ``(n, 1)``: the sum of the two
    marked values. Predicting the mean, 1.0, gives a mean squared error of about 1/6; a
    model that remembers does far better."""
    n = whole_number("adding", "n", n, 1, MAX_GENERATED)
    length = whole_number("adding", "length (at least 2, to hold two markers)", length, 2, MAX_STEPS)
    seed = whole_number("adding", "seed", seed, 0, MAX_SEED)
    sample_budget("adding", n, length * 2)
    rng = np.random.default_rng([seed, 1997])
    values = rng.random((n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    marker = np.zeros((n, length))
    rows = np.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = np.stack([values, marker], axis=-1).astype(np.float32)
    y = (values[rows, first] + values[rows, second]).astype(np.float32).reshape(n, 1)
    return Dataset("adding", x, y, "regression",
                   description=f"Adding problem, {n} sequences of {length} steps",
                   meta={"baseline_mse": 1.0 / 6.0})


@register_builtin("copy", "Copy after a delay: recall a sequence of symbols after a pause")
def copy(n: int = 2000, symbols: int = 5, delay: int = 10, vocabulary: int = 8, seed: int = 0) -> Dataset:
    """A memory task, classification per step. Each sequence has ``T = 2*symbols + delay``
    steps: ``symbols`` random symbols (classes 1..vocabulary), then ``delay`` blank steps whose
    last carries the "recall now" marker, then ``symbols`` blank steps during which the
    target is the symbols in order. Every other target is the blank class 0.

    ``x`` ``(n, T, vocabulary + 2)`` one-hot: index 0 blank, 1..vocabulary symbols,
    vocabulary + 1 the marker. ``y`` ``(n, T)`` int labels 0..vocabulary."""
    n = whole_number("copy", "n", n, 1, MAX_GENERATED)
    symbols = whole_number("copy", "symbols", symbols, 1, MAX_STEPS)
    delay = whole_number("copy", "delay", delay, 1, MAX_STEPS)
    vocabulary = whole_number("copy", "vocabulary", vocabulary, 1, 1000)
    seed = whole_number("copy", "seed", seed, 0, MAX_SEED)
    sample_budget("copy", n, (2 * symbols + delay) * (vocabulary + 2))
    rng = np.random.default_rng([seed, 2])
    t = 2 * symbols + delay
    seq = rng.integers(1, vocabulary + 1, (n, symbols))
    inputs = np.zeros((n, t), dtype=np.int64)
    inputs[:, :symbols] = seq
    inputs[:, symbols + delay - 1] = vocabulary + 1
    y = np.zeros((n, t), dtype=np.int64)
    y[:, symbols + delay:] = seq
    x = np.eye(vocabulary + 2, dtype=np.float32)[inputs]
    names = ["blank"] + [f"s{i}" for i in range(1, vocabulary + 1)]
    return Dataset("copy", x, y, "classification", names,
                   description=f"Copy {symbols} symbols after a delay of {delay} steps")


@register_builtin("sine", "Next-value prediction of noisy sine waves")
def sine(n: int = 1000, length: int = 50, noise: float = 0.05, seed: int = 0) -> Dataset:
    """Sines of random frequency (0.02..0.1 cycles per step), phase and amplitude (0.5..1).
    ``x`` ``(n, length, 1)``: the wave plus Gaussian noise of std ``noise``. ``y``
    ``(n, length, 1)``: the clean value one step ahead, per step (regression)."""
    n = whole_number("sine", "n", n, 1, MAX_GENERATED)
    length = whole_number("sine", "length", length, 1, MAX_STEPS)
    noise = real_number("sine", "noise", noise, 0.0, 10.0)
    seed = whole_number("sine", "seed", seed, 0, MAX_SEED)
    sample_budget("sine", n, length)
    rng = np.random.default_rng([seed, 3])
    freq = rng.uniform(0.02, 0.1, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.5, 1.0, (n, 1))
    steps = np.arange(length + 1)
    clean = amp * np.sin(2 * np.pi * freq * steps + phase)
    x = (clean[:, :-1] + noise * rng.standard_normal((n, length)))[..., None].astype(np.float32)
    y = clean[:, 1:, None].astype(np.float32)
    return Dataset("sine", x, y, "regression", description=f"Noisy sines, {length} steps, next value")


HELLO_VOCAB = ["h", "e", "l", "o"]


@register_builtin("hello", "The lectures' 'hello': read h, e, l, l and predict e, l, l, o")
def hello(n: int = 32) -> Dataset:
    """The lectures' example (seed 003): vocabulary h, e, l, o; input "hell" one-hot
    ``(n, 4, 4)``, per-step targets "ello" ``(n, 4)``. The same sequence ``n`` times, so a
    batch has something to average over."""
    n = whole_number("hello", "n", n, 1, MAX_GENERATED)
    index = {c: i for i, c in enumerate(HELLO_VOCAB)}
    x = np.eye(4, dtype=np.float32)[[index[c] for c in "hell"]]
    y = np.array([index[c] for c in "ello"], dtype=np.int64)
    return Dataset("hello", np.repeat(x[None], n, axis=0), np.repeat(y[None], n, axis=0),
                   "classification", list(HELLO_VOCAB), vocab=list(HELLO_VOCAB),
                   description="h e l l -> e l l o, one-hot, classification per step")


def load_text() -> str:
    """The bundled public-domain text (Alice's Adventures in Wonderland), line ends as ``\\n``."""
    return (DATA / "alice.txt").read_bytes().decode("ascii").replace("\r\n", "\n")


@register_builtin("text", "Character-level text: Alice's Adventures in Wonderland, next-character targets")
def text(n: int = 2000, length: int = 50, lowercase: bool = False, seed: int = 0) -> Dataset:
    """``n`` random windows of ``length`` characters from the bundled text, one-hot
    ``(n, length, V)``, with per-step targets ``(n, length)``: the index of the next character.
    ``vocab`` (and the class names) list the V characters, index -> character."""
    n = whole_number("text", "n", n, 1, MAX_GENERATED)
    corpus = load_text()
    if flag("text", "lowercase", lowercase):
        corpus = corpus.lower()
    length = whole_number("text", "length", length, 1, min(MAX_STEPS, len(corpus) - 2))
    seed = whole_number("text", "seed", seed, 0, MAX_SEED)
    vocab = sorted(set(corpus))
    sample_budget("text", n, length * len(vocab))
    codes = np.frombuffer(corpus.encode("ascii"), dtype=np.uint8)
    lookup = np.zeros(256, dtype=np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab))
    ids = lookup[codes]
    starts = np.random.default_rng([seed, 4]).integers(0, len(ids) - length, n)
    windows = ids[starts[:, None] + np.arange(length + 1)]
    x = np.eye(len(vocab), dtype=np.float32)[windows[:, :-1]]
    y = windows[:, 1:].copy()
    return Dataset("text", x, y, "classification", list(vocab), vocab=list(vocab),
                   description=f"Alice in Wonderland, windows of {length} characters, "
                               f"{len(vocab)} distinct characters")
