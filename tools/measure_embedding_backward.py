"""The Embedding's backward (a scatter-add of gradient rows) in every form we considered.

    .venv/bin/python tools/measure_embedding_backward.py [--repeats N]

For vocabularies V = 64, 1000, 10000 and dimensions D = 32, 128, 2,560 rows (64 sequences of
40 ids) of float32 gradients are added into a fresh zeroed (V, D) table by: ``np.add.at`` on
the rows, ``np.add.at`` on the flat index ``id * D + column`` (the kernel's NumPy twin), one
``np.bincount`` per column, a stable sort then ``np.add.reduceat``, and the numba kernel
``compute.ops.embedding.scatter_rows``. Every form is checked against the first; the forms
alternate ``--repeats`` times and the medians (ms) are printed. The numbers in that module's
docstring came from this script.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gatescope.compute.ops.embedding import scatter_rows


def rows_add_at(ids, grad, vocabulary):
    out = np.zeros((vocabulary, grad.shape[1]), grad.dtype)
    np.add.at(out, ids, grad)
    return out


def flat_add_at(ids, grad, vocabulary):
    out = np.zeros((vocabulary, grad.shape[1]), grad.dtype)
    scatter_rows.twin(ids, grad, out, -1)
    return out


def bincount_columns(ids, grad, vocabulary):
    return np.stack([np.bincount(ids, weights=grad[:, j], minlength=vocabulary)
                     for j in range(grad.shape[1])], axis=1).astype(grad.dtype)


def sort_reduceat(ids, grad, vocabulary):
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out = np.zeros((vocabulary, grad.shape[1]), grad.dtype)
    out[ordered[starts]] = np.add.reduceat(grad[order], starts, axis=0)
    return out


def numba_kernel(ids, grad, vocabulary):
    out = np.zeros((vocabulary, grad.shape[1]), grad.dtype)
    scatter_rows(ids, grad, out, -1)
    return out


FORMS = (rows_add_at, flat_add_at, bincount_columns, sort_reduceat, numba_kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("V      D    " + "  ".join(f"{f.__name__:>16}" for f in FORMS) + "   (median ms)")
    for vocabulary in (64, 1000, 10000):
        for width in (32, 128):
            ids = rng.integers(0, vocabulary, 2560)
            grad = rng.standard_normal((2560, width)).astype(np.float32)
            reference = FORMS[0](ids, grad, vocabulary)
            for form in FORMS:           # the first calls also compile the kernel
                np.testing.assert_allclose(form(ids, grad, vocabulary), reference, rtol=1e-4, atol=1e-4)
            times = {form: [] for form in FORMS}
            for _ in range(args.repeats):
                for form in FORMS:
                    start = time.perf_counter()
                    form(ids, grad, vocabulary)
                    times[form].append(time.perf_counter() - start)
            print(f"{vocabulary:<6} {width:<4} " + "  ".join(f"{statistics.median(times[f]) * 1e3:16.3f}"
                                                         for f in FORMS))


if __name__ == "__main__":
    main()
