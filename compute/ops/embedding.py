"""Embedding lookups: the row gather of forward and the scatter-add of backward.

Forward is ``W[ids]``, one gather on either array module. Backward adds each step's gradient
row into the row of ``dW`` its id names; ids repeat (a word occurs many times in a batch), so a
plain ``dW[ids] += grad`` would keep only one of them. On NumPy arrays ``scatter_rows`` is a
serial numba kernel (``compute.jit``) with a NumPy twin; on CuPy arrays it is ``cupy.add.at``
(atomic adds).

Measured on the 2-core development machine under load from other sessions
(``tools/measure_embedding_backward.py``: 2,560 rows, i.e. 64 sequences of 40 ids, medians of 15
alternated calls, a fresh zeroed ``dW`` each; ms):

    V      D    np.add.at (V,D)  add.at on the flat index  bincount per column  sort+reduceat  numba loop
    64     32   1.54             0.36                      0.54                 0.46           0.036
    1000   128  6.16             1.65                      3.56                 4.57           0.26
    10000  128  7.01             2.39                      11.4                 6.58           0.71

so the kernel is the numba loop, and its twin (and the reference the tests hold it to) is the
fastest NumPy form, ``np.add.at`` on the flat index ``id * D + column``.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute import jit
from gatescope.compute.backend import get_array_module


def id_problem(x, vocabulary: int) -> str | None:
    """Why ``x`` (token ids stored as floats, any shape) cannot index a vocabulary of
    ``vocabulary`` rows (one sentence naming the first bad id and what to change), or None."""
    xp = get_array_module(x)
    if x.size == 0:
        return None
    finite = xp.isfinite(x)
    whole = finite & (xp.floor(x) == x)
    if not bool(whole.all()):
        bad = float(x.reshape(-1)[int(xp.argmin(whole.reshape(-1)))])
        return (f"token ids must be whole numbers from 0 to {vocabulary - 1}, but the data holds {bad:g}; "
                "an Embedding reads each value as the index of a word or character, not as a measurement")
    low, high = int(x.min()), int(x.max())
    if low < 0:
        return (f"token id {low} is negative; an Embedding's ids run from 0 to {vocabulary - 1} (to pad "
                "short sequences, pad them with an id inside the vocabulary and set it as the padding id)")
    if high >= vocabulary:
        return (f"token id {high} is outside the Embedding's vocabulary of {vocabulary} (ids 0 to "
                f"{vocabulary - 1}); set its vocabulary size to at least {high + 1}")
    return None


def _scatter_rows_twin(ids, grad, out, skip):
    width = out.shape[1]
    keep = ids != skip
    flat = (ids[keep][:, None] * width + np.arange(width)).reshape(-1)
    np.add.at(out.reshape(-1), flat, grad[keep].reshape(-1))


@jit.kernel(twin=_scatter_rows_twin)
def scatter_rows(ids, grad, out, skip):
    """``out[ids[r]] += grad[r]`` for every row ``r`` of ``grad`` (R, D) whose id (``ids`` (R,)
    int64, each in ``[0, V)``) is not ``skip``; ``out`` (V, D) C-contiguous. ``skip`` -1 skips none."""
    for r in range(ids.shape[0]):
        row = ids[r]
        if row == skip:
            continue
        for j in range(grad.shape[1]):
            out[row, j] += grad[r, j]


def embedding_backward(ids, grad, d_weight, skip: int) -> None:
    """Add the rows of ``grad`` (R, D) into ``d_weight`` (V, D) at ``ids`` (R,) int64, leaving out
    the rows whose id is ``skip`` (the padding id; -1 for none)."""
    xp = get_array_module(grad)
    if xp is np:
        scatter_rows(ids, np.ascontiguousarray(grad), d_weight, skip)
        return
    keep = ids != skip
    xp.add.at(d_weight, ids[keep], grad[keep])
