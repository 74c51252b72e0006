"""Generated and bundled sequence datasets: the classic memory tasks, noisy sines, the
lectures' "hello", and character-level text. All generated ones are seeded by ``seed``.

Shapes follow the engine's convention, batch first: ``x`` ``(N, T, F)``; ``y`` ``(N, 1)``
for one regression target per sequence, ``(N, T)`` labels or ``(N, T, 1)`` targets per step.
(The digits read row by row are ``digits`` with ``layout='rows'``.)
"""
from __future__ import annotations

import re

import numpy as np

from gatescope.assets import DATA
from gatescope.compute.datasets import Dataset, DataError, register_builtin
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


UNKNOWN_WORD = "<rare>"


@register_builtin("word_order", "Word order: is a run of words from Alice in the book's order, or shuffled?")
def word_order(words: int = 12, vocabulary: int = 1000, stride: int = 3, test_share: float = 0.15,
               seed: int = 0) -> Dataset:
    """Runs of ``words`` consecutive words of the bundled text as token ids ``(N, words)``
    (floats holding whole numbers), labelled 1 ("in order") as the book has them or 0
    ("shuffled"): the same words in a random other order. Every run appears twice, once each
    way, so the two classes hold exactly the same bags of words: a model that ignores word
    order (a bag of words) cannot score above 50%, and one that reads neighbouring words
    (seed 004's n-gram filters, an RNN) can. It is what the probing task "bigram shift" of
    Conneau et al. (2018) asks, with the whole run shuffled rather than two words swapped.

    Words are the lowercased runs of letters (with inner apostrophes); id 0 stands for every
    word outside the ``vocabulary - 1`` most frequent ones of the training part (``meta["words"]``
    lists id -> word). The book is cut once: runs from its first ``1 - test_share`` form ``x``,
    runs from the rest the fixed test set ``x_test``, so no test run overlaps a training one.
    Runs start every ``stride`` words."""
    length = whole_number("word_order", "words", words, 2, 200)
    vocabulary = whole_number("word_order", "vocabulary", vocabulary, 2, 100_000)
    stride = whole_number("word_order", "stride", stride, 1, 200)
    test_share = real_number("word_order", "test_share", test_share, 0.05, 0.5)
    seed = whole_number("word_order", "seed", seed, 0, MAX_SEED)
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)*", load_text().lower())
    cut = int(len(tokens) * (1.0 - test_share))
    counts: dict[str, int] = {}
    for word in tokens[:cut]:
        counts[word] = counts.get(word, 0) + 1
    kept = sorted(counts, key=lambda w: (-counts[w], w))[:vocabulary - 1]
    index = {w: i + 1 for i, w in enumerate(kept)}
    ids = np.array([index.get(w, 0) for w in tokens], dtype=np.int64)
    rng = np.random.default_rng([seed, 2018])

    def runs(first: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        starts = np.arange(first, end - length + 1, stride)
        ordered = ids[starts[:, None] + np.arange(length)]
        shuffled = ordered.copy()
        for row in shuffled:
            original = row.copy()
            while len(np.unique(original)) > 1 and np.array_equal(row, original):
                rng.shuffle(row)
        differs = (shuffled != ordered).any(axis=1)
        x = np.concatenate([ordered[differs], shuffled[differs]]).astype(np.float32)
        y = np.concatenate([np.ones(differs.sum(), np.int64), np.zeros(differs.sum(), np.int64)])
        return x, y

    x, y = runs(0, cut)
    x_test, y_test = runs(cut, len(tokens))
    return Dataset("word_order", x, y, "classification", ["shuffled", "in order"], x_test=x_test, y_test=y_test,
                   description=f"Alice in Wonderland, runs of {length} words in the book's order or shuffled "
                               f"({vocabulary} word ids; {len(x):,} training and {len(x_test):,} test runs)",
                   meta={"words": [UNKNOWN_WORD] + kept})


ADDITION_VOCAB = list("0123456789+ =.")
"""The addition dataset's characters: digits, plus, the padding space, ``=`` (the decoder's
start token) and ``.`` (the end of an answer)."""


@register_builtin("addition", "Sums written as characters: read '123+45', write '168' (encoder-decoder)")
def addition(n: int = 20000, digits: int = 3, reverse_question: bool = True, seed: int = 0) -> Dataset:
    """Unsynchronised many-to-many (seed 003's machine translation, on sums): the question
    ``a+b`` (each of 1 to ``digits`` digits, padded with spaces to ``Q = 2*digits + 1``
    characters) and its answer ``a + b`` followed by the end mark ``.`` (padded with more end
    marks to ``A = digits + 2`` characters).

    One Input carries both sequences, one-hot over ``ADDITION_VOCAB``, ``x`` ``(n, Q + A, 14)``:
    steps 0..Q-1 the question (written backwards with ``reverse_question``, as Sutskever et al.
    2014 feed their encoder: the last digits read are then the first ones the answer needs),
    steps Q.. the answer as the decoder reads it while training, ``=`` then the answer but its
    last character (teacher forcing: the target shifted by one step). ``y`` ``(n, A)``: the
    answer's characters, one label per decoder step. At inference a model reads no answer: it is
    fed its own characters back (``compute.generate.answer_greedily``, from ``meta["answer"]``).
    Distinct questions only; the same question never lands in two splits.
    """
    n = whole_number("addition", "n", n, 1, MAX_GENERATED)
    digits = whole_number("addition", "digits", digits, 1, 9)
    reverse = flag("addition", "reverse_question", reverse_question)
    seed = whole_number("addition", "seed", seed, 0, MAX_SEED)
    distinct = (10 ** digits) ** 2
    if n > distinct // 2:
        raise DataError(f"addition: {digits}-digit sums give {distinct:,} questions; ask for at most "
                        f"{distinct // 2:,} (n), or more digits")
    question, answer = 2 * digits + 1, digits + 2
    sample_budget("addition", n, (question + answer) * len(ADDITION_VOCAB))
    rng = np.random.default_rng([seed, 2014])
    seen: set[tuple[int, int]] = set()
    pairs = []
    while len(pairs) < n:
        width_a, width_b = rng.integers(1, digits + 1, 2)
        a, b = int(rng.integers(0, 10 ** width_a)), int(rng.integers(0, 10 ** width_b))
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((a, b))
    index = {c: i for i, c in enumerate(ADDITION_VOCAB)}
    ids = np.zeros((n, question + answer), dtype=np.int64)
    y = np.zeros((n, answer), dtype=np.int64)
    for row, (a, b) in enumerate(pairs):
        asked = f"{a}+{b}".ljust(question)
        said = f"{a + b}.".ljust(answer, ".")
        ids[row, :question] = [index[c] for c in (asked[::-1] if reverse else asked)]
        ids[row, question:] = [index["="]] + [index[c] for c in said[:-1]]
        y[row] = [index[c] for c in said]
    x = np.eye(len(ADDITION_VOCAB), dtype=np.float32)[ids]
    return Dataset("addition", x, y, "classification", list(ADDITION_VOCAB),
                   description=f"Sums of numbers up to {digits} digits as characters, {n:,} questions: "
                               f"{question} question steps{' (written backwards)' if reverse else ''}, then "
                               f"{answer} answer steps",
                   meta={"answer": {"start_step": question, "steps": answer, "start_id": index["="],
                                    "end_id": index["."], "vocab": list(ADDITION_VOCAB), "pad": " ",
                                    "example": "123+45" if digits >= 3 else "1+2",
                                    "reversed_question": reverse}})
