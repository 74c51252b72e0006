"""The GPU path of every block, without a GPU.

With the CPU emulator of ``tests/compute/kernel_emulator`` installed as the host kernel
backend, the layers, the loss and the optimizers take their kernel path on NumPy float32
arrays: the very launch functions a GPU run calls, with the same launch configuration,
argument order, scalar types and strides, run the ``.cu`` sources compiled by g++. Each block's
forward and backward through that path is compared with the plain NumPy path of the same
block (same weights, same inputs) to 1e-4 relative, and the emulator's launch log shows the
kernels really ran. Two short training runs (a small CNN, a small LSTM) go through the kernel
path end to end and must match the NumPy path's losses step by step.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernel_emulator as emu
from gatescope.compute import kernels
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.layers import create
from gatescope.compute.optim import SGD, Adam

RTOL = 1e-4


@pytest.fixture(scope="module")
def emulator():
    """One emulator backend with every kernel module built (cached on disk by source hash)."""
    backend = emu.EmulatorBackend()
    for module in kernels.MODULES:
        backend.load(module)
    return backend


def _close(actual, expected, what):
    """Equal to ``RTOL`` relative to the array's scale (a few entries near zero must not
    demand more than float32 gives)."""
    expected = np.asarray(expected)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-6), err_msg=what)


def _run_block(type_name, settings, x, grad_seed, in_shape):
    """Build a float32 layer (weights and biases from fixed seeds, peepholes and initial states
    made non-zero), run forward and backward once; returns output, input gradient, grads."""
    layer = create(type_name, settings)
    layer.build([in_shape], np.random.default_rng(0), np, np.float32)
    rng = np.random.default_rng(7)
    for name, p in layer.params.items():
        if name.split("_rev")[0] in ("p_i", "p_f", "p_o", "h0", "c0", "b", "b_hn"):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    y = layer.forward([x], True)
    grad = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(grad)[0]
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


def _both_paths(emulator, type_name, settings, in_shape, batch=3, expect=()):
    """The block on the NumPy path and on the emulated kernel path, compared; ``expect``:
    kernels that must have been launched."""
    x = np.random.default_rng(1).standard_normal((batch,) + in_shape).astype(np.float32)
    plain = _run_block(type_name, settings, x, 2, in_shape)
    emulator.launches.clear()
    with kernels.host_backend(emulator):
        fused = _run_block(type_name, settings, x, 2, in_shape)
    launched = {name for name, _, _ in emulator.launches}
    assert set(expect) <= launched, f"{type_name} {settings}: launched {sorted(launched)}"
    _close(fused[0], plain[0], f"{type_name} {settings}: output")
    _close(fused[1], plain[1], f"{type_name} {settings}: input gradient")
    assert fused[2].keys() == plain[2].keys()
    for name in plain[2]:
        _close(fused[2][name], plain[2][name], f"{type_name} {settings}: d{name}")


RECURRENT_CASES = [
    ("SimpleRNN", dict(activation="tanh", return_sequences=True), ("simple_rnn_forward", "simple_rnn_backward")),
    ("SimpleRNN", dict(activation="relu", bidirectional=True, initial_state="learned"),
     ("simple_rnn_forward", "simple_rnn_backward")),
    ("LSTM", dict(variant="standard", return_sequences=True, initial_state="learned"),
     ("lstm_forward", "lstm_backward")),
    ("LSTM", dict(variant="peephole", bidirectional=True, return_sequences=True, initial_state="learned"),
     ("lstm_forward", "lstm_backward")),
    ("LSTM", dict(variant="coupled", return_sequences=True, initial_state="learned", pin_output="1"),
     ("lstm_forward", "lstm_backward")),
    ("LSTM", dict(variant="peephole", pin_forget="1", pin_input="0", truncate_bptt=2, return_sequences=True),
     ("lstm_forward", "lstm_backward")),
    ("GRU", dict(form="cho", return_sequences=True, initial_state="learned", bidirectional=True),
     ("gru_cho_forward_rz", "gru_cho_forward_n", "gru_cho_backward_n", "gru_cho_backward_r")),
    ("GRU", dict(form="cho", pin_update="1", truncate_bptt=3), ("gru_cho_forward_rz", "gru_cho_backward_r")),
    ("GRU", dict(form="pytorch", return_sequences=True, initial_state="learned"),
     ("gru_pytorch_forward", "gru_pytorch_backward")),
    ("GRU", dict(form="pytorch", bidirectional=True, merge="sum", pin_reset="0"),
     ("gru_pytorch_forward", "gru_pytorch_backward")),
]


@pytest.mark.parametrize("type_name,settings,expect", RECURRENT_CASES,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(RECURRENT_CASES)])
def test_recurrent_blocks_match_on_the_kernel_path(emulator, type_name, settings, expect):
    _both_paths(emulator, type_name, dict(hidden_size=5, **settings), (6, 4), expect=expect)


def test_convlstm_matches_on_the_kernel_path(emulator):
    # Pixel rows (N, P, 4F) are the kernel's (B, G*U) with B = N*P, U = F, per-channel peepholes.
    _both_paths(emulator, "ConvLSTM2D", dict(filters=3, kernel_size=3, return_sequences=True,
                                             initial_state="learned"), (4, 2, 5, 6),
                expect=("lstm_forward", "lstm_backward"))


@pytest.mark.parametrize("settings,in_shape", [
    (dict(filters=4, kernel_size=3, padding="same"), (3, 8, 7)),
    (dict(filters=5, kernel_size=3, stride=2, padding=1, bias=False), (2, 9, 9)),
    (dict(filters=2, kernel_size=5, padding="valid"), (1, 9, 10)),
])
def test_conv2d_matches_on_the_kernel_path(emulator, settings, in_shape):
    _both_paths(emulator, "Conv2D", settings, in_shape, expect=("im2col", "col2im"))


def test_conv1d_matches_on_the_kernel_path(emulator):
    # A sequence is an image of height 1 seen through a transposed view: the launch makes it
    # contiguous, and the result must not care.
    _both_paths(emulator, "Conv1D", dict(filters=4, kernel_size=3, padding="same"), (9, 3),
                expect=("im2col", "col2im"))


@pytest.mark.parametrize("type_name,settings,in_shape,expect", [
    ("MaxPool2D", dict(size=2), (3, 6, 7), ("max_pool2d_forward", "max_pool2d_backward")),
    ("MaxPool2D", dict(size=3, stride=2), (2, 7, 7), ("max_pool2d_forward", "max_pool2d_backward")),
    ("AvgPool2D", dict(size=2), (3, 6, 6), ("avg_pool2d_forward", "avg_pool2d_backward")),
    ("AvgPool2D", dict(size=3, stride=1), (2, 5, 6), ("avg_pool2d_forward", "avg_pool2d_backward")),
    ("MaxPool1D", dict(size=2), (9, 4), ("max_pool2d_forward", "max_pool2d_backward")),
    ("AvgPool1D", dict(size=3, stride=2), (9, 4), ("avg_pool2d_forward", "avg_pool2d_backward")),
])
def test_pooling_matches_on_the_kernel_path(emulator, type_name, settings, in_shape, expect):
    _both_paths(emulator, type_name, settings, in_shape, expect=expect)


@pytest.mark.parametrize("shape,labels_shape", [((6, 5), (6,)), ((3, 4, 7), (3, 4))])
def test_classify_loss_matches_on_the_kernel_path(emulator, shape, labels_shape):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    labels = rng.integers(0, shape[-1], labels_shape)
    results = []
    for backend in (None, emulator):
        emulator.launches.clear()
        with kernels.host_backend(backend):
            head = create("Classify", {})
            probs = head.forward([logits], True)
            loss = head.loss(labels)
            results.append((probs, loss, head.backward()[0]))
    # the softmax runs once: forward's kernel keeps the row stats the loss gathers from
    assert [name for name, _, _ in emulator.launches] == [
        "softmax_forward", "cross_entropy_loss", "softmax_cross_entropy_backward"]
    (p0, l0, g0), (p1, l1, g1) = results
    _close(p1, p0, "probabilities")
    assert l1 == pytest.approx(l0, rel=RTOL)
    _close(g1, g0, "gradient of the logits")


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, momentum=0.0),
    lambda ps: SGD(ps, momentum=0.9, weight_decay=0.01),
    lambda ps: SGD(ps, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, weight_decay=0.01),
    lambda ps: Adam(ps, weight_decay=0.01, decoupled=True),
], ids=["sgd", "sgd-momentum-wd", "sgd-nesterov", "adam-l2", "adamw"])
def test_optimizer_steps_match_on_the_kernel_path(emulator, make):
    rng = np.random.default_rng(5)
    start = {"W": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in start.items()} for _ in range(3)]
    finals = []
    for backend in (None, emulator):
        emulator.launches.clear()
        params = {k: v.copy() for k, v in start.items()}
        current = {k: np.zeros_like(v) for k, v in start.items()}
        opt = make([(k, params[k], current[k]) for k in params])
        with kernels.host_backend(backend):
            for step_grads in grads:
                for k in current:
                    current[k][...] = step_grads[k]
                opt.step(0.05)
        finals.append(params)
    assert emulator.launches and {name for name, _, _ in emulator.launches} <= {"sgd_update", "adam_update"}
    for k in start:
        _close(finals[1][k], finals[0][k], k)


def _train(spec, x, y, steps, backend):
    """``steps`` Adam steps on one batch; returns the losses."""
    model = Model(spec, seed=0)
    opt = Adam(model.parameters())
    losses = []
    with kernels.host_backend(backend):
        for _ in range(steps):
            model.zero_grads()
            model.forward(x, True)
            losses.append(model.loss(y))
            model.backward()
            opt.step(0.01)
    return losses


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_short_training_runs_match_on_the_kernel_path(emulator, name):
    rng = np.random.default_rng(11)
    if name == "cnn":
        spec = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}),
                               ("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same"}), ("ReLU", {}),
                               ("MaxPool2D", {"size": 2}), ("Flatten", {}), ("Dense", {"units": 3}),
                               ("Classify", {}))
        x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
        kernels_used = {"im2col", "max_pool2d_forward", "max_pool2d_backward", "softmax_forward",
                        "cross_entropy_loss", "adam_update"}
    else:
        spec = GraphSpec.chain(("Input", {"shape": (5, 3)}), ("LSTM", {"hidden_size": 6}),
                               ("Dense", {"units": 3}), ("Classify", {}))
        x = rng.standard_normal((8, 5, 3)).astype(np.float32)
        kernels_used = {"lstm_forward", "lstm_backward", "softmax_cross_entropy_backward", "adam_update"}
    y = rng.integers(0, 3, 8)
    plain = _train(spec, x, y, 6, None)
    emulator.launches.clear()
    fused = _train(spec, x, y, 6, emulator)
    assert kernels_used <= {name for name, _, _ in emulator.launches}
    assert plain[-1] < plain[0]                          # it learns
    np.testing.assert_allclose(fused, plain, rtol=RTOL)
