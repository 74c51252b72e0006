"""Recurrent layer timings, forward and forward+backward, float32, beside the bare GEMMs of the
same layer and PyTorch's layer where importable (shared/BENCHMARKS.md).

On the CPU the CPU-sized set runs; on a GPU the DeepBench set (PyTorch on the GPU is cuDNN,
TF32 off). Both go through the same code: only the shapes and the synchronisation in the
timer differ, so a CPU run exercises everything a GPU run does.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.bench import Row, case, median_time, torch_or_none
from gatescope.compute.layers.recurrent import GRU, LSTM, SimpleRNN

# (hidden = input size, batch, timesteps, stacked layers)
CPU_SHAPES = {
    "lstm": [(256, 32, 50, 1), (512, 16, 25, 1), (128, 64, 100, 1)],
    "gru": [(256, 32, 50, 1), (512, 16, 25, 1)],
    "rnn": [(512, 32, 50, 1)],
}
# DeepBench: LSTM H x B at T=25, H=1536 B=8 T=50, 4 stacked LSTM layers; GRU H=1024 B=32
# T=1500 (reported per step). BENCHMARKS.md lists no GPU RNN set: the CPU shape serves.
GPU_SHAPES = {
    "lstm": [(h, b, 25, 1) for h in (512, 1024, 2048) for b in (16, 64, 128)]
            + [(1536, 8, 50, 1), (512, 64, 100, 4)],
    "gru": [(1024, 32, 1500, 1)],
    "rnn": [(512, 32, 50, 1)],
}
#: Long sequences are reported per timestep (DeepBench's GRU T=1500).
PER_STEP_FROM = 1000
BLOCKS = {"lstm": (LSTM, {}, 4), "gru": (GRU, {"form": "pytorch"}, 3), "rnn": (SimpleRNN, {}, 1)}


def _sync(device):
    """What the timer waits on after each run: the GPU's null stream, or nothing on the CPU."""
    if device.is_gpu:
        return lambda: device.xp.cuda.Stream.null.synchronize()
    return None


def _gemms(xp, hidden, batch, steps, gates, backward):
    """The layer's own matrix products, bare: the input projection for all steps, one
    recurrent product per step, and for backward one per step back plus the three
    weight/input-gradient products over all steps."""
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((steps * batch, hidden)), dtype=np.float32)
    w = xp.asarray(rng.standard_normal((hidden, gates * hidden)) * 0.05, dtype=np.float32)
    h = xp.asarray(rng.standard_normal((batch, hidden)), dtype=np.float32)
    da = xp.asarray(rng.standard_normal((steps * batch, gates * hidden)), dtype=np.float32)
    step_out = xp.empty((batch, gates * hidden), dtype=np.float32)
    step_back = xp.empty((batch, hidden), dtype=np.float32)

    def run():
        x @ w
        for _ in range(steps):
            xp.matmul(h, w, out=step_out)
        if backward:
            for t in range(steps):
                xp.matmul(da[t * batch:(t + 1) * batch], w.T, out=step_back)
            x.T @ da
            x.T @ da
            da @ w.T
    return run


def _torch_run(torch, group, hidden, batch, steps, layers, backward, gpu):
    """PyTorch's layer of the same shape (cuDNN on the GPU), as a callable, and its sync."""
    torch.manual_seed(0)
    target = "cuda" if gpu else "cpu"
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[group](
        hidden, hidden, num_layers=layers, batch_first=True).to(target)
    x = torch.randn(batch, steps, hidden, device=target, requires_grad=backward)
    grad = torch.randn(batch, steps, hidden, device=target)

    def run():
        if backward:
            out, _ = module(x)
            out.backward(grad)
        else:
            with torch.no_grad():
                module(x)
    return run, (torch.cuda.synchronize if gpu else None)


def _stack(cls, settings, hidden, steps, layers, xp):
    """``layers`` blocks of the same shape, run one after the other (a stacked RNN)."""
    stack = []
    for k in range(layers):
        layer = cls(hidden_size=hidden, return_sequences=True, **settings)
        layer.build([(steps, hidden)], np.random.default_rng(k), xp, np.float32)
        stack.append(layer)
    return stack


def _cases(group, device, quick):
    xp = device.xp
    torch = torch_or_none()
    if device.is_gpu and torch is not None and not torch.cuda.is_available():
        torch = None                                   # a CPU-only PyTorch is no GPU reference
    cls, settings, gates = BLOCKS[group]
    rows = []
    repeats = 3 if quick else 7
    sync = _sync(device)
    for hidden, batch, steps, layers in (GPU_SHAPES if device.is_gpu else CPU_SHAPES)[group]:
        if quick:
            steps = max(5, steps // 5)
        stack = _stack(cls, settings, hidden, steps, layers, xp)
        x = xp.asarray(np.random.default_rng(1).standard_normal((batch, steps, hidden)), dtype=np.float32)
        grad = xp.asarray(np.random.default_rng(2).standard_normal((batch, steps, hidden)), dtype=np.float32)

        def fwd():
            y = x
            for layer in stack:
                y = layer.forward([y], True)

        def fwd_bwd():
            fwd()
            g = grad
            for layer in reversed(stack):
                g = layer.backward(g)[0]

        gemms = [_gemms(xp, hidden, batch, steps, gates, backward) for backward in (False, True)]
        per_step = steps >= PER_STEP_FROM
        scale = 1.0 / steps if per_step else 1.0
        shape = f"H={hidden} B={batch} T={steps}" + (f" x{layers} layers" if layers > 1 else "")
        for k, (label, fn, backward) in enumerate((("forward", fwd, False), ("forward+backward", fwd_bwd, True))):
            ours = median_time(fn, repeats, sync=sync) * scale
            gemm_fn = gemms[k]
            gemm = median_time(lambda: [gemm_fn() for _ in range(layers)], repeats, sync=sync) * scale
            ref = None
            if torch is not None:
                run, torch_sync = _torch_run(torch, group, hidden, batch, steps, layers, backward, device.is_gpu)
                ref = median_time(run, repeats, sync=torch_sync) * scale
            name = f"{group.upper()} {shape} {label}" + (" per step" if per_step else "")
            rows.append(Row(group, name, ours, gemm, ref,
                            {"hidden": hidden, "batch": batch, "steps": steps, "layers": layers,
                             "backward": backward, "per_step": per_step}))
    return rows


@case("lstm")
def lstm(device, quick):
    return _cases("lstm", device, quick)


@case("gru")
def gru(device, quick):
    return _cases("gru", device, quick)


@case("rnn")
def rnn(device, quick):
    return _cases("rnn", device, quick)
