"""Where a layer's CPU time goes: its matrix products, or everything else.

    .venv/bin/python tools/measure_gemm_share.py [--repeats R] [--only conv2d lstm gru rnn]

For every recurrent shape of ``gatescope bench`` (shared/BENCHMARKS.md), forward and
forward+backward, in one run:

- ``ours``: the layer as ``gatescope bench`` times it;
- ``GEMM``: the bench's reference, the layer's own matrix products timed bare;
- ``rest``: the same layer with every matrix product replaced by nothing (the products'
  outputs keep whatever they held), so what is left is the gate math, the bias and copy passes
  and the Python of the step loop;
- ``cell``: the step's gate math alone, per timestep: the layer's kernel call(s) of
  ``compute.kernels`` (forward, and backward for forward+backward) on one step's arrays again
  and again, so with every operand in cache: the least the step loop can cost as written;
- ``budget``: what the goal ``ours / GEMM <= 1.3`` leaves per timestep for everything that is
  not a product (0.3 x GEMM / T).

``(GEMM + rest) / GEMM`` is the ratio the layer would reach if its products ran exactly as fast
as bare ones; ``floor`` = ``(GEMM + T x cell) / GEMM`` the ratio it would reach if, besides,
nothing but the cached gate math were left. The last line gives the geometric means, as the
bench does.

For every Conv2D shape of the bench, forward: ``ours``, ``GEMM`` (the bench's reference, the
product on a prebuilt column matrix), and the two copies around it timed alone: ``im2col``
(writing the column matrix that very product reads) and ``reorder`` (the product's
``(F, N, Ho, Wo)`` rows into the ``(N, F, Ho, Wo)`` output); ``floor`` = ``(GEMM + im2col) /
GEMM``, the least a convolution that builds its column matrix and multiplies it can reach.
(Copies timed alone are only indicative: on this machine a copy that does not fit in the cache
costs more alone than beside the product.)

Nothing here asserts on time: it prints medians of one run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatescope.compute import kernels  # noqa: E402
from gatescope.compute.bench import geometric_mean, median_time  # noqa: E402
from gatescope.compute.bench.conv import CPU_SHAPES as CONV_SHAPES  # noqa: E402
from gatescope.compute.bench.recurrent import BLOCKS, CPU_SHAPES, _gemms  # noqa: E402
from gatescope.compute.layers import create  # noqa: E402
from gatescope.compute.ops import conv as conv_ops  # noqa: E402


def _without_products(layer):
    """Replaces ``layer``'s matrix products by nothing (on the instance; the step loops' GEMMs
    through :func:`_no_gemm`). ``_project`` keeps its bias pass, ``_project_backward`` its
    bias-gradient sum; the buffers keep what the last real run left in them (finite values)."""
    def project(xs, sfx, out):
        a = out.reshape(-1, out.shape[-1])
        a += layer.params["b" + sfx]                                  # the bias pass, kept

    def project_backward(xs, da, sfx):
        layer.grads["b" + sfx] += da.reshape(-1, da.shape[-1]).sum(axis=0)
        return np.zeros(xs.shape, xs.dtype)

    layer._project = project
    layer._project_backward = project_backward
    layer._recurrent_weight_grad = lambda h_prev_all, da_all, sfx: None


def _no_gemm(a, b, out, accumulate=False):
    return out


def _cell(group, batch, hidden, backward):
    """One step's kernel call(s) of the contract as the layer's loop makes them, on cached
    arrays: a callable."""
    rng = np.random.default_rng(4)
    width = BLOCKS[group][2] * hidden

    def arr(units):
        return rng.standard_normal((batch, units)).astype(np.float32)

    pre, rec, gates, dgates, dhidden = (arr(width) for _ in range(5))
    h_prev, c_prev, h, c, dh, d_prev, carried, dc = (arr(hidden) for _ in range(8))
    b_hn = rng.standard_normal(hidden).astype(np.float32)
    if group == "lstm":
        def forward():
            kernels.lstm_forward(pre, rec, c_prev, out=(gates, c, h))

        def back():
            kernels.lstm_backward(dh, carried, dc, gates, c_prev, c, out=(dgates, d_prev))
    elif group == "gru":
        def forward():
            kernels.gru_pytorch_forward(pre, rec, h_prev, out=(gates, h), b_hn=b_hn)

        def back():
            kernels.gru_pytorch_backward(dh, carried, gates, h_prev, rec, out=(dgates, dhidden, d_prev), b_hn=b_hn)
    else:
        def forward():
            kernels.simple_rnn_forward(pre[:, :hidden], rec[:, :hidden], out=h)

        def back():
            kernels.simple_rnn_backward(dh, carried, h, out=d_prev)

    forward()
    if not backward:
        return forward

    def both():
        forward()
        back()
    return both


def _layer(group, hidden, steps):
    cls, settings, _ = BLOCKS[group]
    layer = cls(hidden_size=hidden, return_sequences=True, **settings)
    layer.build([(steps, hidden)], np.random.default_rng(0), np, np.float32)
    return layer


def measure(group, hidden, batch, steps, repeats):
    gates = BLOCKS[group][2]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, hidden)).astype(np.float32)
    grad = rng.standard_normal((batch, steps, hidden)).astype(np.float32)
    real, bare = _layer(group, hidden, steps), _layer(group, hidden, steps)
    bare.forward([x], True)
    bare.backward(grad)                                  # the buffers now hold real values
    _without_products(bare)
    rows = []
    for backward in (False, True):
        def run(layer):
            def go():
                layer.forward([x], True)
                if backward:
                    layer.backward(grad)
            return go
        gemm_fn = _gemms(np, hidden, batch, steps, gates, backward)
        ours = median_time(run(real), repeats)
        gemm = median_time(gemm_fn, repeats)
        real_gemm, kernels.gemm = kernels.gemm, _no_gemm
        try:
            rest = median_time(run(bare), repeats)
        finally:
            kernels.gemm = real_gemm
        cell = median_time(_cell(group, batch, hidden, backward), max(repeats, 300))
        rows.append((f"{group.upper()} H={hidden} B={batch} T={steps} "
                     f"{'forward+backward' if backward else 'forward'}",
                     ours, gemm, rest, cell, steps))
    return rows


def measure_conv(repeats):
    """Conv2D forward on the bench's CPU shapes: ours, the GEMM, im2col and the reorder alone."""
    print(f"{'case':42s} {'ours ms':>8s} {'GEMM ms':>8s} {'im2col ms':>9s} {'reorder ms':>10s} "
          f"{'ours/GEMM':>9s} {'floor':>6s}")
    ratios, floors = [], []
    for name, c, size, f, k, n, stride, pad in CONV_SHAPES:
        rng = np.random.default_rng(0)
        layer = create("Conv2D", {"filters": f, "kernel_size": k, "stride": stride, "padding": pad})
        layer.build([(c, size, size)], rng, np, np.float32)
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        y = layer.forward([x], True)
        rows_k, cols = c * k * k + 1, n * y.shape[2] * y.shape[3]     # + 1: the bias row
        w_mat = rng.standard_normal((f, rows_k)).astype(np.float32)
        col = rng.standard_normal((rows_k, cols)).astype(np.float32)
        product = np.empty((f, cols), np.float32)
        out = np.empty_like(y)
        workspace = {}
        pads = (pad, pad, pad, pad)
        ours = median_time(lambda: layer.forward([x], True), repeats)
        gemm = median_time(lambda: np.matmul(w_mat, col, out=product), repeats)
        im2col = median_time(lambda: conv_ops.im2col(x, k, k, stride, pads, workspace), repeats)
        reorder = median_time(lambda: out.__setitem__(
            Ellipsis, product.reshape(f, n, y.shape[2], y.shape[3]).transpose(1, 0, 2, 3)), repeats)
        ratios.append(ours / gemm)
        floors.append((gemm + im2col) / gemm)
        print(f"{name + ' forward':42s} {ours * 1e3:8.2f} {gemm * 1e3:8.2f} {im2col * 1e3:9.2f} "
              f"{reorder * 1e3:10.2f} {ratios[-1]:9.2f} {floors[-1]:6.2f}")
    print(f"{'geometric mean':42s} {'':8s} {'':8s} {'':9s} {'':10s} {geometric_mean(ratios):9.2f} "
          f"{geometric_mean(floors):6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    groups = ["conv2d"] + sorted(CPU_SHAPES)
    parser.add_argument("--only", nargs="*", choices=groups, default=groups)
    args = parser.parse_args()
    if "conv2d" in args.only:
        measure_conv(args.repeats)
        print()
    recurrent_groups = [g for g in args.only if g != "conv2d"]
    if not recurrent_groups:
        return 0
    print(f"{'case':42s} {'ours ms':>8s} {'GEMM ms':>8s} {'rest ms':>8s} {'ours/GEMM':>9s} "
          f"{'(GEMM+rest)/GEMM':>16s} {'cell us/step':>12s} {'budget us/step':>14s} {'floor':>6s}")
    ratios, sums, floors = [], [], []
    for group in recurrent_groups:
        for hidden, batch, steps, _ in CPU_SHAPES[group]:
            for name, ours, gemm, rest, cell, t in measure(group, hidden, batch, steps, args.repeats):
                ratios.append(ours / gemm)
                sums.append((gemm + rest) / gemm)
                floors.append((gemm + t * cell) / gemm)
                print(f"{name:42s} {ours * 1e3:8.2f} {gemm * 1e3:8.2f} {rest * 1e3:8.2f} {ratios[-1]:9.2f} "
                      f"{sums[-1]:16.2f} {cell * 1e6:12.1f} {0.3 * gemm / t * 1e6:14.1f} {floors[-1]:6.2f}")
    print(f"{'geometric mean':42s} {'':8s} {'':8s} {'':8s} {geometric_mean(ratios):9.2f} "
          f"{geometric_mean(sums):16.2f} {'':12s} {'':14s} {geometric_mean(floors):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
