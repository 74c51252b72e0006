"""Recurrent blocks: gradient checks, independent references, BPTT = step by step, truncation,
bidirectional, variants, gate overrides, probes; in float64 (the NumPy twins), then every
block in float32 on every backend of the kernel contract (``conftest.backend``: the twins, the
numba kernels, the emulated CUDA kernels with their graph capture, a GPU), held to float64."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import close, seeded_layer
from gatescope.compute.graph import GraphSpec, analyse
from gatescope.compute.kernels import graphs
from gatescope.compute.layers import create
from gatescope.compute.layers.recurrent import GRU, LSTM, ConvLSTM2D, SimpleRNN, pinned_gates
from gradcheck import check_layer

N, T, D, H = 2, 4, 3, 3


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def built(cls, x, seed=0, randomize=True, **settings):
    """A float64 layer built for ``x``, with peepholes, initial states and biases randomised
    (they start at zero, which would hide their terms from a check)."""
    layer = cls(**settings)
    layer.build([x.shape[1:]], np.random.default_rng(seed), np, np.float64)
    if randomize:
        rng = np.random.default_rng(seed + 100)
        for name, p in layer.params.items():
            if name.split("_rev")[0] in ("p_i", "p_f", "p_o", "h0", "c0", "b", "b_hn"):
                p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


@pytest.fixture
def x():
    return np.random.default_rng(1).standard_normal((N, T, D))


# ----------------------------------------------------------------------------- gradient checks
# (truncated BPTT is deliberately not the true gradient: its own tests are below)
VECTOR_CASES = [
    (SimpleRNN, dict(activation="tanh")),
    (SimpleRNN, dict(activation="relu", return_sequences=True)),
    (SimpleRNN, dict(bidirectional=True, merge="sum", initial_state="learned")),
    (LSTM, dict(variant="standard")),
    (LSTM, dict(variant="standard", return_sequences=True, initial_state="learned")),
    (LSTM, dict(variant="peephole", return_sequences=True, initial_state="learned")),
    (LSTM, dict(variant="peephole", bidirectional=True)),
    (LSTM, dict(variant="coupled", return_sequences=True, initial_state="learned")),
    (LSTM, dict(variant="coupled", bidirectional=True, merge="sum")),
    (LSTM, dict(bidirectional=True, merge="concat", return_sequences=True, initial_state="learned")),
    (LSTM, dict(variant="peephole", pin_forget="1", pin_output="0", return_sequences=True)),
    (GRU, dict(form="cho")),
    (GRU, dict(form="cho", return_sequences=True, initial_state="learned", bidirectional=True)),
    (GRU, dict(form="pytorch", return_sequences=True, initial_state="learned")),
    (GRU, dict(form="pytorch", bidirectional=True, merge="sum", pin_reset="1")),
    (GRU, dict(form="cho", return_sequences=True, pin_update="1")),
]


@pytest.mark.parametrize("cls,settings", VECTOR_CASES, ids=lambda v: str(v) if isinstance(v, dict) else v.__name__)
def test_gradients_match_finite_differences(cls, settings, x):
    check_layer(built(cls, x, hidden_size=H, **settings), [x], build=False)


@pytest.mark.parametrize("settings", [dict(return_sequences=True, initial_state="learned"),
                                      dict(bidirectional=True, kernel_size=1),
                                      dict(bidirectional=True, merge="sum", return_sequences=True)])
def test_convlstm_gradients(settings):
    clip = np.random.default_rng(2).standard_normal((2, 3, 2, 3, 4))
    check_layer(built(ConvLSTM2D, clip, filters=2, **settings), [clip], build=False)


# ----------------------------------------------------------------------------- references
def lstm_reference(x, W, U, b, h0, c0, variant="standard", peep=None):
    """The LSTM equations written out gate by gate, independently of the layer."""
    hidden = U.shape[0]
    h, c = np.broadcast_to(h0, (x.shape[0], hidden)).copy(), np.broadcast_to(c0, (x.shape[0], hidden)).copy()
    hs, cs, gates = [], [], []
    for t in range(x.shape[1]):
        a = x[:, t] @ W + h @ U + b
        if variant == "coupled":
            a_f, a_g, a_o = np.split(a, 3, axis=1)
            f = sig(a_f)
            i = 1 - f
        else:
            a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
            if variant == "peephole":
                a_i, a_f = a_i + peep[0] * c, a_f + peep[1] * c
            i, f = sig(a_i), sig(a_f)
        g = np.tanh(a_g)
        c = f * c + i * g
        if variant == "peephole":
            a_o = a_o + peep[2] * c
        o = sig(a_o)
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
        gates.append((i, f, g, o))
    return np.stack(hs, 1), np.stack(cs, 1), gates


@pytest.mark.parametrize("variant", ["standard", "peephole", "coupled"])
def test_lstm_matches_closed_form(variant, x):
    layer = built(LSTM, x, hidden_size=H, variant=variant, return_sequences=True, initial_state="learned")
    p = layer.params
    peep = (p["p_i"], p["p_f"], p["p_o"]) if variant == "peephole" else None
    ref_h, _, _ = lstm_reference(x, p["W"], p["U"], p["b"], p["h0"], p["c0"], variant, peep)
    np.testing.assert_allclose(layer.forward([x], False), ref_h, rtol=1e-12, atol=1e-12)


def gru_reference(x, W, U, b, h0, form, b_hn=None):
    hidden = U.shape[0]
    h = np.broadcast_to(h0, (x.shape[0], hidden)).copy()
    out = []
    for t in range(x.shape[1]):
        xw = x[:, t] @ W + b
        r = sig(xw[:, :hidden] + h @ U[:, :hidden])
        z = sig(xw[:, hidden:2 * hidden] + h @ U[:, hidden:2 * hidden])
        if form == "cho":
            n = np.tanh(xw[:, 2 * hidden:] + (r * h) @ U[:, 2 * hidden:])
        else:
            n = np.tanh(xw[:, 2 * hidden:] + r * (h @ U[:, 2 * hidden:] + b_hn))
        h = (1 - z) * h + z * n
        out.append(h)
    return np.stack(out, 1)


@pytest.mark.parametrize("form", ["cho", "pytorch"])
def test_gru_matches_closed_form(form, x):
    layer = built(GRU, x, hidden_size=H, form=form, return_sequences=True, initial_state="learned")
    p = layer.params
    ref = gru_reference(x, p["W"], p["U"], p["b"], p["h0"], form, p.get("b_hn"))
    np.testing.assert_allclose(layer.forward([x], False), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_matches_closed_form(activation, x):
    layer = built(SimpleRNN, x, hidden_size=H, activation=activation, return_sequences=True)
    p = layer.params
    h, out = np.zeros((N, H)), []
    for t in range(T):
        a = x[:, t] @ p["W"] + h @ p["U"] + p["b"]
        h = np.tanh(a) if activation == "tanh" else np.maximum(a, 0)
        out.append(h)
    np.testing.assert_allclose(layer.forward([x], False), np.stack(out, 1), rtol=1e-12, atol=1e-12)


def test_convlstm_matches_direct_convolution():
    rng = np.random.default_rng(3)
    clip = rng.standard_normal((2, 3, 2, 4, 5))
    layer = built(ConvLSTM2D, clip, filters=2, kernel_size=3, return_sequences=True)
    p, f = layer.params, 2

    def conv(img, k):  # img (N, C, H, W), k (3, 3, C, G): 'same' correlation, written directly
        padded = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((img.shape[0], k.shape[-1]) + img.shape[2:])
        for dy in range(3):
            for dx in range(3):
                patch = padded[:, :, dy:dy + img.shape[2], dx:dx + img.shape[3]]
                out += np.einsum("nchw,cg->nghw", patch, k[dy, dx])
        return out

    h = np.zeros((2, f, 4, 5))
    c = np.zeros_like(h)
    chan = (slice(None), None, None)
    outs = []
    for t in range(3):
        a = conv(clip[:, t], p["W"]) + conv(h, p["U"]) + p["b"][chan]
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
        i = sig(a_i + p["p_i"][chan] * c)
        fg = sig(a_f + p["p_f"][chan] * c)
        c = fg * c + i * np.tanh(a_g)
        o = sig(a_o + p["p_o"][chan] * c)
        h = o * np.tanh(c)
        outs.append(h)
    np.testing.assert_allclose(layer.forward([clip], False), np.stack(outs, 1), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- BPTT = step by step
def lstm_step_by_step(layer, x, grad_out):
    """Forward one step at a time with the lecture equations and plain products, then backward
    one step at a time carrying dL/dh and dL/dC (min-char-rnn style). Returns outputs, grads
    and the total dL/dh_t, dL/dC_t per step."""
    p = layer.params
    h, c = [np.broadcast_to(p["h0"], (N, H)).copy()], [np.broadcast_to(p["c0"], (N, H)).copy()]
    gates = []
    for t in range(T):
        a_i, a_f, a_g, a_o = np.split(x[:, t] @ p["W"] + h[-1] @ p["U"] + p["b"], 4, axis=1)
        i, f, g, o = sig(a_i), sig(a_f), np.tanh(a_g), sig(a_o)
        c.append(f * c[-1] + i * g)                      # C_t = f C_{t-1} + i C~_t
        h.append(o * np.tanh(c[-1]))                     # h_t = o tanh(C_t)
        gates.append((i, f, g, o))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    dh_tot, dc_tot = np.zeros((T, N, H)), np.zeros((T, N, H))
    for t in reversed(range(T)):
        i, f, g, o = gates[t]
        dh = grad_out[:, t] + dh_next                    # from the output and from step t+1
        tanh_c = np.tanh(c[t + 1])
        dc = dc_next + dh * o * (1 - tanh_c ** 2)        # through h_t, and from C_{t+1}
        dh_tot[t], dc_tot[t] = dh, dc
        da = np.concatenate([dc * g * i * (1 - i), dc * c[t] * f * (1 - f), dc * i * (1 - g ** 2),
                             dh * tanh_c * o * (1 - o)], axis=1)
        grads["W"] += x[:, t].T @ da
        grads["U"] += h[t].T @ da
        grads["b"] += da.sum(0)
        dx[:, t] = da @ p["W"].T
        dh_next, dc_next = da @ p["U"].T, dc * f
    grads["h0"], grads["c0"] = dh_next.sum(0), dc_next.sum(0)
    return np.stack(h[1:], 1), grads, dx, dh_tot, dc_tot


def test_lstm_bptt_equals_step_by_step(x):
    layer = built(LSTM, x, hidden_size=H, return_sequences=True, initial_state="learned")
    grad_out = np.random.default_rng(5).standard_normal((N, T, H))
    out = layer.forward([x], True)
    layer.zero_grads()
    dx = layer.backward(grad_out)[0]
    ref_out, ref_grads, ref_dx, _, _ = lstm_step_by_step(layer, x, grad_out)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
    for name, g in ref_grads.items():
        np.testing.assert_allclose(layer.grads[name], g, rtol=1e-10, atol=1e-12, err_msg=name)


def test_lstm_single_step_calls_carry_state(x):
    """T calls of the layer on one step each, state carried through learned h0/c0 and read
    back from the probes, give the full-sequence outputs."""
    layer = built(LSTM, x, hidden_size=H, return_sequences=True, initial_state="learned")
    full = layer.forward([x], False)
    step = LSTM(hidden_size=H, return_sequences=True, initial_state="learned")
    step.build([(1, D)], np.random.default_rng(0), np, np.float64)
    step.params.update({k: v.copy() for k, v in layer.params.items()})
    step.probe = [0]
    for n in range(N):
        step.params["h0"][...], step.params["c0"][...] = layer.params["h0"], layer.params["c0"]
        for t in range(T):
            h = step.forward([x[n:n + 1, t:t + 1]], False)
            np.testing.assert_allclose(h[0, 0], full[n, t], rtol=1e-12, atol=1e-12)
            step.params["h0"][...] = h[0, 0]
            step.params["c0"][...] = step.probe_data["cell_state"][0, 0]


@pytest.mark.parametrize("cls,settings", [(GRU, dict(form="cho")), (GRU, dict(form="pytorch")),
                                          (SimpleRNN, dict())])
def test_bptt_equals_step_by_step_layers(cls, settings, x):
    """One one-step layer per sample and timestep, sharing the weights, the state carried in
    through learned h0 and the gradient carried back out through h0's gradient: outputs and
    every gradient match full BPTT."""
    layer = built(cls, x, hidden_size=H, return_sequences=True, initial_state="learned", **settings)
    grad_out = np.random.default_rng(6).standard_normal((N, T, H))
    full = layer.forward([x], True)
    layer.zero_grads()
    dx_full = layer.backward(grad_out)[0]
    sums = {k: np.zeros_like(v) for k, v in layer.params.items()}
    for n in range(N):
        steps, h0 = [], layer.params["h0"].copy()
        for t in range(T):
            step = cls(hidden_size=H, return_sequences=True, initial_state="learned", **settings)
            step.build([(1, D)], np.random.default_rng(0), np, np.float64)
            step.params = {k: v.copy() for k, v in layer.params.items()}
            step.params["h0"][...] = h0
            h0 = step.forward([x[n:n + 1, t:t + 1]], True)[0, 0]
            np.testing.assert_allclose(h0, full[n, t], rtol=1e-12, atol=1e-12)
            steps.append(step)
        carried = np.zeros(H)
        for t in reversed(range(T)):
            step = steps[t]
            step.zero_grads()
            dx = step.backward((grad_out[n, t] + carried)[None, None])[0]
            np.testing.assert_allclose(dx[0, 0], dx_full[n, t], rtol=1e-10, atol=1e-12)
            carried = step.grads["h0"].copy()
            for k in sums:
                if k != "h0":
                    sums[k] += step.grads[k]
        sums["h0"] += carried                        # what reaches the initial state of sample n
    for k, g in sums.items():
        np.testing.assert_allclose(layer.grads[k], g, rtol=1e-10, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_truncation_stops_gradient_at_chunk_boundaries(cls):
    x = np.random.default_rng(7).standard_normal((N, 7, D))
    full = built(cls, x, hidden_size=H)
    cut = built(cls, x, hidden_size=H, truncate_bptt=3)
    g = np.random.default_rng(8).standard_normal((N, H))
    full.forward([x], True)
    cut_out = cut.forward([x], True)
    np.testing.assert_array_equal(cut_out, full.forward([x], True))   # forward unchanged
    dx_full, dx_cut = full.backward(g)[0], cut.backward(g)[0]
    # chunks [0,3), [3,6), [6,7): the loss at the last step reaches only the last chunk
    assert np.all(dx_cut[:, :6] == 0)
    np.testing.assert_allclose(dx_cut[:, 6:], dx_full[:, 6:], rtol=1e-12)
    assert np.abs(dx_full[:, :6]).sum() > 0


def test_truncation_with_sequence_loss_reaches_back_within_chunk():
    x = np.random.default_rng(9).standard_normal((1, 6, D))
    layer = built(LSTM, x, hidden_size=H, return_sequences=True, truncate_bptt=2)
    layer.forward([x], True)
    for t in range(6):
        g = np.zeros((1, 6, H))
        g[0, t] = 1.0
        dx = layer.backward(g)[0][0]
        start = t - t % 2
        assert np.all(dx[:start] == 0) and np.all(dx[t + 1:] == 0)
        assert np.all(np.abs(dx[start:t + 1]).sum(axis=1) > 0)


def test_truncation_reverse_direction_chunks_in_reading_order():
    x = np.random.default_rng(10).standard_normal((N, 5, D))
    layer = built(GRU, x, hidden_size=H, bidirectional=True, merge="concat", truncate_bptt=2)
    layer.forward([x], True)
    g = np.zeros((N, 2 * H))
    g[:, H:] = 1.0                                   # only the backward half's final state (t = 0)
    dx = layer.backward(g)[0]
    # read order t = 4, 3 | 2, 1 | 0: the final step's chunk is t = 0 alone
    assert np.all(dx[:, 1:] == 0) and np.abs(dx[:, 0]).sum() > 0


# ----------------------------------------------------------------------------- bidirectional
@pytest.mark.parametrize("cls,settings", [(LSTM, dict(variant="peephole")), (GRU, dict(form="pytorch")),
                                          (SimpleRNN, dict())])
def test_backward_half_equals_forward_run_on_reversed_sequence(cls, settings, x):
    bi = built(cls, x, hidden_size=H, return_sequences=True, bidirectional=True, initial_state="learned",
               **settings)
    uni = built(cls, x, hidden_size=H, return_sequences=True, initial_state="learned", **settings)
    for name in uni.params:
        uni.params[name][...] = bi.params[name + "_rev"]
    out = bi.forward([x], True)
    rev = uni.forward([x[:, ::-1]], True)
    np.testing.assert_allclose(out[..., H:], rev[:, ::-1], rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(11).standard_normal(out.shape)
    g[..., :H] = 0
    bi.zero_grads()
    uni.zero_grads()
    dx_bi = bi.backward(g)[0]
    dx_uni = uni.backward(np.ascontiguousarray(g[:, ::-1, H:]))[0]
    np.testing.assert_allclose(dx_bi, dx_uni[:, ::-1], rtol=1e-10, atol=1e-12)
    for name in uni.params:
        np.testing.assert_allclose(bi.grads[name + "_rev"], uni.grads[name], rtol=1e-10, atol=1e-12)
        assert np.all(bi.grads[name] == 0)


def test_bidirectional_sum_and_last_step(x):
    cat = built(LSTM, x, hidden_size=H, bidirectional=True)
    summed = built(LSTM, x, hidden_size=H, bidirectional=True, merge="sum")
    a, b = cat.forward([x], False), summed.forward([x], False)
    assert a.shape == (N, 2 * H) and b.shape == (N, H)
    np.testing.assert_allclose(a[:, :H] + a[:, H:], b, rtol=1e-12)
    seq = built(LSTM, x, hidden_size=H, bidirectional=True, return_sequences=True).forward([x], False)
    np.testing.assert_allclose(a[:, :H], seq[:, -1, :H], rtol=1e-12)   # forward half: last step
    np.testing.assert_allclose(a[:, H:], seq[:, 0, H:], rtol=1e-12)    # backward half: t = 0


# ----------------------------------------------------------------------------- variants
def test_peephole_with_zero_peepholes_equals_standard(x):
    std = built(LSTM, x, hidden_size=H, return_sequences=True)
    peep = built(LSTM, x, hidden_size=H, return_sequences=True, variant="peephole")
    for name in ("W", "U", "b"):
        peep.params[name][...] = std.params[name]
    for name in ("p_i", "p_f", "p_o"):
        peep.params[name][...] = 0
    np.testing.assert_allclose(peep.forward([x], True), std.forward([x], True), rtol=1e-14)
    g = np.random.default_rng(12).standard_normal((N, T, H))
    np.testing.assert_allclose(peep.backward(g)[0], std.backward(g)[0], rtol=1e-12)
    for name in ("W", "U", "b"):
        np.testing.assert_allclose(peep.grads[name], std.grads[name], rtol=1e-12, atol=1e-14)


def test_coupled_equals_standard_with_input_gate_one_minus_forget(x):
    coupled = built(LSTM, x, hidden_size=H, return_sequences=True, variant="coupled")
    std = built(LSTM, x, hidden_size=H, return_sequences=True)
    for name in ("W", "U", "b"):
        f, g, o = np.split(coupled.params[name], 3, axis=-1)
        # sigma(-a) = 1 - sigma(a): an input block that is minus the forget block gives i = 1 - f
        std.params[name][...] = np.concatenate([-f, f, g, o], axis=-1)
    np.testing.assert_allclose(coupled.forward([x], True), std.forward([x], True), rtol=1e-12, atol=1e-14)
    assert coupled.params["W"].shape == (D, 3 * H)


def test_forget_one_input_zero_keeps_cell_state_exactly(x):
    layer = built(LSTM, x, hidden_size=H, return_sequences=True, initial_state="learned",
                  pin_forget="1", pin_input="0")
    layer.probe = [0, 1]
    layer.forward([x], True)
    cells = layer.probe_data["cell_state"]
    np.testing.assert_array_equal(cells, np.broadcast_to(layer.params["c0"], cells.shape))
    assert np.all(layer.probe_data["gates"]["forget"] == 1) and np.all(layer.probe_data["gates"]["input"] == 0)
    layer.zero_grads()
    layer.backward(np.ones((N, T, H)))
    assert np.all(layer.grads["W"][:, :2 * H] == 0) and np.all(layer.grads["b"][:2 * H] == 0)
    assert np.abs(layer.grads["W"][:, 2 * H:]).sum() > 0


def test_gru_update_gate_zero_copies_hidden_state(x):
    layer = built(GRU, x, hidden_size=H, return_sequences=True, initial_state="learned", pin_update="0")
    out = layer.forward([x], True)
    np.testing.assert_array_equal(out, np.broadcast_to(layer.params["h0"], out.shape))
    layer.backward(np.ones_like(out))
    assert np.all(layer.grads["W"] == 0) and np.all(layer.grads["U"] == 0)
    np.testing.assert_allclose(layer.grads["h0"], np.full(H, N * T))


def test_coupled_refuses_input_pin():
    from gatescope.compute.layers.base import SettingsError
    with pytest.raises(SettingsError, match="coupled"):
        LSTM(variant="coupled", pin_input="0").output_shape([(5, 2)])


# ----------------------------------------------------------------------------- probes
def test_probes_record_reference_values(x):
    layer = built(LSTM, x, hidden_size=H, return_sequences=True, initial_state="learned")
    assert layer.gate_names == ("input", "forget", "candidate", "output")
    layer.probe = [1, 7]                       # 7 is outside the batch and is skipped
    out = layer.forward([x], True)
    data = layer.probe_data
    p = layer.params
    ref_h, ref_c, ref_gates = lstm_reference(x, p["W"], p["U"], p["b"], p["h0"], p["c0"])
    np.testing.assert_array_equal(data["samples"], [1])
    np.testing.assert_allclose(data["hidden_state"], ref_h[[1]], rtol=1e-12)
    np.testing.assert_allclose(data["cell_state"], ref_c[[1]], rtol=1e-12)
    for k, name in enumerate(layer.gate_names):
        assert data["gates"][name].shape == (1, T, H)
        np.testing.assert_allclose(data["gates"][name][0], np.stack([g[k][1] for g in ref_gates]), rtol=1e-12)
    grad_out = np.random.default_rng(13).standard_normal(out.shape)
    layer.backward(grad_out)
    _, _, _, dh_tot, dc_tot = lstm_step_by_step(layer, x, grad_out)
    np.testing.assert_allclose(data["grad_hidden_norm"], np.linalg.norm(dh_tot[:, [1]], axis=2).T, rtol=1e-10)
    np.testing.assert_allclose(data["grad_cell_norm"], np.linalg.norm(dc_tot[:, [1]], axis=2).T, rtol=1e-10)
    np.testing.assert_allclose(data["grad_hidden_norm_batch"], np.linalg.norm(dh_tot.reshape(T, -1), axis=1),
                               rtol=1e-10)
    assert all(isinstance(v, np.ndarray) for k, v in data.items() if k != "gates")


def test_probe_shapes_gru_convlstm_bidirectional(x):
    gru = built(GRU, x, hidden_size=H, bidirectional=True, return_sequences=True)
    gru.probe = [0]
    gru.backward(np.ones_like(gru.forward([x], True)))
    assert set(gru.probe_data["gates"]) == {"reset", "update", "candidate"}
    assert gru.probe_data["gates_rev"]["update"].shape == (1, T, H)
    assert gru.probe_data["grad_hidden_norm_rev"].shape == (1, T)
    assert "cell_state" not in gru.probe_data
    clip = np.random.default_rng(4).standard_normal((2, 3, 1, 4, 5))
    conv = built(ConvLSTM2D, clip, filters=2)
    conv.probe = [0, 1]
    conv.backward(np.ones_like(conv.forward([clip], True)))
    assert conv.probe_data["cell_state"].shape == (2, 3, 2, 4, 5)
    assert conv.probe_data["gates"]["forget"].shape == (2, 3, 2, 4, 5)
    assert conv.probe_data["grad_cell_norm"].shape == (2, 3)


def test_probes_off_by_default(x):
    layer = built(LSTM, x, hidden_size=H)
    layer.backward(np.ones_like(layer.forward([x], True)))
    assert layer.probe is None and layer.probe_data == {}


# ----------------------------------------------------------------------------- shapes, dtypes, formulas
def test_float32_default_and_shapes():
    x = np.random.default_rng(0).standard_normal((5, 7, 3)).astype(np.float32)
    for cls in (SimpleRNN, LSTM, GRU):
        layer = cls(hidden_size=4, return_sequences=True)
        layer.build([(7, 3)], np.random.default_rng(0))
        out = layer.forward([x], True)
        assert out.dtype == np.float32 and out.shape == (5, 7, 4)
        assert layer.backward(out)[0].dtype == np.float32


def test_parameter_formulas():
    assert LSTM(hidden_size=32).param_formula([(10, 2)]) == "4 x 32 x (2 + 32 + 1) = 4,480"
    assert LSTM(hidden_size=32, variant="peephole").param_formula([(10, 2)]) == \
        "4 x 32 x (2 + 32 + 1) + 3 x 32 peepholes = 4,576"
    assert GRU(hidden_size=8, bidirectional=True).param_formula([(5, 4)]) == \
        "2 directions x (3 x 8 x (4 + 8 + 1)) = 624"
    assert SimpleRNN(hidden_size=8, initial_state="learned").param_formula([(5, 4)]) == \
        "1 x 8 x (4 + 8 + 1) + 8 initial state = 112"
    assert LSTM(hidden_size=4, variant="coupled").param_count([(3, 2)]) == 3 * 4 * (2 + 4 + 1)


def test_graph_analysis_with_recurrent_blocks():
    spec = GraphSpec.chain(("Input", {"shape": (6, 2)}), ("LSTM", {"hidden_size": 5, "bidirectional": True}),
                           ("Dense", {"units": 1}), ("Regress", {}))
    analysis = analyse(spec)
    assert analysis.ok, analysis.errors()
    assert analysis.info["b1"].out_shape == (10,)
    bad = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}), ("GRU", {}), ("Dense", {"units": 2}), ("Classify", {}))
    assert "sequence" in analysis_error(bad)
    clip = GraphSpec.chain(("Input", {"shape": (4, 1, 6, 6)}), ("ConvLSTM2D", {"filters": 3}),
                           ("Flatten", {}), ("Dense", {"units": 2}), ("Classify", {}))
    assert analyse(clip).info["b1"].out_shape == (3, 6, 6)


def analysis_error(spec):
    analysis = analyse(spec)
    assert not analysis.ok
    return analysis.first_error()


def test_pinned_gates_are_read_from_the_settings_in_one_place():
    assert pinned_gates({"pin_forget": "1", "pin_input": "0", "pin_output": "learned", "hidden_size": 3}) == \
        {"forget": 1.0, "input": 0.0}
    assert LSTM(pin_forget="1", pin_input="0").kernel_pins() == {"f": 1.0, "i": 0.0}
    assert GRU(pin_update="0").kernel_pins() == {"z": 0.0} and GRU().kernel_pins() is None


# ----------------------------------------------------------------------------- every backend, float32
BACKEND_CASES = [
    ("SimpleRNN", dict(activation="tanh", return_sequences=True)),
    ("SimpleRNN", dict(activation="relu", bidirectional=True, initial_state="learned", truncate_bptt=2)),
    ("LSTM", dict(variant="standard", return_sequences=True, initial_state="learned")),
    ("LSTM", dict(variant="peephole", bidirectional=True, return_sequences=True, initial_state="learned")),
    ("LSTM", dict(variant="coupled", return_sequences=True, initial_state="learned", pin_output="1")),
    ("LSTM", dict(variant="peephole", pin_forget="1", pin_input="0", truncate_bptt=2, return_sequences=True)),
    ("GRU", dict(form="cho", return_sequences=True, initial_state="learned", bidirectional=True)),
    ("GRU", dict(form="cho", pin_update="1", truncate_bptt=3)),
    ("GRU", dict(form="pytorch", return_sequences=True, initial_state="learned", pin_update="1")),
    ("GRU", dict(form="pytorch", bidirectional=True, merge="sum", pin_reset="0", truncate_bptt=2)),
    ("ConvLSTM2D", dict(filters=3, kernel_size=3, return_sequences=True, initial_state="learned")),
]
KERNELS_OF = {"SimpleRNN": {"simple_rnn_forward", "simple_rnn_backward"},
              "LSTM": {"lstm_forward", "lstm_backward"}, "ConvLSTM2D": {"lstm_forward", "lstm_backward"},
              "GRU": set()}
IN_SHAPE = {"ConvLSTM2D": (4, 2, 5, 6)}


def _case_id(case):
    type_name, settings = case
    return f"{type_name}-{'-'.join(f'{k}={v}' for k, v in settings.items())}"


def _train(backend, type_name, settings, steps, dtype, probe=None):
    """Forward and backward on a new batch each step, then an in-place SGD step (as the
    optimizers do: the next step sees new weights); returns every step's output, input
    gradient, parameter gradients and probe data, as float64 NumPy arrays."""
    in_shape = IN_SHAPE.get(type_name, (6, 4))
    xp = backend.xp if dtype == np.float32 else np
    if type_name != "ConvLSTM2D":
        settings = dict(hidden_size=5, **settings)
    layer = seeded_layer(type_name, settings, in_shape, xp, dtype)
    layer.probe = probe
    rng = np.random.default_rng(5)
    results = []
    with backend.active():
        for step in range(steps):
            x = xp.asarray(rng.standard_normal((3,) + in_shape), dtype=dtype)
            layer.zero_grads()
            y = layer.forward([x], True)
            dy = xp.asarray(np.random.default_rng(100 + step).standard_normal(y.shape), dtype=dtype)
            dx = layer.backward(dy)[0]
            grads = {k: backend.host(g).astype(np.float64) for k, g in layer.grads.items()}
            results.append((backend.host(y).astype(np.float64), backend.host(dx).astype(np.float64), grads,
                            {k: v for k, v in layer.probe_data.items()}))
            for name, p in layer.params.items():
                p -= 0.05 * layer.grads[name]
    return results


@pytest.mark.parametrize("case", BACKEND_CASES, ids=_case_id)
def test_every_block_matches_float64_on_every_backend_over_training_steps(backend, case):
    """Four steps with new inputs and new weights each: on the emulated GPU the first call runs
    eagerly, the second is captured as a graph (launches and GEMMs recorded, not run), the
    next two replay it; any stale input, weight or host read in the loop would show here."""
    type_name, settings = case
    graphs.fallbacks.clear()
    reference = _train(backend, type_name, settings, 4, np.float64)
    got = _train(backend, type_name, settings, 4, np.float32)
    for step, (mine, want) in enumerate(zip(got, reference)):
        close(mine[0], want[0], f"step {step}: output")
        close(mine[1], want[1], f"step {step}: input gradient")
        assert mine[2].keys() == want[2].keys()
        for name in want[2]:
            close(mine[2][name], want[2][name], f"step {step}: d{name}")
    assert graphs.fallbacks == {}
    if backend.name == "emulated":
        launched = {name for name, _, _ in backend.emulator.launches}
        assert KERNELS_OF[type_name] <= launched and launched
        directions = 2 if settings.get("bidirectional") else 1
        if type_name == "ConvLSTM2D":                       # its im2col is array code: eager
            assert backend.emulator.captures == []
        else:       # a forward and a backward graph per direction, each replayed on steps 3 and 4
            assert len(backend.emulator.captures) == 2 * directions
            assert all(rec.launches == 3 and rec.ops for rec in backend.emulator.captures)


@pytest.mark.parametrize("case", [c for c in BACKEND_CASES if c[0] in ("LSTM", "GRU", "ConvLSTM2D")][:6],
                         ids=_case_id)
def test_probes_are_recorded_from_the_same_loop_on_every_backend(backend, case):
    type_name, settings = case
    reference = _train(backend, type_name, settings, 3, np.float64, probe=[0, 2])
    got = _train(backend, type_name, settings, 3, np.float32, probe=[0, 2])
    for step, (mine, want) in enumerate(zip(got, reference)):
        assert mine[3].keys() == want[3].keys() and "grad_hidden_norm" in want[3]
        for key, value in want[3].items():
            if isinstance(value, dict):
                for gate in value:
                    close(mine[3][key][gate], value[gate], f"step {step}: {key} {gate}")
            else:
                close(mine[3][key], value, f"step {step}: {key}")
        close(mine[0], want[0], f"step {step}: output")


def test_forget_one_input_zero_keeps_the_cell_state_exactly_on_every_backend(backend):
    x = backend.array(np.random.default_rng(1).standard_normal((2, 40, 3)))
    layer = create("LSTM", dict(hidden_size=4, return_sequences=True, initial_state="learned",
                                pin_forget="1", pin_input="0"))
    layer.build([(40, 3)], np.random.default_rng(0), backend.xp, np.float32)
    layer.params["c0"][...] = backend.array(np.linspace(-2, 2, 4))
    layer.probe = [0, 1]
    with backend.active():
        layer.forward([x], True)
        layer.forward([x], True)      # the emulated GPU replays a captured loop from here on
    cells = layer.probe_data["cell_state"]
    np.testing.assert_array_equal(cells, np.broadcast_to(backend.host(layer.params["c0"]), cells.shape))


@pytest.mark.parametrize("return_sequences", [True, False])
def test_outputs_are_copies_that_later_calls_leave_alone(backend, return_sequences):
    layer = create("LSTM", dict(hidden_size=4, return_sequences=return_sequences))
    layer.build([(5, 3)], np.random.default_rng(0), backend.xp, np.float32)
    rng = np.random.default_rng(2)
    batches = [backend.array(rng.standard_normal((3, 5, 3))) for _ in range(4)]
    with backend.active():
        outputs = [layer.forward([x], True) for x in batches]
        kept = [backend.host(y).copy() for y in outputs]
        for x in batches:                                  # replays overwrite the buffers
            layer.forward([x], True)
    for y, before in zip(outputs, kept):
        np.testing.assert_array_equal(backend.host(y), before)
