"""Recurrent layer timings: the CPU set of shared/BENCHMARKS.md, forward and forward+backward,
float32, beside the bare GEMMs of the same layer and PyTorch's layer where importable."""
from __future__ import annotations

import numpy as np

from compute.bench import Row, case, median_time, torch_or_none
from compute.layers.recurrent import GRU, LSTM, SimpleRNN

# (hidden = input size, batch, timesteps)
SHAPES = {
    "lstm": [(256, 32, 50), (512, 16, 25), (128, 64, 100)],
    "gru": [(256, 32, 50), (512, 16, 25)],
    "rnn": [(512, 32, 50)],
}
BLOCKS = {"lstm": (LSTM, {}, 4), "gru": (GRU, {"form": "pytorch"}, 3), "rnn": (SimpleRNN, {}, 1)}


def _sync(device):
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


def _torch_run(torch, group, hidden, batch, steps, backward):
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[group](
        hidden, hidden, batch_first=True)
    x = torch.randn(batch, steps, hidden, requires_grad=backward)
    grad = torch.randn(batch, steps, hidden)

    def run():
        if backward:
            out, _ = module(x)
            out.backward(grad)
        else:
            with torch.no_grad():
                module(x)
    return run


def _cases(group, device, quick):
    xp = device.xp
    torch = torch_or_none() if not device.is_gpu else None
    cls, settings, gates = BLOCKS[group]
    rows = []
    repeats = 3 if quick else 7
    for hidden, batch, steps in SHAPES[group]:
        if quick:
            steps = max(5, steps // 5)
        layer = cls(hidden_size=hidden, return_sequences=True, **settings)
        layer.build([(steps, hidden)], np.random.default_rng(0), xp, np.float32)
        x = xp.asarray(np.random.default_rng(1).standard_normal((batch, steps, hidden)), dtype=np.float32)
        grad = xp.asarray(np.random.default_rng(2).standard_normal((batch, steps, hidden)), dtype=np.float32)

        def fwd():
            layer.forward([x], True)

        def fwd_bwd():
            layer.forward([x], True)
            layer.backward(grad)

        for label, fn, backward in (("forward", fwd, False), ("forward+backward", fwd_bwd, True)):
            ours = median_time(fn, repeats, sync=_sync(device))
            gemm = median_time(_gemms(xp, hidden, batch, steps, gates, backward), repeats, sync=_sync(device))
            ref = median_time(_torch_run(torch, group, hidden, batch, steps, backward), repeats) if torch else None
            rows.append(Row(group, f"{group.upper()} H={hidden} B={batch} T={steps} {label}", ours, gemm, ref,
                            {"hidden": hidden, "batch": batch, "steps": steps, "backward": backward}))
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
