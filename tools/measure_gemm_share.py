"""Where a layer's CPU time goes: its matrix products, or everything else.

    .venv/bin/python tools/measure_gemm_share.py [--repeats R] [--only conv2d lstm gru rnn]

For every recurrent shape of ``gatescope bench`` (shared/BENCHMARKS.md), forward and
forward+backward, in one run:

- ``ours``: the layer as ``gatescope bench`` times it;
- ``GEMM``: the bench's reference, the layer's own matrix products timed bare;
- ``rest``: the same layer with every matrix product replaced by nothing (the products'
  outputs keep whatever they held), so what is left is the gate math, the bias and copy passes
  and the Python of the step loop;
- ``cell``: the step's gate math alone, per timestep: the layer's own ``compute.ops`` cell
  function(s) (forward, and backward for forward+backward) called on one step's arrays again
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
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gatescope.compute.layers.recurrent as recurrent_module  # noqa: E402
from gatescope.compute.bench import geometric_mean, median_time  # noqa: E402
from gatescope.compute.bench.conv import CPU_SHAPES as CONV_SHAPES  # noqa: E402
from gatescope.compute.bench.recurrent import BLOCKS, CPU_SHAPES, _gemms  # noqa: E402
from gatescope.compute.layers import create  # noqa: E402
from gatescope.compute.ops import conv as conv_ops  # noqa: E402
from gatescope.compute.ops import recurrent as ops  # noqa: E402


class _NoMatmul:
    """``numpy`` with ``matmul`` doing nothing (the GRU's step loops call ``xp.matmul``)."""

    def __getattr__(self, name):
        return getattr(np, name)

    __name__ = "numpy"

    @staticmethod
    def matmul(a, b, out=None):
        return out

    @staticmethod
    def empty_like(a, *args, **kwargs):   # what a skipped product would have filled: finite
        return np.zeros_like(a, *args, **kwargs)


def _without_products(layer, xs_shape, gates_width):
    """Replaces ``layer``'s matrix products by nothing (on the instance: the class is untouched).
    ``_project`` keeps its bias pass, ``_project_backward`` its bias-gradient sum."""
    rng = np.random.default_rng(3)
    t, n = xs_shape[:2]
    state = SimpleNamespace(pre=rng.standard_normal((t * n, gates_width)).astype(np.float32),
                            dx=np.zeros((t * n, xs_shape[2]), np.float32))

    def project(xs, sfx, t, n, out=None):
        target = np.empty_like(state.pre) if out is None else out.reshape(state.pre.shape)
        np.add(state.pre, layer.params["b" + sfx], out=target)       # the bias pass, kept
        return target.reshape((t,) + layer._rows(n) + (gates_width,))

    def project_backward(xs, da, sfx):
        layer.grads["b" + sfx] += da.reshape(-1, gates_width).sum(axis=0)
        return state.dx

    layer._project = project
    layer._project_backward = project_backward
    layer._recurrent_product = lambda h, sfx, out, t: None
    layer._recurrent_backward = lambda da, sfx, out, t: None
    layer._recurrent_weight_grad = lambda h_prev_all, da_all, sfx: None


def _cell(group, layer, batch, hidden, backward):
    """One step's gate math as the layer's loop calls it, on cached arrays: a callable."""
    rng = np.random.default_rng(4)
    gates_width = BLOCKS[group][2] * hidden

    def arr(width):
        return rng.standard_normal((batch, width)).astype(np.float32)

    pre, gates, dgates, wide = arr(gates_width), arr(gates_width), arr(gates_width), arr(gates_width)
    h_prev, c_prev, h, c, tanh_c, dh, dc, d_prev = (arr(hidden) for _ in range(8))
    dh_step = arr(hidden)
    if group == "lstm":
        table, slopes = layer._table(np, np.float32), layer._column_table(ops.slope_table, "ssts", [None] * 4,
                                                                            np, np.float32)

        def forward():
            np.add(pre, wide, out=gates)
            ops.lstm_cell_forward(gates, c_prev, c, h, table, None, False, tanh_c)

        def back():
            dh.__iadd__(dh_step)
            ops.lstm_cell_backward(gates, c_prev, c, dh, dc, dgates, d_prev, None, False, (), tanh_c, slopes, wide)
    elif group == "gru":
        table = layer._column_table(ops.gate_table, "ss", [None, None], np, np.float32)
        hidden_proj, dhidden, rz, n = arr(gates_width), arr(gates_width), arr(2 * hidden), arr(hidden)
        b_hn = layer.params["b_hn"]

        def forward():
            np.copyto(gates, pre)
            ops.gru_cell_forward_pytorch(gates, hidden_proj, b_hn, h_prev, h, table, rz, n)

        def back():
            dh.__iadd__(dh_step)
            ops.gru_cell_backward_pytorch(gates, hidden_proj[:, 2 * hidden:], h_prev, dh, dgates, dhidden, d_prev)
            dh.__iadd__(d_prev)
    else:
        def forward():
            np.add(pre, wide, out=gates)
            ops.rnn_cell_forward(gates, h)

        def back():
            dh.__iadd__(dh_step)
            ops.rnn_cell_backward(h, dh, dgates)

    with ops.quiet_overflow():
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
    _without_products(bare, x.shape[1::-1] + (hidden,), gates * hidden)
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
        original = recurrent_module.get_array_module
        recurrent_module.get_array_module = lambda *arrays: _NoMatmul()
        try:
            rest = median_time(run(bare), repeats)
        finally:
            recurrent_module.get_array_module = original
        with ops.quiet_overflow():
            cell = median_time(_cell(group, real, batch, hidden, backward), max(repeats, 300))
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
