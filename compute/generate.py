"""One-to-many generation from a character model (seed 001's "type h, get hello"), and an
encoder-decoder's answers.

The character model reads a window of one-hot characters ``(T, V)`` and predicts the next
character; each sampled character is appended and fed back as the next input. The
encoder-decoder (``answer_greedily``) reads a question and writes its answer the same way, one
character fed back per step.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gatescope.compute.backend import to_numpy


def sample_index(probs: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """An index drawn from ``probs`` sharpened (temperature < 1) or flattened (> 1) as
    ``p^(1/temperature)``; temperature 0 takes the most likely index."""
    if temperature <= 0:
        return int(np.argmax(probs))
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-30)) / temperature
    p = np.exp(logp - logp.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(model, vocab: Sequence[str], prefix: str, length: int, temperature: float = 1.0,
             rng: np.random.Generator | None = None) -> tuple[str, np.ndarray]:
    """``prefix`` continued by ``length`` generated characters.

    ``model``: a ``compute.graph.Model`` whose input is a sequence ``(T, V)`` of one-hot
    characters and whose output is class probabilities per step ``(T, V)`` or for the last
    step ``(V,)``. Each step the model reads the last T characters (left-padded with all-zero
    steps while there are fewer) and the next character is drawn from its prediction for the
    last one. A model with an output per step reads the characters from the start of its
    window instead (right-padded), the way it was trained, and the next character is its
    prediction at the last real step: a unidirectional recurrent model cannot see the padding
    after that step, so short prefixes such as the lectures' "h" work. Returns the whole text and the probability arrays ``(length, V)``, one row per
    generated character. ValueError if ``prefix`` is empty or holds a character not in
    ``vocab``.
    """
    rng = rng if rng is not None else np.random.default_rng()
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted({c for c in prefix if c not in index})
    if missing:
        raise ValueError(f"the prefix holds characters the model does not know: {''.join(missing)!r}")
    if not prefix:
        raise ValueError("the prefix must hold at least one character to start from")
    window, size = model.input_shape
    if size != len(vocab):
        raise ValueError(f"the model reads {size} values per step, but the vocabulary has {len(vocab)}")
    ids = [index[c] for c in prefix]
    steps = np.zeros((length, len(vocab)), dtype=np.float32)
    x = np.zeros((1, window, size), dtype=np.float32)
    per_step = len(model.analysis.info[model.head_id].out_shape) == 2
    for k in range(length):
        recent = ids[-window:]
        x[...] = 0
        start = 0 if per_step else window - len(recent)
        x[0, start + np.arange(len(recent)), recent] = 1.0
        out = to_numpy(model.forward(x, training=False))[0]
        probs = out[len(recent) - 1] if per_step else out
        steps[k] = probs
        ids.append(sample_index(probs, temperature, rng))
    return prefix + "".join(vocab[i] for i in ids[len(prefix):]), steps


def answer_greedily(model, x: np.ndarray, recipe: dict, batch_size: int = 256, temperature: float = 0.0,
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An encoder-decoder's own answers to the questions in ``x``, fed back step by step.

    ``x`` ``(N, Q + A, V)``: one-hot questions in steps ``0..Q-1`` (whatever steps ``Q..`` hold
    is ignored: it is where training put the answer, teacher forcing). ``recipe`` (a dataset's
    ``meta["answer"]``): ``start_step`` Q, ``steps`` A, ``start_id`` (the token the decoder reads
    first) and ``end_id``. The decoder's step k reads the character it wrote at step k-1 (the
    start token at k = 0) and its most likely character is taken (greedy; with ``temperature`` > 0
    each row's character is drawn as ``sample_index`` draws, from ``rng``). A unidirectional
    decoder cannot see the steps after k, so the model runs once per answer step with one more
    character filled in; steps after an end token are still computed but not part of the answer
    (``sequence_accuracy``). Returns the answers ``(N, A)`` as ids and the probabilities of
    every step ``(N, A, V)``.
    """
    start, steps = int(recipe["start_step"]), int(recipe["steps"])
    work = np.array(x, dtype=np.float32, copy=True)
    work[:, start:] = 0.0
    work[:, start, int(recipe["start_id"])] = 1.0
    rows = np.arange(len(work))
    answers = np.zeros((len(work), steps), dtype=np.int64)
    probs = None
    for k in range(steps):
        probs = model.predict(work, batch_size)
        if temperature > 0:
            rng = rng if rng is not None else np.random.default_rng()
            answers[:, k] = [sample_index(row, temperature, rng) for row in probs[:, k]]
        else:
            answers[:, k] = probs[:, k].argmax(axis=-1)
        if k + 1 < steps:
            work[rows, start + k + 1, answers[:, k]] = 1.0
    return answers, probs


def sequence_accuracy(answers: np.ndarray, targets: np.ndarray, end_id: int) -> float:
    """The share of rows whose whole answer is right: every character up to and including the
    first end token (what follows it is not part of the answer)."""
    def cut(row):
        row = list(row)
        return row[:row.index(end_id) + 1] if end_id in row else row
    if len(targets) == 0:
        return float("nan")
    return float(np.mean([cut(a) == cut(t) for a, t in zip(answers.tolist(), targets.tolist())]))


def ask(model, recipe: dict, question: str, temperature: float = 0.0,
        rng: np.random.Generator | None = None) -> tuple[str, np.ndarray]:
    """An encoder-decoder's answer to one ``question`` typed as text (``"123+45"``), written as its
    dataset writes questions (``recipe``: ``vocab``, ``start_step`` Q, ``steps``, ``pad``, and
    ``reversed_question``). Returns the characters written up to and including the end token
    (``"168."``; all ``steps`` of them when no end token comes) and their probabilities
    ``(characters written, V)``, row k the distribution character k was taken from.
    ValueError naming the problem for characters outside the vocabulary or a question longer than Q.
    """
    vocab, length = list(recipe["vocab"]), int(recipe["start_step"])
    index = {c: i for i, c in enumerate(vocab)}
    allowed = [c for i, c in enumerate(vocab)
               if c != recipe["pad"] and i not in (int(recipe["start_id"]), int(recipe["end_id"]))]
    missing = sorted({c for c in question if c not in allowed})
    if not question:
        raise ValueError("type a question first")
    if missing:
        raise ValueError(f"a question is written with {''.join(allowed)!r}; {''.join(missing)!r} is not among them")
    if len(question) > length:
        raise ValueError(f"a question has at most {length} characters; {question!r} has {len(question)}")
    padded = question.ljust(length, recipe["pad"])
    if recipe.get("reversed_question"):
        padded = padded[::-1]
    x = np.zeros((1, length + int(recipe["steps"]), len(vocab)), dtype=np.float32)
    x[0, np.arange(length), [index[c] for c in padded]] = 1.0
    answers, probs = answer_greedily(model, x, recipe, temperature=temperature, rng=rng)
    written = answers[0].tolist()
    end = int(recipe["end_id"])
    stop = written.index(end) + 1 if end in written else len(written)
    return "".join(vocab[i] for i in written[:stop]), probs[0, :stop]
